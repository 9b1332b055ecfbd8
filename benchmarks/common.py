"""Shared helpers for benchmarks: real data location, machine facts, results."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CURATE_SHARED", ROOT.parent / "shared")) / "data"
REAL_DOCS = SHARED / "real" / "docs.parquet"
BENCHMARK_SETS = SHARED / "benchmarks"
RESULTS = Path(__file__).resolve().parent / "results"


def require_shared() -> None:
    if not REAL_DOCS.is_file():
        sys.exit(f"benchmark needs {REAL_DOCS} (the shared real documents); not found")


def machine_facts() -> dict:
    import apache_beam
    import numpy
    import pyarrow

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "apache_beam": apache_beam.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "git_commit": _git_commit(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def machine_line(m: dict) -> str:
    """'<cpu>, <n> cores; apache-beam <v>, Python <v>' for a results table's header."""
    return f"{m['cpu']}, {m['cores']} cores; apache-beam {m['apache_beam']}, Python {m['python']}"


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        return ""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, repeat: int = 1, **kwargs):
    """Best wall time of ``repeat`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def write_results(name: str, payload: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)


def curate_run(config: Path, inputs, output: Path, *options: str) -> list[str]:
    """The command line of one ``curate run`` of ``config`` over ``inputs`` into ``output``."""
    return [sys.executable, "-m", "curate", "run", "--config", str(config), "--input", str(inputs)] + [
        "--output",
        str(output),
        "--overwrite",
        *options,
    ]


def run_watched(cmd: list[str], visit, env: dict | None = None, stdout=subprocess.PIPE) -> tuple[float, str]:
    """Run ``cmd`` and call ``visit(seconds_since_start, [psutil.Process, ...])`` every 0.25 s
    with its process tree (driver, worker processes, scheduler).  Returns (wall seconds, the
    captured output: stdout and stderr together, or stderr alone with ``stdout=DEVNULL``)."""
    import threading

    import psutil

    start = time.perf_counter()
    joined = subprocess.STDOUT if stdout is subprocess.PIPE else subprocess.PIPE
    child = subprocess.Popen(cmd, stdout=stdout, stderr=joined, text=True, env=env)
    root = psutil.Process(child.pid)
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                procs = []
            visit(time.perf_counter() - start, procs)
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    done.set()
    sampler.join()
    output = out if stdout is subprocess.PIPE else err
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-3000:]}")
    return time.perf_counter() - start, output


def run_sampled(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``: wall seconds, peak summed RSS of its process tree, peak RSS of one
    process, and by role: the driver (the command's own process: with one in-process
    worker it is the worker too) and the largest other process (a worker process, or a
    Dask scheduler or worker)."""
    import psutil

    peaks = {"tree": 0, "process": 0, "driver": 0, "worker": 0, "driver_anon": 0, "worker_anon": 0}

    def visit(_, procs):
        total = 0
        for k, proc in enumerate(procs):
            try:
                mem = proc.memory_info()
            except psutil.Error:
                continue
            total += mem.rss
            peaks["process"] = max(peaks["process"], mem.rss)
            role = "driver" if k == 0 else "worker"  # run_watched lists the command's process first
            peaks[role] = max(peaks[role], mem.rss)
            # anonymous memory (heap, Arrow buffers): resident minus file-backed and shared pages
            # (``shared`` is RssFile + RssShmem on Linux: mapped spill files, libraries), which the
            # kernel can drop and re-read instead of swapping
            peaks[role + "_anon"] = max(peaks[role + "_anon"], mem.rss - mem.shared)
        peaks["tree"] = max(peaks["tree"], total)

    seconds, _ = run_watched(cmd, visit, env=env)
    return {
        "seconds": round(seconds, 2),
        "peak_tree_mb": round(peaks["tree"] / 2**20),
        "peak_process_mb": round(peaks["process"] / 2**20),
        "peak_driver_mb": round(peaks["driver"] / 2**20),
        "peak_worker_mb": round(peaks["worker"] / 2**20),
        "peak_driver_anon_mb": round(peaks["driver_anon"] / 2**20),
        "peak_worker_anon_mb": round(peaks["worker_anon"] / 2**20),
    }
