"""Entry point of the multi-processing DirectRunner's worker processes: Beam's ``sdk_worker_main``,
with its bootstrap logging kept off the console.

The defect (apache-beam 2.77, ``runners/worker/sdk_worker_main.py``): a worker sets the root
logger to INFO while it starts, before the pipeline options (and their
``--default_sdk_harness_log_level``) reach it, and its process writes to the console the run
was started from: a few INFO and WARNING lines per worker, every run, among curate's own.
Here the worker's console handler shows WARNING and above only, from the start, without
Beam's known-harmless warnings; everything still goes to the runner through Beam's logging
service, where the run's ``--log-level`` decides.  ``local_runner`` starts workers with
this module (``python -m curate.pipelines.beam.sdk_worker``).
"""

from __future__ import annotations

import logging
import sys

from curate.pipelines.beam import DropHarmless


def main() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.addFilter(DropHarmless(logging.WARNING))
    handler.setFormatter(logging.Formatter("[beam worker] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]  # before apache_beam is imported: its basicConfig is then a no-op

    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
