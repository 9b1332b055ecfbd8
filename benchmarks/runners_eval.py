"""Wall time and docs/s of the whole pipeline on 1 vs 2 workers, per runner.

Same input (a scaled corpus of real documents, ``benchmarks/corpus.py``, 8
Parquet shards in row groups of 4,096), same packaged default config, one
``curate run`` process per measurement (model loading and worker start-up
included, as a user would see them):

- DirectRunner, ``multi_processing`` mode, ``direct_num_workers`` 1 and 2;
- curate's DaskRunner, ``--dask-workers`` 1 and 2 (scheduler + worker
  processes on loopback, ``dask_npartitions`` = 4 x workers);
- PortableRunner through the Job API against ``curate job-service`` (Beam's
  local job service that honours ``--sdk_worker_parallelism``) with its pool
  of SDK worker processes (EXTERNAL environment), parallelism 1 and 2.  Beam's
  own ``local_job_service_main`` runs every job on one worker (0.96x, recorded
  in an earlier run).

Also checks that every run kept the same documents (kept Parquet bytes).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_facts, require_shared, write_results  # noqa: E402
from benchmarks.corpus import write_scaled_corpus  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kept_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((out / "kept").glob("*.parquet")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _run(inputs: str, out: Path, extra: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "curate", "run", "--input", inputs, "--output", str(out)] + extra,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(extra)}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--runners", default="direct,dask,portable")
    parser.add_argument(
        "--resume-log",
        help="stdout of an earlier run of this script: its measured rows are "
        "kept and only the missing (runner, workers) pairs are run",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each (runner, workers) this many times, 1 and 2 workers alternating, "
        "and keep the fastest (the machine's speed drifts ~20%% between runs)",
    )
    parser.add_argument("--corpus-dir", default=str(Path(tempfile.gettempdir()) / "curate-bench-corpus"))
    args = parser.parse_args()
    require_shared()
    corpus = Path(args.corpus_dir) / f"{args.docs}"
    write_scaled_corpus(args.docs, corpus)
    inputs = str(corpus / "*.parquet")
    rows, digests = [], {}
    if args.resume_log:
        for line in Path(args.resume_log).read_text().splitlines():
            if line.startswith("{'runner'") and "docs_per_s" in line:
                row = ast.literal_eval(line)
                if row["runner"] in args.runners.split(","):
                    rows.append({**row, "resumed": True})
    with tempfile.TemporaryDirectory() as work:
        for runner in args.runners.split(","):
            service = None
            if runner == "portable":
                port, pool_port = _free_port(), _free_port()
                service = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "curate",
                        "job-service",
                        "--port",
                        str(port),
                        "--worker-pool-port",
                        str(pool_port),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(8)
            try:
                timings: dict = {}
                for workers in [w for _ in range(args.repeat) for w in (1, 2)]:
                    if any(r["runner"] == runner and r["workers"] == workers and r.get("resumed") for r in rows):
                        continue
                    extra = {
                        "direct": ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"],
                        "dask": ["--dask-workers", str(workers)],
                        "portable": [
                            "--runner=PortableRunner",
                            f"--job_endpoint=localhost:{port if service else 0}",
                            "--environment_type=EXTERNAL",
                            f"--environment_config=localhost:{pool_port if service else 0}",
                            f"--sdk_worker_parallelism={workers}",
                        ],
                    }[runner]
                    out = Path(work) / f"{runner}-{workers}"
                    shutil.rmtree(out, ignore_errors=True)
                    seconds = _run(inputs, out, extra)
                    digests[(runner, workers, len(timings.get(workers, [])))] = _kept_digest(out)
                    timings.setdefault(workers, []).append(round(seconds, 1))
                    print({"runner": runner, "workers": workers, "seconds": round(seconds, 1)}, flush=True)
                for workers, all_seconds in sorted(timings.items()):
                    best = min(all_seconds)
                    rows.append(
                        {
                            "runner": runner,
                            "workers": workers,
                            "seconds": best,
                            "docs_per_s": round(args.docs / best, 1),
                            "all_seconds": all_seconds,
                        }
                    )
                    print(rows[-1], flush=True)
            finally:
                if service:
                    service.terminate()
                    service.wait(timeout=30)
    speedups = {}
    for runner in args.runners.split(","):
        one = next(r for r in rows if r["runner"] == runner and r["workers"] == 1)
        two = next(r for r in rows if r["runner"] == runner and r["workers"] == 2)
        speedups[runner] = round(one["seconds"] / two["seconds"], 2)
    payload = {
        "machine": machine_facts(),
        "documents": args.docs,
        "runs": rows,
        "speedup_2_vs_1": speedups,
        "identical_kept_output_of_runs_made_here": len(set(digests.values())) <= 1,
        "note": "whole pipeline, packaged default config, one curate process per run, start-up included",
    }
    lines = [
        f"# Runners: 1 vs 2 workers, whole pipeline, {args.docs:,} documents",
        "",
        "| runner | workers | seconds (fastest) | all runs, s | docs/s | speed-up 2 vs 1 |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        runs = ", ".join(str(x) for x in r.get("all_seconds", [r["seconds"]]))
        lines.append(
            f"| {r['runner']}{' (resumed)' if r.get('resumed') else ''} | {r['workers']} | {r['seconds']} | "
            f"{runs} | {r['docs_per_s']:,.0f} | {speedups[r['runner']] if r['workers'] == 2 else ''} |"
        )
    lines += [
        "",
        f"Kept output identical across the runs made in this invocation: "
        f"{payload['identical_kept_output_of_runs_made_here']} (rows marked resumed came from an earlier "
        "invocation's log; identical output across runners is asserted by tests/test_runners.py).",
        f"Machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores.",
    ]
    write_results("runners", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
