"""The whole chain at 100k and 1M documents on this machine: time and memory.

Same scaled corpus recipe as ``throughput.py`` (``benchmarks/corpus.py``), the
packaged default config with the real GSM8K + HumanEval + MMLU test sets for
decontamination, one ``curate run`` per size on the chosen runner (default:
curate's DaskRunner with 2 worker processes on loopback, whose workers spill
to disk; the DirectRunner keeps every shuffle in memory, ~34 KB per document
measured at 100k, which would not fit 1M documents in 24 GB).

Memory is the peak of the summed resident memory of the ``curate`` process and
all its descendants (scheduler and workers), sampled every 0.5 s with psutil;
the funnel's dedup counts are reported next to it, as the dedup shuffle is
the part that must grow with the input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import curate_run, machine_facts, machine_line, require_shared, run_sampled, write_results  # noqa: E402
from benchmarks.corpus import write_scaled_corpus  # noqa: E402
from benchmarks.throughput import chain_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--runner-args", default="--dask-workers 2 --dask_npartitions=16", help="curate run options choosing the runner"
    )
    parser.add_argument("--corpus-dir", default=str(Path(tempfile.gettempdir()) / "curate-bench-corpus"))
    args = parser.parse_args()
    require_shared()
    payload = {"machine": machine_facts(), "runner_args": args.runner_args, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg_path = work / "chain.yaml"
        cfg_path.write_text(yaml.safe_dump(chain_config()))
        for size in [int(s) for s in args.sizes.split(",")]:
            shards = write_scaled_corpus(size, Path(args.corpus_dir) / str(size))
            out = work / f"out-{size}"
            sampled = run_sampled(curate_run(cfg_path, shards[0].parent / "*.parquet", out, *args.runner_args.split()))
            result = {"seconds": sampled["seconds"], "peak_tree_rss_mb": sampled["peak_tree_mb"]}
            funnel = json.loads((out / "funnel.json").read_text())
            stages = {
                s["name"]: {"in": s["in"]["docs"], "kept": s["kept"]["docs"]}
                for s in funnel["stages"]
                if s.get("status") == "run"
            }
            entry = {
                "documents": size,
                "parquet_mb": round(sum(p.stat().st_size for p in shards) / 1e6, 1),
                **result,
                "docs_per_s": round(size / result["seconds"], 1),
                "conservation_ok": funnel["conservation"]["ok"],
                "stages": stages,
            }
            payload["sizes"][str(size)] = entry
            print(json.dumps(entry), flush=True)
    write_results("scale", payload, render(payload))
    return 0


def render(payload: dict) -> str:
    lines = [
        "# The whole chain at growing sizes",
        "",
        f"{machine_line(payload['machine'])}; `curate run {payload['runner_args']}`, default config + GSM8K/HumanEval/MMLU decontamination.",
        "",
        "| documents | Parquet MB | seconds | docs/s | peak RSS, all processes, MB | kept after dedup | conservation |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for size, e in payload["sizes"].items():
        dedup = e["stages"].get("near_dedup", e["stages"].get("exact_dedup", {})).get("kept", "")
        lines.append(
            f"| {int(size):,} | {e['parquet_mb']} | {e['seconds']} | {e['docs_per_s']:,.0f} | "
            f"{e['peak_tree_rss_mb']:,} | {dedup:,} | {'ok' if e['conservation_ok'] else 'FAILED'} |"
        )
    sizes = list(payload["sizes"].values())
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[-1]
        lines += [
            "",
            f"{b['documents'] // a['documents']}x the documents: {b['seconds'] / a['seconds']:.1f}x the time, "
            f"{b['peak_tree_rss_mb'] / max(a['peak_tree_rss_mb'], 1):.1f}x the peak memory.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
