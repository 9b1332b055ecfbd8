"""curate: pretraining-data curation on Apache Beam.

The code lives in the promised top-level folders and is installed as
``curate.classifiers`` (pure models, no Beam), ``curate.transforms`` (Beam
stages) and ``curate.pipelines`` (assembly, CLI, reports).
"""

__version__ = "0.1.0"
