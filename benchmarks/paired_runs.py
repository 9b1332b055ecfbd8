"""Whole `curate run` commands timed in alternation (A B A B ...), outputs compared byte for byte.

Two uses, each committed under benchmarks/results/:

* ``patches``: what each optional Beam speed-up in ``curate.pipelines.beam`` is
  still worth: the same command with and without it (``CURATE_BEAM_SKIP``).
* ``chain``: the default chain against the same chain with extra configs layered
  on (``--with configs/heuristics_on.yaml``): docs/s of each, per core.
* ``refactor``: two installs of curate (two commits, each in its own virtualenv
  with ``curate`` on its PATH) on the same corpus: wall time per run and whether
  every published file but run.json is identical.

Alternating the two commands pairs each run with its neighbour, so a machine
that drifts (other work, thermal) moves both.  Reported: every run, the best
and the median of each side and the median of the per-pair ratios.

  python -m benchmarks.paired_runs patches --docs 50000 --runs 3
  python -m benchmarks.paired_runs refactor --docs 100000 --runs 3 \\
      --a /tmp/venv_new/bin/curate --b /tmp/venv_old/bin/curate --name registry
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_facts, machine_line, require_shared, write_results
from benchmarks.corpus import write_scaled_corpus

ONE_WORKER = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


def timed_run(command: list[str], env: dict, out: Path) -> tuple[float, float, float]:
    """(wall s, cpu s, peak RSS MB of the run's main process) of one run."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(command + ["--output", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read().decode()[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def paired(a: tuple[list[str], dict], b: tuple[list[str], dict], runs: int, work: Path) -> dict:
    times, cpu, rss = {"a": [], "b": []}, {"a": [], "b": []}, {"a": [], "b": []}
    digests = {}
    for i in range(runs + 1):  # the first pair warms the page cache and numba's cache; not counted
        for side, (command, env) in (("a", a), ("b", b)):
            seconds, cpu_s, rss_mb = timed_run(command, env, work / side)
            if i:
                times[side].append(round(seconds, 2))
                cpu[side].append(round(cpu_s, 2))
                rss[side].append(round(rss_mb))
            digests[side] = _digest(work / side)
    ratios = [x / y for x, y in zip(times["a"], times["b"])]
    return {
        "a_s": times["a"],
        "b_s": times["b"],
        "a_cpu_s": cpu["a"],
        "b_cpu_s": cpu["b"],
        "a_peak_rss_mb": rss["a"],
        "b_peak_rss_mb": rss["b"],
        "median_cpu_ratio_a_over_b": round(statistics.median(x / y for x, y in zip(cpu["a"], cpu["b"])), 4),
        "a_best": min(times["a"]),
        "b_best": min(times["b"]),
        "a_median": statistics.median(times["a"]),
        "b_median": statistics.median(times["b"]),
        "median_ratio_a_over_b": round(statistics.median(ratios), 4),
        "identical_output": digests["a"] == digests["b"],
        "files_compared": len(digests["a"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["patches", "refactor", "chain"])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--a", help="refactor: the new install's curate")
    parser.add_argument("--b", help="refactor: the old install's curate")
    parser.add_argument("--name", default="refactor")
    parser.add_argument(
        "--with", dest="with_configs", action="append", default=[], help="chain: config files layered on for side B"
    )
    parser.add_argument(
        "--patches",
        default="data_plane_copies,size_estimates",
        help="patches: the speed-ups to measure, comma-separated",
    )
    args = parser.parse_args()
    require_shared()
    work = Path(tempfile.mkdtemp(prefix="curate-paired-"))
    corpus = work / "corpus"
    write_scaled_corpus(args.docs, corpus)
    env = {k: v for k, v in os.environ.items() if k != "CURATE_BEAM_SKIP"}
    m = machine_facts()
    rows, payload = [], {"machine": m, "docs": args.docs, "runs": args.runs, "comparisons": {}}
    if args.what == "patches":
        curate = str(Path(sys.executable).parent / "curate")
        base = [curate, "run", "--input", str(corpus), *ONE_WORKER]
        for patch in args.patches.split(","):
            result = paired((base, env), (base, {**env, "CURATE_BEAM_SKIP": patch}), args.runs, work)
            payload["comparisons"][patch] = result
            rows.append(
                f"| {patch} | {result['a_median']:.2f} | {result['b_median']:.2f} | "
                f"{result['median_ratio_a_over_b']:.3f} | {result['median_cpu_ratio_a_over_b']:.3f} | "
                f"{statistics.median(result['a_peak_rss_mb']):,.0f} / "
                f"{statistics.median(result['b_peak_rss_mb']):,.0f} | "
                f"{'yes' if result['identical_output'] else 'NO'} |"
            )
        title = "What each optional Beam speed-up is worth"
        head = (
            "| speed-up | with it: median wall s | without it: median wall s | wall with / without "
            "(median of pairs) | CPU with / without | peak RSS MB with / without | identical output |"
            "\n|---|---:|---:|---:|---:|---:|---|"
        )
    elif args.what == "chain":
        curate = str(Path(sys.executable).parent / "curate")
        base = [curate, "run", "--input", str(corpus), *ONE_WORKER]
        with_b = base + [a for c in args.with_configs for a in ("--config", c)]
        result = paired((base, env), (with_b, env), args.runs, work)
        result["a_docs_per_s_best"] = round(args.docs / result["a_best"])
        result["b_docs_per_s_best"] = round(args.docs / result["b_best"])
        payload["comparisons"][args.name] = {**result, "with": args.with_configs}
        rows.append(
            f"| default chain | {result['a_median']:.2f} ({', '.join(map(str, result['a_s']))}) | "
            f"{result['a_docs_per_s_best']:,} |"
        )
        rows.append(
            f"| with {' + '.join(args.with_configs)} | {result['b_median']:.2f} "
            f"({', '.join(map(str, result['b_s']))}) | {result['b_docs_per_s_best']:,} |"
        )
        title = f"Whole chain, per core: {args.name}"
        head = "| chain | median wall s (runs, start-up included) | docs/s per core (fastest run) |\n|---|---:|---:|"
    else:
        base_a = [args.a, "run", "--input", str(corpus), *ONE_WORKER]
        base_b = [args.b, "run", "--input", str(corpus), *ONE_WORKER]
        result = paired((base_a, env), (base_b, env), args.runs, work)
        payload["comparisons"][args.name] = {**result, "a": args.a, "b": args.b}
        rows.append(
            f"| {args.name} | {result['a_median']:.2f} ({', '.join(map(str, result['a_s']))}) | "
            f"{result['b_median']:.2f} ({', '.join(map(str, result['b_s']))}) | "
            f"{result['median_ratio_a_over_b']:.3f} | "
            f"{'yes' if result['identical_output'] else 'NO'} ({result['files_compared']} files) |"
        )
        title = f"Before and after: {args.name}"
        head = (
            "| change | new: median s (runs) | old: median s (runs) | new / old (median of pairs) | "
            "identical output |\n|---|---:|---:|---:|---|"
        )
    markdown = "\n".join(
        [
            f"# {title}",
            "",
            machine_line(m),
            "",
            f"{args.docs:,} documents (benchmarks/corpus.py), one in-process worker "
            f"({' '.join(ONE_WORKER)}), {args.runs} alternated pairs after one warm-up pair.",
            "",
            head,
            *rows,
            "",
        ]
    )
    write_results(f"paired_{args.what}" if args.what == "patches" else f"{args.what}_{args.name}", payload, markdown)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
