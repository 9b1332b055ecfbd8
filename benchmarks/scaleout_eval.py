"""Two workers against one: every local execution mode, alternated, best of N, with memory.

    python benchmarks/scaleout_eval.py --sizes 100000 --modes inprocess,multi1,multi2,dask1,dask2,default
    python benchmarks/scaleout_eval.py --sizes 1000000 --modes inprocess,default
    python benchmarks/scaleout_eval.py --sizes 100000 --modes inprocess-inline,inprocess --name scaleout_single_core

``inprocess-inline`` is one in-process worker with spilling off (``CURATE_NO_SPILL=1``):
the single-core chain as it ran before batches crossed fusion breaks as file
references.  Each ``--name`` is its own results file; sizes run again replace
that size's entry.

Same scaled corpus recipe as ``throughput.py`` (``benchmarks/corpus.py``) and
the packaged default config with the real GSM8K + HumanEval + MMLU test sets.
One ``curate run`` per measurement, start-up included.  The modes of one size
run in rotation (``inprocess, multi2, ... , inprocess, multi2, ...``) so a
drift of the machine's speed hits every mode alike; each mode's best wall
time and the spread (worst - best) are reported.  ``default`` is plain
``curate run`` with no mode option: what it chose is read from its
``run.json``.

Memory: every process of the run's tree (driver, worker processes, Dask
scheduler) is sampled every 0.25 s with psutil: the peak of their summed
resident memory, the peak of the largest single process, and by role: the
driver (the command's process) and the largest worker process (a DirectRunner
worker process, a Dask worker or scheduler).  Every run's
kept and rejects bytes are hashed: all modes of a size must publish the same
bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    curate_run,
    machine_facts,
    machine_line,
    require_shared,
    run_sampled,
    write_results,
)
from benchmarks.corpus import write_scaled_corpus  # noqa: E402
from benchmarks.throughput import chain_config  # noqa: E402

MODES = {
    "inprocess": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    "multi1": ["--direct_running_mode=multi_processing", "--direct_num_workers=1"],
    "multi2": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    "dask1": ["--dask-workers", "1"],
    "dask2": ["--dask-workers", "2"],
    "default": [],
    # one in-process worker with batches inline on the data plane, as before transforms/spill.py
    "inprocess-inline": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    # the default command with Arrow's buffers from the system allocator instead of jemalloc
    # (which keeps freed pages for reuse): how much of a process's growth is allocator retention
    "default-sysalloc": [],
}
ENV = {"inprocess-inline": {"CURATE_NO_SPILL": "1"}, "default-sysalloc": {"ARROW_DEFAULT_MEMORY_POOL": "system"}}
WORKERS = {"inprocess": 1, "multi1": 1, "multi2": 2, "dask1": 1, "dask2": 2, "inprocess-inline": 1}


def published_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*.parquet") if {"kept", "rejects"} & set(p.relative_to(out).parts)):
        digest.update(str(path.relative_to(out)).encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--modes", default="inprocess,multi1,multi2,dask1,dask2,default")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--corpus-dir", default=str(Path(tempfile.gettempdir()) / "curate-bench-corpus"))
    parser.add_argument("--name", default="scaleout", help="results file name under benchmarks/results")
    args = parser.parse_args()
    require_shared()
    modes = args.modes.split(",")
    previous = Path(__file__).parent / "results" / f"{args.name}.json"
    payload = json.loads(previous.read_text()) if previous.exists() else {"sizes": {}}
    payload["machine"] = machine_facts()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg_path = work / "chain.yaml"
        cfg_path.write_text(yaml.safe_dump(chain_config()))
        for size in [int(s) for s in args.sizes.split(",")]:
            shards = write_scaled_corpus(size, Path(args.corpus_dir) / str(size))
            runs: dict[str, list] = {m: [] for m in modes}
            for rep in range(args.repeat):
                for mode in modes:
                    out = work / f"out-{size}-{mode}"
                    cmd = curate_run(cfg_path, shards[0].parent / "*.parquet", out, "--quiet", *MODES[mode])
                    result = run_sampled(cmd, env={**os.environ, **ENV[mode]} if mode in ENV else None)
                    info = json.loads((out / "run.json").read_text())
                    result["digest"] = published_digest(out)
                    result["chosen"] = info.get("execution", {})
                    runs[mode].append(result)
                    print(json.dumps({"size": size, "mode": mode, "rep": rep, **result}), flush=True)
            payload["sizes"][str(size)] = {"documents": size, "runs": runs}
    write_results(args.name, payload, render(payload))
    return 0


def _best(runs: list) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def _role_peak(runs: list, key: str) -> str:
    """The largest peak of one role over the runs ("-": no such process; "n/a": not recorded then)."""
    values = [r[key] for r in runs if key in r]
    if not values:
        return "n/a"
    return f"{max(values):,}" if max(values) else "-"


def _per_worker_growth(payload: dict) -> list[str]:
    """Peak RSS per process of the default mode at each size against the smallest size's,
    and its anonymous part (heap and Arrow buffers: resident minus file-backed pages such
    as memory-mapped spill files, which the kernel drops under pressure)."""
    keys = ("peak_driver_mb", "peak_driver_anon_mb", "peak_worker_mb", "peak_worker_anon_mb")
    rows = []
    for size, entry in payload["sizes"].items():
        rs = [r for r in entry["runs"].get("default", []) if "peak_worker_mb" in r]
        if rs:
            rows.append((int(size), *(max(r.get(k, 0) for r in rs) for k in keys)))
    if len(rows) < 2:
        return []
    rows.sort()
    base = rows[0]
    lines = [
        "## Memory per process of the default command, by size",
        "",
        f"Each role's peak against its peak at {base[0]:,} documents; 'anon': the peak of the role's anonymous "
        "resident memory (heap, Arrow buffers; not file-backed pages: mapped spill files, libraries).",
        "",
        "| documents | driver MB | x | driver anon MB | x | largest worker process MB | x | worker anon MB | x |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(value, first):
        return f"{value / first:.2f}x" if first else ""

    for size, *values in rows:
        cells = [f"{v:,} | {ratio(v, b)}" if v else "n/a | " for v, b in zip(values, base[1:])]
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render(payload: dict) -> str:
    lines = [
        "# Two workers against one: local execution modes",
        "",
        f"{machine_line(payload['machine'])}; `benchmarks/scaleout_eval.py`: default config + "
        "GSM8K/HumanEval/MMLU decontamination, scaled corpus (`benchmarks/corpus.py`), one `curate run` per "
        "measurement, start-up included, modes alternated; best wall time of the runs and the spread (worst - best).",
        "Speed-up is against the fastest 1-worker mode of the same size. Memory: peak of the summed resident "
        "memory of every process of the run, and of the largest single process.",
        "",
    ]
    for size, entry in payload["sizes"].items():
        runs = entry["runs"]
        one = [m for m in runs if WORKERS.get(m) == 1 and runs[m]]
        fastest_one = min((_best(runs[m])["seconds"] for m in one), default=None)
        digests = {r["digest"] for rs in runs.values() for r in rs}
        lines += [
            f"## {int(size):,} documents",
            "",
            "| mode | runs | best s | spread s | docs/s | speed-up vs fastest 1-worker | peak RSS all processes MB "
            "| peak RSS one process MB | driver MB | largest worker process MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for mode, rs in runs.items():
            if not rs:
                continue
            best = _best(rs)
            spread = max(r["seconds"] for r in rs) - best["seconds"]
            label = mode
            if mode == "default" and best.get("chosen"):
                label = f"default (chose {best['chosen'].get('mode')}, {best['chosen'].get('workers')} worker(s))"
            speedup = f"{fastest_one / best['seconds']:.2f}x" if fastest_one else ""
            lines.append(
                f"| {label} | {len(rs)} | {best['seconds']:.1f} | {spread:.1f} | {int(size) / best['seconds']:,.0f} "
                f"| {speedup} | {max(r['peak_tree_mb'] for r in rs):,} | {max(r['peak_process_mb'] for r in rs):,} "
                f"| {_role_peak(rs, 'peak_driver_mb')} | {_role_peak(rs, 'peak_worker_mb')} |"
            )
        lines += [
            "",
            f"Published kept + rejects bytes identical across every run: {'yes' if len(digests) == 1 else 'NO'}.",
            "",
        ]
    lines += _per_worker_growth(payload)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
