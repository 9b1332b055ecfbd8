"""Where the second core goes: one run per variant, CPU per process, time per runner stage.

    python benchmarks/scaleout_profile.py --docs 100000

Variants (same corpus and config as ``scaleout_eval.py``):

* ``inprocess``: one in-process worker (the fastest 1-worker mode);
* ``multi2-before``: 2 worker processes with batches inline on the data plane and
  Beam's chunk-wise partition (``CURATE_NO_SPILL=1``, ``CURATE_BEAM_SKIP=balanced_partitions``);
* ``multi2``: 2 worker processes as curate runs them;
* ``halves``: not one run but two independent in-process runs at once, each on
  half of the shards (no dedup across the halves): what two processes of this
  machine do when nothing is shared between them, the yardstick for ``multi2``;
* ``loop`` and ``loops``: no curate at all: a fixed pure-Python loop (``LOOP``, the
  interpreter work a document's stages are made of), one copy, then two copies at
  once.  Two processes on this machine do ``2 * loop / loops`` times the work of one
  per second: the hardware's own ceiling for any 2-worker mode (on a VM whose two
  vCPUs share a physical core or its caches, well under 2).

For each: wall time, CPU seconds of the driver (which is the runner: it moves
every element crossing a fusion break) and of each worker process (psutil,
sampled every 0.25 s), a one-character-per-second utilization line per
process, and the runner's stages (``FnApiRunner._execute_bundle``, wrapped by
this script's child) that took the most wall time.  With ``--repeat N`` the
variants run in rotation N times and each keeps its fastest run.

The ceiling: a run is the time outside the runner's stages (start-up: imports,
reading footers, building the graph; the end: counting and publishing) plus the
stages.  Two workers can at best halve the stages, so the one in-process run
bounds the 2-worker speed-up at ``wall / (outside + stages / 2)``, before any
cost of the workers themselves (starting them, loading models in each,
moving data between processes, waiting on the slower one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_facts, machine_line, require_shared, run_watched, write_results  # noqa: E402
from benchmarks.corpus import write_scaled_corpus  # noqa: E402
from benchmarks.throughput import chain_config  # noqa: E402

VARIANTS = {
    "inprocess": (["--direct_running_mode=in_memory", "--direct_num_workers=1"], {}),
    "multi2-before": (
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        {"CURATE_NO_SPILL": "1", "CURATE_BEAM_SKIP": "balanced_partitions"},
    ),
    "multi2": (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], {}),
    "halves": (["--direct_running_mode=in_memory", "--direct_num_workers=1"], {}),
    "loop": ([], {}),
    "loops": ([], {}),
}

# The machine's yardstick (``loop``/``loops``): interpreter-bound work, no I/O, no allocation growth.
MACHINE_ONLY = ("loop", "loops")  # variants that run no curate: no stages, no speed-up against in-process
LOOP = "x = 0\nfor i in range(100_000_000):\n    x += i * i % 7\n"

# Run in the child: time every bundle execution of the runner, print one line per stage.
CHILD = r"""
import re, sys, time
from apache_beam.runners.portability.fn_api_runner import fn_runner
T0 = time.perf_counter()
original = fn_runner.FnApiRunner._execute_bundle
def timed(self, context, bundle_context, bundle_input):
    start = time.perf_counter()
    try:
        return original(self, context, bundle_context, bundle_input)
    finally:
        names = re.findall(r"ref_AppliedPTransform_([A-Za-z][A-Za-z0-9-]*)", bundle_context.stage.name)
        label = ",".join(dict.fromkeys(n[:40] for n in names))[:160]
        print(f"STAGE\t{start - T0:.2f}\t{time.perf_counter() - start:.3f}\t{label}", file=sys.stderr, flush=True)
fn_runner.FnApiRunner._execute_bundle = timed
from curate.pipelines.cli import main
sys.exit(main(sys.argv[1:]))
"""


def profile(cmd: list[str], env: dict) -> dict:
    import psutil

    seen: dict[int, dict] = {}

    def visit(now, procs):
        for proc in procs:
            try:
                with proc.oneshot():
                    times, name = proc.cpu_times(), " ".join(proc.cmdline()[1:3])
            except psutil.Error:
                continue
            entry = seen.setdefault(proc.pid, {"name": name, "series": []})
            entry["series"].append((now, times.user + times.system))

    wall, stderr = run_watched(cmd, visit, env=env, stdout=subprocess.DEVNULL)
    stages = []
    for line in stderr.splitlines():
        if line.startswith("STAGE\t"):
            _, at, took, label = line.split("\t", 3)
            stages.append({"at": float(at), "seconds": float(took), "label": label})
    processes = []
    for entry in seen.values():
        series = entry["series"]
        cpu = series[-1][1]
        if cpu < 0.5:
            continue
        kind = "worker" if "sdk_worker" in entry["name"] else "driver (runner)"
        line = []
        for second in range(int(wall) + 1):
            before = [c for t, c in series if t <= second]
            until = [c for t, c in series if t <= second + 1]
            used = (until[-1] if until else 0) - (before[-1] if before else 0)
            line.append(" .:-=+*#%@"[max(0, min(9, int(used * 10)))])
        processes.append({"process": kind, "cpu_s": round(cpu, 1), "timeline": "".join(line)})
    return {"wall_s": round(wall, 1), "processes": processes, "stages": stages}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--corpus-dir", default=str(Path(tempfile.gettempdir()) / "curate-bench-corpus"))
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the variants in rotation; fastest kept")
    args = parser.parse_args()
    require_shared()
    shards = write_scaled_corpus(args.docs, Path(args.corpus_dir) / str(args.docs))
    payload = {"machine": machine_facts(), "documents": args.docs, "repeat": args.repeat, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "chain.yaml"
        cfg_path.write_text(yaml.safe_dump(chain_config()))
        for _ in range(args.repeat):
            for name in args.variants.split(","):
                options, extra_env = VARIANTS[name]
                base = [sys.executable, "-c", CHILD, "run", "--quiet", "--config", str(cfg_path)]
                if name in MACHINE_ONLY:
                    one = shlex.join([sys.executable, "-c", LOOP])
                    cmd = ["sh", "-c", one if name == "loop" else f"{one} & {one}; wait"]
                elif name == "halves":
                    files = sorted(str(p) for p in shards)
                    runs = [
                        base
                        + [arg for path in part for arg in ("--input", path)]
                        + ["--output", str(Path(tmp) / f"half{k}"), "--overwrite", *options]
                        for k, part in enumerate((files[: len(files) // 2], files[len(files) // 2 :]))
                    ]
                    cmd = ["sh", "-c", " & ".join(shlex.join(r) for r in runs) + "; wait"]
                else:
                    cmd = base + ["--input", str(shards[0].parent / "*.parquet"), "--output", str(Path(tmp) / name)]
                    cmd += ["--overwrite", *options]
                result = profile(cmd, {**os.environ, **extra_env})
                walls = payload.setdefault("walls", {}).setdefault(name, [])
                walls.append(result["wall_s"])
                if result["wall_s"] <= min(walls):
                    payload["variants"][name] = result
                print(json.dumps({"variant": name, "wall_s": result["wall_s"], "processes": result["processes"]}))
    write_results("scaleout_profile", payload, render(payload))
    return 0


def stage_span(result: dict) -> float:
    """Seconds from the first runner stage's start to the last one's end."""
    stages = result["stages"]
    return max(s["at"] + s["seconds"] for s in stages) - min(s["at"] for s in stages)


def ceiling(payload: dict) -> list[str]:
    """The 2-worker speed-up the in-process run allows (module docstring), and the multi2 run against it."""
    one, two = payload["variants"].get("inprocess"), payload["variants"].get("multi2")
    if one is None:
        return []
    span = stage_span(one)
    outside = one["wall_s"] - span
    best = one["wall_s"] / (outside + span / 2)
    lines = [
        "## The ceiling",
        "",
        f"In process: {one['wall_s']} s = {outside:.1f} s outside the runner's stages (start-up and the end, "
        f"which two workers do not shorten) + {span:.1f} s of stages. Two workers halving every stage and "
        f"costing nothing would take {outside + span / 2:.1f} s: **at most {best:.2f}x**.",
    ]
    if two is not None:
        span2 = stage_span(two)
        cpu_one = sum(p["cpu_s"] for p in one["processes"])
        cpu_two = sum(p["cpu_s"] for p in two["processes"])
        lines += [
            "",
            f"multi2: {two['wall_s']} s ({one['wall_s'] / two['wall_s']:.2f}x) = {two['wall_s'] - span2:.1f} s "
            f"outside the stages + {span2:.1f} s of stages (the first starts the worker processes); "
            f"{cpu_two:.1f} CPU-s in all its processes against {cpu_one:.1f} in process.",
        ]
    halves = payload["variants"].get("halves")
    if halves is not None:
        lines += [
            "",
            f"halves: two independent in-process runs at once, each on half of the shards: both done in "
            f"{halves['wall_s']} s, {one['wall_s'] / halves['wall_s']:.2f}x the whole corpus in one process "
            "(no dedup across the halves, no data between the processes).",
        ]
    loop, loops = payload["variants"].get("loop"), payload["variants"].get("loops")
    if loop is not None and loops is not None:
        machine = 2 * loop["wall_s"] / loops["wall_s"]
        lines += [
            "",
            f"This machine, without curate: a pure-Python loop takes {loop['wall_s']} s alone and "
            f"{loops['wall_s']} s as two copies at once, so two processes do **{machine:.2f}x** the work "
            f"of one per second. With that, the in-process run allows 2 workers at most "
            f"{one['wall_s'] / (outside + span / machine):.2f}x ({outside:.1f} s outside the stages "
            f"+ {span:.1f} s / {machine:.2f}).",
        ]
    if payload.get("walls"):
        runs = "; ".join(f"{name} {', '.join(map(str, walls))}" for name, walls in payload["walls"].items())
        lines += ["", f"Wall times of every run, in rotation (fastest shown above): {runs}."]
        walls = payload["walls"]
        if len(walls.get("inprocess", [])) > 1:  # the fastest runs can be one lucky round: medians beside them
            base = statistics.median(walls["inprocess"])
            medians = ", ".join(
                f"{name} {statistics.median(w):.1f} s ({base / statistics.median(w):.2f}x)"
                for name, w in walls.items()
                if name != "inprocess" and name not in MACHINE_ONLY
            )
            lines.append(f"Medians: inprocess {base:.1f} s; {medians}.")
    return lines + [""]


def render(payload: dict) -> str:
    lines = [
        f"# Where the second core goes ({payload['documents']:,} documents)",
        "",
        f"{machine_line(payload['machine'])}; `benchmarks/scaleout_profile.py`, the fastest of "
        f"{payload.get('repeat', 1)} run(s) per variant, variants in rotation (`scaleout.md` has the timing series). CPU per process from psutil; the timeline has one "
        "character per second of wall time, from ` ` (idle) to `@` (a whole core).",
        "",
        *ceiling(payload),
    ]
    for name, result in payload["variants"].items():
        total = sum(p["cpu_s"] for p in result["processes"])
        lines += [f"## {name}: {result['wall_s']} s wall, {total:.1f} CPU-s", "", "```"]
        for proc in result["processes"]:
            role = {"halves": "run on a half", "loop": "loop", "loops": "loop copy"}.get(name, proc["process"])
            lines.append(f"{role:>16} {proc['cpu_s']:6.1f} s |{proc['timeline']}|")
        lines += ["```", ""]
        # no stage table: the loops run no curate, and the halves' two runs' stages interleave
        # (their tables are the inprocess one's, halved)
        if name in MACHINE_ONLY or name == "halves":
            continue
        lines += ["| runner stage (fused transforms) | starts at s | seconds |", "|---|---:|---:|"]
        for stage in sorted(result["stages"], key=lambda s: -s["seconds"])[:12]:
            label = re.sub(r"\|", "/", stage["label"]) or "(runner-internal)"
            lines.append(f"| {label} | {stage['at']:.1f} | {stage['seconds']:.2f} |")
        serial = sum(s["seconds"] for s in result["stages"] if s["seconds"] < 2.0)
        lines += ["", f"Stages shorter than 2 s: {serial:.1f} s of wall time in all.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
