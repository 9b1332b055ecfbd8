"""The whole chain with each semantic stage on and off: docs/s per core, measured and projected.

    python -m benchmarks.semantic_chain --docs 5000 --project 100000

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
beside it: the word pieces of all of GSM8K + HumanEval + MMLU over the embedder's
measured word pieces per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BENCHMARK_SETS, ROOT, machine_facts, machine_line, require_shared, write_results
from benchmarks.corpus import write_scaled_corpus

ONE_WORKER = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
CHAINS = ("default", "semantic_dedup on", "paraphrase on", "both on")
STAGE_AFTER = {"semantic_dedup": "near_dedup", "paraphrase": "decontamination"}


def run_chain(corpus: Path, out: Path, configs: list[str]) -> dict:
    curate = str(Path(sys.executable).parent / "curate")
    cmd = [curate, "run", "--input", str(corpus), "--output", str(out), *ONE_WORKER]
    for c in configs:
        cmd += ["--config", c]
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read().decode()[-3000:]}")
    funnel = json.loads((out / "funnel.json").read_text())
    stages = {
        s["name"]: {"in": s["in"]["docs"], "kept": s["kept"]["docs"]} for s in funnel["stages"] if s["status"] == "run"
    }
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "stages": stages}


def item_view_tokens() -> tuple[int, int]:
    from curate.classifiers.embedding import Embedder
    from curate.classifiers.paraphrase import load_item_views

    views = []
    for name, fmt, path in (
        ("gsm8k", "gsm8k", "gsm8k_test.jsonl"),
        ("humaneval", "humaneval", "HumanEval.jsonl.gz"),
        ("mmlu", "mmlu", "mmlu_test"),
    ):
        views += [v for it in load_item_views(name, fmt, str(BENCHMARK_SETS / path)) for v in it.views]
    return len(views), int(Embedder().token_counts(views).sum())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--project", type=int, default=100_000)
    args = ap.parse_args()
    require_shared()
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
    projected = {"default": proj_default["cpu_s"]}
    projected["semantic_dedup on"] = (
        proj_default["cpu_s"] + into["semantic_dedup"] * per_doc["semantic_dedup"]["cpu_s_per_doc"]
    )
    projected["paraphrase on"] = proj_default["cpu_s"] + into["paraphrase"] * per_doc["paraphrase"]["cpu_s_per_doc"]
    projected["both on"] = projected["semantic_dedup on"] + projected["paraphrase on"] - proj_default["cpu_s"]
    n_views, view_tokens = item_view_tokens()
    speed = json.loads((ROOT / "benchmarks" / "results" / "semantic.json").read_text())["speed"]
    payload = {
        "machine": machine_facts(),
        "docs": args.docs,
        "runs": runs,
        "per_doc": per_doc,
        "project_docs": args.project,
        "project_default_run": proj_default,
        "project_docs_into": into,
        "projected_cpu_s": {k: round(v) for k, v in projected.items()},
        "item_views": n_views,
        "item_view_tokens": view_tokens,
        "index_build_cpu_s_projected": round(view_tokens / speed["embedding_tokens_per_s"]),
    }
    write_results("semantic_chain", payload, render(payload))
    shutil.rmtree(work, ignore_errors=True)
    return 0


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
        s = p["projected_cpu_s"][name]
        lines.append(f"| {name} | {s:,} | {p['project_docs'] / s:,.1f} |")
    lines += [
        "",
        f"Start-up of `paraphrase` against all of GSM8K + HumanEval + MMLU: {p['item_views']:,} item views, "
        f"{p['item_view_tokens']:,} word pieces, about {p['index_build_cpu_s_projected']:,} CPU s at the "
        "embedder's measured word pieces per second (`semantic.md`), whatever the corpus size: paid once per run, "
        "the views' chunks spread over the workers (`transforms/paraphrase.py`).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
