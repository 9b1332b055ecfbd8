"""A killed run leaves nothing that looks complete; a rerun gives the uninterrupted output.
Both on the DirectRunner in multi-processing mode."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import CURATE

from curate.pipelines.build import sample_corpus_path

MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _outputs(out: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "run.json"}
    assert files, f"nothing written in {out}"
    return files


def test_kill_9_then_rerun_gives_identical_output(tmp_path):
    reference = tmp_path / "reference"
    done = subprocess.run(
        [CURATE, "run", "--output", str(reference), *MULTI], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    killed_tmp = tmp_path / "killed-tmp"  # what a SIGKILL leaves in the temp folder (Beam's) stays in tmp_path
    killed_tmp.mkdir()
    proc = subprocess.Popen(
        [CURATE, "run", "--output", str(out), *MULTI],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(killed_tmp)},
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("_tmp-*/**/*.parquet")):
        time.sleep(0.2)  # wait until the run has started writing into its staging folder
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    leftovers = sorted(p.name for p in out.iterdir())
    # nothing looks complete: the staging folder, and the lock the dead run held (free now: the kernel dropped it)
    assert leftovers and all(name.startswith("_tmp-") or name == "_curate.lock" for name in leftovers), leftovers

    rerun = subprocess.run([CURATE, "run", "--output", str(out), *MULTI], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(out.glob("_tmp-*")) and not (out / "_curate.lock").exists()  # the killed run's leftovers are gone
    assert _outputs(out) == _outputs(reference)


def test_same_output_whatever_the_number_of_workers(tmp_path):
    runs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        proc = subprocess.run(
            [
                CURATE,
                "run",
                "--output",
                str(out),
                "--direct_running_mode=multi_processing",
                f"--direct_num_workers={workers}",
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        runs[workers] = _outputs(out)
    assert runs[1] == runs[2]
    assert Path(sample_corpus_path()).exists()
