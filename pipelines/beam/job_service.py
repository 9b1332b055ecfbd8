"""A local Beam job service (the portable Job API) that runs a job on N SDK workers.

Beam's Python job service (``local_job_service_main``) hands every job to an
``FnApiRunner`` through ``run_via_runner_api``, which skips the code that
reads ``direct_num_workers``: each job runs on one SDK worker whatever the
options say (apache-beam 2.77).  This
service is Beam's, with two changes: the job's ``--sdk_worker_parallelism``
(else ``--direct_num_workers``) becomes the runner's worker count, so bundles
are split across that many workers of the job's environment; and the runner's
data plane gets ``fixes`` (inputs sent to workers could lose chunks).

For real parallelism the workers must be processes: ``--worker-pool-port``
also starts Beam's worker pool (``BeamFnExternalWorkerPoolServicer`` with
``use_process``) and jobs submitted with ``--environment_type=EXTERNAL
--environment_config=localhost:<pool port>`` get one SDK worker process each
(``LOOPBACK`` workers are threads of the submitting process).  Same protocol
as a Flink or Spark job server: the pipeline, its artifacts and its options go
through the Job API; only the executor differs.
"""

from __future__ import annotations

import os
import sys
import time

from apache_beam.options.pipeline_options import DirectOptions, PortableOptions
from apache_beam.portability.api import beam_job_api_pb2
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import fn_runner

from curate.pipelines.beam import install_on_driver, require_tested_beam


def worker_count(options) -> int:
    """Workers for a job: ``sdk_worker_parallelism`` when above its default 1, else
    ``direct_num_workers`` (0 = one per core, as the DirectRunner reads it)."""
    parallelism = int(options.view_as(PortableOptions).sdk_worker_parallelism or 1)
    if parallelism > 1:
        return parallelism
    direct = options.view_as(DirectOptions).direct_num_workers
    return max(1, os.cpu_count() or 1) if direct == 0 else max(1, int(direct or 1))


class ParallelBeamJob(local_job_service.BeamJob):
    """Beam's local job, run on ``worker_count(options)`` SDK workers."""

    def _invoke_runner(self):
        require_tested_beam("job_service")  # overrides BeamJob._invoke_runner of apache-beam 2.77
        self.set_state(beam_job_api_pb2.JobState.RUNNING)
        options = self.pipeline_options()
        runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
        runner._num_workers = worker_count(options)  # what run_pipeline would have set
        return runner.run_via_runner_api(self._pipeline_proto, options)


def start(port: int = 0, worker_pool_port: int | None = None, staging_dir: str | None = None):
    """Start the job service (and the worker pool); returns (job port, pool port or None, stop)."""
    install_on_driver()  # jobs run in this process: its runner sends their inputs (see fixes)
    servicer = local_job_service.LocalJobServicer(staging_dir, beam_job_type=ParallelBeamJob)
    job_port = servicer.start_grpc_server(port)
    pool = None
    if worker_pool_port is not None:
        from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

        # the pool runs `python -c ...`: make that this interpreter (the venv curate is installed in)
        os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
        address, pool = BeamFnExternalWorkerPoolServicer.start(use_process=True, port=worker_pool_port)
        worker_pool_port = int(address.rsplit(":", 1)[1])

    def stop():
        if pool is not None:
            pool.stop(0)
        servicer.stop()

    return job_port, worker_pool_port, stop


def serve(port: int, worker_pool_port: int | None, log=print) -> int:
    job_port, pool_port, stop = start(port, worker_pool_port)
    log(
        f"[curate] job service on localhost:{job_port}"
        + (f", worker pool on localhost:{pool_port}" if pool_port is not None else "")
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
