"""Where the second core goes: one run per variant, CPU per process, time per runner stage.

    python benchmarks/scaleout_profile.py --docs 100000

Variants (same corpus and config as ``scaleout_eval.py``):

* ``inprocess``: one in-process worker (the fastest 1-worker mode);
* ``multi2-before``: 2 worker processes with batches inline on the data plane and
  Beam's chunk-wise partition (``CURATE_NO_SPILL=1``, ``CURATE_BEAM_SKIP=balanced_partitions``);
* ``multi2``: 2 worker processes as curate runs them.

For each: wall time, CPU seconds of the driver (which is the runner: it moves
every element crossing a fusion break) and of each worker process (psutil,
sampled every 0.25 s), a one-character-per-second utilization line per
process, and the runner's stages (``FnApiRunner._execute_bundle``, wrapped by
this script's child) that took the most wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
}

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
    args = parser.parse_args()
    require_shared()
    shards = write_scaled_corpus(args.docs, Path(args.corpus_dir) / str(args.docs))
    payload = {"machine": machine_facts(), "documents": args.docs, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "chain.yaml"
        cfg_path.write_text(yaml.safe_dump(chain_config()))
        for name in args.variants.split(","):
            options, extra_env = VARIANTS[name]
            cmd = [sys.executable, "-c", CHILD, "run", "--quiet", "--config", str(cfg_path), "--input"]
            cmd += [str(shards[0].parent / "*.parquet"), "--output", str(Path(tmp) / name), "--overwrite", *options]
            result = profile(cmd, {**os.environ, **extra_env})
            payload["variants"][name] = result
            print(json.dumps({"variant": name, "wall_s": result["wall_s"], "processes": result["processes"]}))
    write_results("scaleout_profile", payload, render(payload))
    return 0


def render(payload: dict) -> str:
    lines = [
        f"# Where the second core goes ({payload['documents']:,} documents)",
        "",
        f"{machine_line(payload['machine'])}; `benchmarks/scaleout_profile.py`, one run per variant (a profile, "
        "not a timing series: `scaleout.md` has those). CPU per process from psutil; the timeline has one "
        "character per second of wall time, from ` ` (idle) to `@` (a whole core).",
        "",
    ]
    for name, result in payload["variants"].items():
        total = sum(p["cpu_s"] for p in result["processes"])
        lines += [f"## {name}: {result['wall_s']} s wall, {total:.1f} CPU-s", "", "```"]
        for proc in result["processes"]:
            lines.append(f"{proc['process']:>16} {proc['cpu_s']:6.1f} s |{proc['timeline']}|")
        lines += ["```", "", "| runner stage (fused transforms) | starts at s | seconds |", "|---|---:|---:|"]
        for stage in sorted(result["stages"], key=lambda s: -s["seconds"])[:12]:
            label = re.sub(r"\|", "/", stage["label"]) or "(runner-internal)"
            lines.append(f"| {label} | {stage['at']:.1f} | {stage['seconds']:.2f} |")
        serial = sum(s["seconds"] for s in result["stages"] if s["seconds"] < 2.0)
        lines += ["", f"Stages shorter than 2 s: {serial:.1f} s of wall time in all.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
