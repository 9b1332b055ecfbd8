"""curate: pretraining-data curation on Apache Beam.

The code lives in the promised top-level folders and is installed as
``curate.classifiers`` (pure models, no Beam), ``curate.transforms`` (Beam
stages) and ``curate.pipelines`` (assembly, CLI, reports).
"""

import os as _os

__version__ = "0.1.0"

# A process started in a source checkout (e.g. a Beam worker launched with
# `python -m` from the repository root) imports this folder before the
# installed package; let ``curate.<sub>`` resolve to the sibling folders there.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if (
    _os.path.isfile(_os.path.join(_checkout, "pyproject.toml"))
    and _os.path.isdir(_os.path.join(_checkout, "transforms"))
    and _checkout not in __path__
):
    __path__.append(_checkout)
