"""Beam's DirectRunner for batch pipelines, without its detour through Prism.

apache-beam 2.77's ``DirectRunner`` (``SwitchingDirectRunner``) first tries the
Prism runner on any pipeline Prism supports: it starts a worker pool server,
downloads the Prism binary from GitHub and, where that works, runs the job on
Prism.  Without network access the download fails and it falls back to the
``FnApiRunner``, leaving a ``/tmp/beam-temp*`` directory and the worker pool's
threads behind (one per run here); with network access a user's "DirectRunner"
run would happen on a runner this project neither tests nor patches
(``fixes``, ``data_plane_copies``).

``LocalRunner`` is the fallback itself: the ``FnApiRunner`` with the pipeline
options as its provision info, as ``SwitchingDirectRunner`` builds it for a
batch pipeline (ours have no streaming sources, test streams or real-time
timers, the cases it sends elsewhere).  ``--direct_running_mode`` and
``--direct_num_workers`` work as with the DirectRunner.
"""

from __future__ import annotations

import sys

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.runners.runner import PipelineRunner
from apache_beam.transforms import environments

from curate.pipelines.beam import tested_beam_or_skip

DIRECT_NAMES = {"direct", "directrunner", "switchingdirectrunner"}


WORKER_MODULE = "curate.pipelines.beam.sdk_worker"


class _FnApiRunner(fn_runner.FnApiRunner):
    """The FnApiRunner whose worker processes start through ``sdk_worker`` (Beam's worker main
    with its bootstrap logging kept off the console).  ``FnApiRunner.run_pipeline`` sets
    ``_default_environment`` to a subprocess environment running Beam's
    ``sdk_worker_main`` for ``direct_running_mode=multi_processing`` (apache-beam 2.77,
    ``fn_runner.py``); this setter swaps the command, nothing else."""

    @property
    def _default_environment(self):
        return self._curate_environment

    @_default_environment.setter
    def _default_environment(self, environment):
        if isinstance(environment, environments.SubprocessSDKEnvironment):
            environment = environments.SubprocessSDKEnvironment.from_command_string(
                command_string=f"{sys.executable} -m {WORKER_MODULE}"
            )
        self._curate_environment = environment


class LocalRunner(PipelineRunner):
    """The DirectRunner's FnApiRunner, chosen directly."""

    def run_pipeline(self, pipeline, options):
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision_info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return _FnApiRunner(provision_info=provision_info).run_pipeline(pipeline, options)


def runner_for(options: PipelineOptions) -> PipelineRunner | None:
    """``LocalRunner`` when the options ask for the DirectRunner (or no runner); else
    None: Beam resolves ``--runner`` itself."""
    name = options.view_as(StandardOptions).runner
    if not tested_beam_or_skip("local_runner"):  # another Beam's DirectRunner: leave the choice to it
        return None
    if name is None or (isinstance(name, str) and name.rsplit(".", 1)[-1].lower() in DIRECT_NAMES):
        return LocalRunner()
    return None
