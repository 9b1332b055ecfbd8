"""pipelines.local_runner: a DirectRunner run stays on the FnApiRunner (no Prism detour)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from apache_beam.options.pipeline_options import PipelineOptions

from curate.pipelines.beam.local_runner import LocalRunner, runner_for


def test_direct_runner_names_choose_the_local_runner_and_others_are_left_to_beam():
    for args in (
        [],
        ["--runner=DirectRunner"],
        ["--runner=direct"],
        ["--runner=apache_beam.runners.direct.direct_runner.DirectRunner"],
    ):
        assert isinstance(runner_for(PipelineOptions(args)), LocalRunner), args
    for args in (["--runner=DataflowRunner"], ["--runner=FlinkRunner"], ["--runner=PortableRunner"]):
        assert runner_for(PipelineOptions(args)) is None, args


def test_a_default_run_neither_tries_prism_nor_leaves_a_temp_directory(tmp_path):
    """Beam 2.77's DirectRunner would start a worker pool, download Prism from GitHub and
    (with network access) run there; here the run must not even import the Prism runner."""
    script = textwrap.dedent(f"""
        import sys, tempfile
        made = []
        original = tempfile.mkdtemp
        tempfile.mkdtemp = lambda *a, **k: made.append(original(*a, **k)) or made[-1]
        from curate.pipelines import build
        from curate.pipelines.config import config_from_dict
        result = build.run(config_from_dict({{}}), {str(tmp_path / "out")!r}, log=lambda m: None)
        print(result.funnel["conservation"]["ok"], "apache_beam.runners.portability.prism_runner" in sys.modules,
              [d for d in made if "beam-temp" in d])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True False []"
