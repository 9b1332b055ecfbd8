"""Every change curate makes to apache-beam, quarantined in one package.

Each module here replaces or wraps private internals of one apache-beam minor
version (``TESTED_BEAM``), names the upstream defect or cost it works around,
and is installed explicitly, never by importing a curate module:

* on the driver, by the run code through ``install_on_driver()``
  (``pipelines/build.py`` before a pipeline runs; ``curate job-service``);
* on SDK workers, through Beam's own plugin hook: ``worker_options()`` adds
  ``--beam_plugin=curate.pipelines.beam.worker_plugin`` to the pipeline
  options, and Beam's ``sdk_worker_main`` imports every plugin named there
  before the worker runs a bundle;
* runner replacements (``local_runner``, ``dask_runner``, ``job_service``)
  are chosen by name, by the run code or the user's ``--runner``.

On another apache-beam version a correctness fix refuses to install
(``BeamVersionError``: the pipeline could lose data without it) and a
speed-up is skipped with a warning.  ``pyproject.toml`` pins apache-beam to
the tested minor version.

| module | kind | upstream defect or cost |
|---|---|---|
| ``fixes`` | correctness | the runner's time-flushed data stream drops chunks written during a flush |
| ``speedups`` | speed | DoFn signature introspection and options views rebuilt on every call |
| ``data_plane_copies`` | speed | protobuf copies of every encoded chunk in the in-memory data plane |
| ``size_estimates`` | speed | Beam pickles whole batches only to sample their size for its counters |
| ``balanced_partitions`` | speed | a stage's input is dealt to worker processes by chunk, however many elements each holds |
| ``local_runner`` | runner | the DirectRunner downloads Prism from GitHub before falling back |
| ``dask_runner`` | runner | Beam's DaskRunner loses finish_bundle and tagged outputs, side inputs, sinks |
| ``job_service`` | runner | Beam's local job service runs every job on one worker |
| ``options`` | check | Beam only logs an unknown option and runs without it; a bad value or runner fails late |

``options`` changes nothing in Beam: it reads Beam's private option parser so that
``curate run`` and ``curate config check`` refuse bad options before any work.
"""

from __future__ import annotations

import logging
import os

TESTED_BEAM = "2.77"

# Warnings Beam logs on every run that say nothing about this run: a GCP client library
# not installed (curate does not need it), pipeline options Beam's parser does not know
# (curate's own, forwarded to workers), a worker without a session folder, Docker-image
# advice for runners curate does not use.
HARMLESS = (
    "apitools not found",
    "Discarding unparseable args",
    "locally built Python SDK docker image",
    "No iterator is returned by the process method",
    "No semi_persistent_directory found",
)


class DropHarmless(logging.Filter):
    """Drops ``HARMLESS`` records when the console shows warnings and up (``level`` WARNING or more);
    on the driver's handler (``curate run``) and a worker's (``sdk_worker``)."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return self.level < logging.WARNING or not any(h in record.getMessage() for h in HARMLESS)


_LOG = logging.getLogger("curate.beam")


class BeamVersionError(RuntimeError):
    """A correctness patch was written for another apache-beam version."""


def _beam_version() -> str:
    # imported here, not at the top: a worker started through ``sdk_worker`` must set up its
    # logging before anything imports apache_beam (which configures logging on import)
    import apache_beam

    return apache_beam.__version__


def beam_matches() -> bool:
    return _beam_version().split(".")[:2] == TESTED_BEAM.split(".")


def require_tested_beam(patch: str) -> None:
    """For patches without which a run could be wrong: refuse on another Beam."""
    if not beam_matches():
        raise BeamVersionError(
            f"{patch} fixes internals of apache-beam {TESTED_BEAM}.x, but {_beam_version()} is installed; "
            f"install apache-beam=={TESTED_BEAM}.* (what pyproject.toml pins), or check that the defect is fixed "
            f"upstream and update curate.pipelines.beam"
        )


def tested_beam_or_skip(patch: str) -> bool:
    """For speed-ups: on another Beam, leave Beam as it is (with a warning)."""
    if beam_matches():
        return True
    _LOG.warning(
        "%s was written for apache-beam %s.x, %s is installed: not installed",
        patch,
        TESTED_BEAM,
        _beam_version(),
    )
    return False


def _skipped(patch: str) -> bool:
    """``CURATE_BEAM_SKIP=data_plane_copies,...`` leaves a speed-up out, to measure what it is worth
    (``benchmarks/beam_patches_eval.py``); the correctness fix cannot be left out."""
    return patch in {p.strip() for p in os.environ.get("CURATE_BEAM_SKIP", "").split(",")}


def install_on_driver() -> None:
    """What the process that runs the pipeline's runner needs (idempotent)."""
    from curate.pipelines.beam import balanced_partitions, data_plane_copies, fixes, size_estimates, speedups

    require_tested_beam("fixes")
    fixes.install()  # the runner's input stream could drop chunks
    if not _skipped("speedups") and tested_beam_or_skip("speedups"):
        speedups.install()
    speedups.tune_gc()  # the in-process runners work here
    if not _skipped("data_plane_copies") and tested_beam_or_skip("data_plane_copies"):
        data_plane_copies.install()
    if not _skipped("size_estimates") and tested_beam_or_skip("size_estimates"):
        size_estimates.install()
    if not _skipped("balanced_partitions") and tested_beam_or_skip("balanced_partitions"):
        balanced_partitions.install()


def install_on_worker() -> None:
    """What an SDK worker process needs (idempotent): called by ``worker_plugin``."""
    from curate.pipelines.beam import speedups

    if tested_beam_or_skip("speedups"):
        speedups.install()
    speedups.tune_gc()


WORKER_PLUGIN = "curate.pipelines.beam.worker_plugin"


def worker_options(args: list[str]) -> list[str]:
    """``args`` with the worker plugin named first (options given later still win), once."""
    flag = f"--beam_plugin={WORKER_PLUGIN}"
    return args if flag in args else [flag, *args]
