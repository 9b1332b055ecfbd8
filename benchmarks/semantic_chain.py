"""The whole chain with each semantic stage on and off: docs/s per core, measured and projected.

    python -m benchmarks.semantic_chain --docs 1000 --project 100000
    python -m benchmarks.semantic_chain --index-only   # re-measure the paraphrase start-up alone

On one CPU core the semantic stages cost seconds per hundred documents, so a
100k-document chain with them on runs for hours on this machine.  This measures
what a user pays and how it scales:

1. the default chain, the chain with ``semantic_dedup`` alone, with ``paraphrase``
   alone and with both, on the same ``--docs`` corpus (``benchmarks/corpus.py``), one
   in-process worker, wall and CPU time of each whole run (start-up included);
2. each stage's cost per document *it receives* (the run with it minus the default
   run, over the documents the funnel shows entering it);
3. the default chain at ``--project`` documents, timed, with its funnel: how many
   documents would enter each semantic stage there (``semantic_dedup`` sits after
   MinHash, ``paraphrase`` after n-gram decontamination);
4. the projected chain at ``--project``: the timed default plus each stage's
   measured per-document cost times the documents it would receive.

The paraphrase runs use ``configs/semantic.yaml``'s bundled sample benchmark: the
per-document cost (embedding every span) does not depend on the number of items,
the start-up does (each worker embeds every item view once), and is reported
beside it: every 16th item view of all of GSM8K + HumanEval + MMLU embedded in the
stage's chunks on one core, scaled to all the views' word pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import paired_runs
from benchmarks.common import BENCHMARK_SETS, ROOT, machine_facts, machine_line, require_shared, write_results
from benchmarks.corpus import write_scaled_corpus

ONE_WORKER = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
CHAINS = ("default", "semantic_dedup on", "paraphrase on", "both on")
STAGE_AFTER = {"semantic_dedup": "near_dedup", "paraphrase": "decontamination"}


def run_chain(corpus: Path, out: Path, configs: list[str]) -> dict:
    curate = str(Path(sys.executable).parent / "curate")
    cmd = [curate, "run", "--input", str(corpus), *ONE_WORKER]
    for c in configs:
        cmd += ["--config", c]
    wall, cpu, _ = paired_runs.timed_run(cmd, dict(os.environ), out)
    funnel = json.loads((out / "funnel.json").read_text())
    stages = {
        s["name"]: {"in": s["in"]["docs"], "kept": s["kept"]["docs"]} for s in funnel["stages"] if s["status"] == "run"
    }
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "stages": stages}


def index_build(step: int = 16) -> dict:
    """CPU seconds to embed every ``step``-th item view of GSM8K + HumanEval + MMLU (as the
    stage does: fixed chunks, one thread, no cache), scaled to all the views' word pieces."""
    from benchmarks.semantic_eval import SPECS
    from curate.classifiers.embedding import Embedder
    from curate.classifiers.paraphrase import VIEW_CHUNK, item_views, load_benchmarks

    views = item_views(load_benchmarks([(n, f, str(BENCHMARK_SETS / p)) for n, f, p in SPECS]))
    emb = Embedder(cache_size=0)
    total = int(emb.token_counts(views).sum())
    sample = views[::step]
    tokens = int(emb.token_counts(sample).sum())
    emb.embed(sample[:64])  # load the model outside the timing
    t0 = time.process_time()
    for s in range(0, len(sample), VIEW_CHUNK):
        emb.embed(sample[s : s + VIEW_CHUNK])
    cpu = time.process_time() - t0
    return {
        "views": len(views),
        "view_tokens": total,
        "sample_views": len(sample),
        "sample_tokens": tokens,
        "sample_cpu_s": round(cpu, 2),
        "tokens_per_s": round(tokens / cpu, 1),
        "projected_cpu_s": round(cpu * total / tokens),
        "git_commit": machine_facts()["git_commit"],
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--project", type=int, default=100_000)
    ap.add_argument("--index-only", action="store_true", help="re-measure the paraphrase start-up into the results")
    args = ap.parse_args()
    require_shared()
    if args.index_only:
        payload = json.loads((ROOT / "benchmarks" / "results" / "semantic_chain.json").read_text())
        for stale in ("projected_cpu_s", "item_views", "item_view_tokens", "index_build_cpu_s_projected"):
            payload.pop(stale, None)  # earlier layouts of the file
        payload["index_build"] = index_build()
        write_results("semantic_chain", payload, render(payload))
        return 0
    work = Path(tempfile.mkdtemp(prefix="curate-semchain-"))
    sd_only, pp_only = work / "sd.yaml", work / "pp.yaml"
    sd_only.write_text("stages:\n  semantic_dedup:\n    enabled: true\n")
    pp_only.write_text(
        "stages:\n  paraphrase:\n    enabled: true\n    benchmarks:\n      - name: sample_benchmark\n"
        "        format: gsm8k\n        path: bundled:sample_benchmark.jsonl\n"
    )
    both = str(ROOT / "configs" / "semantic.yaml")
    small = work / "small"
    write_scaled_corpus(args.docs, small)
    runs = {}
    run_chain(small, work / "warm", [])  # page cache, numba's cache
    for name, cfgs in (
        ("default", []),
        ("semantic_dedup on", [str(sd_only)]),
        ("paraphrase on", [str(pp_only)]),
        ("both on", [both]),
    ):
        runs[name] = run_chain(small, work / "out", cfgs)
        print(name, runs[name], flush=True)
    base = runs["default"]
    per_doc = {}
    for stage, run in (("semantic_dedup", runs["semantic_dedup on"]), ("paraphrase", runs["paraphrase on"])):
        n = run["stages"][stage]["in"]
        per_doc[stage] = {
            "docs_in": n,
            "added_cpu_s": round(run["cpu_s"] - base["cpu_s"], 2),
            "cpu_s_per_doc": round((run["cpu_s"] - base["cpu_s"]) / max(1, n), 4),
            "docs_per_s_per_core": round(n / max(1e-9, run["cpu_s"] - base["cpu_s"]), 2),
        }
    big = work / "big"
    write_scaled_corpus(args.project, big)
    run_chain(big, work / "warm", [])
    proj_default = run_chain(big, work / "out", [])
    into = {stage: proj_default["stages"][after]["kept"] for stage, after in STAGE_AFTER.items()}
    payload = {
        "machine": machine_facts(),
        "docs": args.docs,
        "runs": runs,
        "per_doc": per_doc,
        "project_docs": args.project,
        "project_default_run": proj_default,
        "project_docs_into": into,
        "index_build": index_build(),
    }
    write_results("semantic_chain", payload, render(payload))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def projected(p: dict) -> dict:
    """CPU s of each chain at ``project_docs``: the timed default plus each stage's measured
    CPU s per document times the documents the default chain's funnel sends into it."""
    base = p["project_default_run"]["cpu_s"]
    add = {k: p["project_docs_into"][k] * p["per_doc"][k]["cpu_s_per_doc"] for k in STAGE_AFTER}
    return {
        "default": base,
        "semantic_dedup on": base + add["semantic_dedup"],
        "paraphrase on": base + add["paraphrase"],
        "both on": base + add["semantic_dedup"] + add["paraphrase"],
    }


def render(p: dict) -> str:
    lines = [
        "# The chain with the semantic stages on and off",
        "",
        machine_line(p["machine"]),
        "",
        f"Measured: {p['docs']:,} documents (benchmarks/corpus.py), one in-process worker "
        f"({' '.join(ONE_WORKER)}), one run of each after a warm-up run; CPU seconds of the whole `curate run` "
        "process (start-up included). Paraphrase against the bundled sample benchmark (configs/semantic.yaml).",
        "",
        "| chain | wall s | CPU s | docs/s per core | docs into semantic_dedup | docs into paraphrase |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in CHAINS:
        r = p["runs"][name]
        sd = r["stages"].get("semantic_dedup", {}).get("in", "-")
        pp = r["stages"].get("paraphrase", {}).get("in", "-")
        lines.append(
            f"| {name} | {r['wall_s']} | {r['cpu_s']} | {p['docs'] / r['cpu_s']:,.0f} | "
            f"{sd if isinstance(sd, str) else f'{sd:,}'} | {pp if isinstance(pp, str) else f'{pp:,}'} |"
        )
    lines += ["", "Each stage's cost per document it receives (its run minus the default run):", ""]
    for stage, v in p["per_doc"].items():
        lines.append(
            f"- `{stage}`: {v['added_cpu_s']} CPU s for {v['docs_in']:,} documents, "
            f"{v['docs_per_s_per_core']} docs/s per core"
        )
    d = p["project_default_run"]
    lines += [
        "",
        f"## Projected at {p['project_docs']:,} documents",
        "",
        f"The default chain at {p['project_docs']:,} documents, timed: {d['cpu_s']} CPU s "
        f"({p['project_docs'] / d['cpu_s']:,.0f} docs/s per core, wall {d['wall_s']} s). Its funnel sends "
        f"{p['project_docs_into']['semantic_dedup']:,} documents past MinHash (into `semantic_dedup`) and "
        f"{p['project_docs_into']['paraphrase']:,} past n-gram decontamination (into `paraphrase`). "
        "With each stage's measured cost per document:",
        "",
        "| chain | projected CPU s | docs/s per core |",
        "|---|---:|---:|",
    ]
    for name in CHAINS:
        s = projected(p)[name]
        lines.append(f"| {name} | {s:,.0f} | {p['project_docs'] / s:,.1f} |")
    ib = p.get("index_build")
    if ib:
        lines += [
            "",
            f"Start-up of `paraphrase` against all of GSM8K + HumanEval + MMLU: {ib['views']:,} item views, "
            f"{ib['view_tokens']:,} word pieces. Every 16th view ({ib['sample_views']:,}, {ib['sample_tokens']:,} word "
            f"pieces) embedded as the stage does (chunks of 512, one thread) took {ib['sample_cpu_s']} CPU s "
            f"({ib['tokens_per_s']:,} word pieces/s, at {ib['git_commit']}): about {ib['projected_cpu_s']:,} CPU s for "
            "all of them, whatever the corpus size, paid once per run with the chunks spread over the workers "
            "(`transforms/paraphrase.py`).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
