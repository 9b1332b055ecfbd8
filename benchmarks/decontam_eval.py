"""Decontamination: recall of planted benchmark items, false positives on clean text,
throughput and index memory.

    python benchmarks/decontam_eval.py

Index: GSM8K, HumanEval and MMLU test sets from ../shared/data/benchmarks, loaded
by the stage's own loaders, built by the stage's ``NgramIndex`` (stop-list:
n-grams in more than 2 items are not indexed), policy ``any``.

Recall: 150 items per benchmark (seeded), each planted into a real English
document of ../shared/data/real (inserted at a paragraph boundary), in three
variants: ``verbatim``; ``normalized`` -- upper-cased, punctuation deleted
("don't" -> "DONT"), whitespace runs changed (newlines -> spaces, double
spaces); ``partial`` -- a contiguous 50% of the item's words only.  A planted
document counts as found when the stage's decision drops it and names that
benchmark.

Settings: 13-grams with policy ``any`` (the default), 8-grams with ``any``, and
8-grams with ``fraction`` 0.2 (an item must be 20% covered: one shared domain
phrase such as "divided by the square root of the sample size" is not enough).

False positives: every real document of ../shared/data/real, which contains no
benchmark item, run through the same decision; rate = flagged / all.
"""

from __future__ import annotations

import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks.common import BENCHMARK_SETS, REAL_DOCS, machine_facts, require_shared, write_results  # noqa: E402
from curate.classifiers.benchmark_sets import load_items  # noqa: E402
from curate.classifiers.ngram_index import NgramIndex  # noqa: E402
from curate.transforms.decontaminate import decide  # noqa: E402

SPECS = [
    ("gsm8k", "gsm8k", "gsm8k_test.jsonl"),
    ("humaneval", "humaneval", "HumanEval.jsonl.gz"),
    ("mmlu", "mmlu", "mmlu_test"),
]
PER_BENCHMARK = 150
_PUNCT = re.compile(r"[^\w\s]|_")


def normalized_variant(text: str, rng: random.Random) -> str:
    text = _PUNCT.sub("", text.upper())
    words = text.split()
    return " ".join(w + ("  " if rng.random() < 0.2 else "") for w in words)


def partial_variant(text: str, rng: random.Random) -> str:
    words = text.split()
    k = max(1, len(words) // 2)
    start = rng.randrange(0, len(words) - k + 1)
    return " ".join(words[start : start + k])


def plant(host: str, item: str, rng: random.Random) -> str:
    paragraphs = host.split("\n\n")
    at = rng.randrange(len(paragraphs) + 1)
    return "\n\n".join(paragraphs[:at] + [item] + paragraphs[at:])


def detect(index: NgramIndex, texts: list[str], policy=("any", 0.5)) -> list[str | None]:
    policies = {b: policy for b in set(index.item_benchmarks)}
    out = []
    for i in range(0, len(texts), 2048):
        _, _, benches, _, _ = decide(index.match_batch(pa.array(texts[i : i + 2048])), index, policies)
        out += benches
    return out


def main() -> int:
    require_shared()
    items = []
    for name, fmt, file in SPECS:
        items += [(name, item_id, text) for item_id, text in load_items(fmt, str(BENCHMARK_SETS / file))]
    real = pq.read_table(REAL_DOCS).to_pylist()
    hosts = [r["text"] for r in real if r["lang"] == "en"]
    clean = [r["text"] for r in real]
    rng = random.Random(0)
    results = {}
    for n, policy in ((13, ("any", 0.5)), (8, ("any", 0.5)), (8, ("fraction", 0.2))):
        start = time.perf_counter()
        index = NgramIndex.build(items, n=n, max_item_frequency=2)
        build_s = time.perf_counter() - start
        recall = {}
        for name, _, _ in SPECS:
            mine = [it for it in items if it[0] == name]
            sample = rng.sample(mine, min(PER_BENCHMARK, len(mine)))
            for variant in ("verbatim", "normalized", "partial"):
                texts = []
                for _, _, text in sample:
                    piece = {
                        "verbatim": text,
                        "normalized": normalized_variant(text, rng),
                        "partial": partial_variant(text, rng),
                    }[variant]
                    texts.append(plant(rng.choice(hosts), piece, rng))
                found = detect(index, texts, policy)
                recall.setdefault(name, {})[variant] = round(sum(f == name for f in found) / len(texts), 4)
        flagged = detect(index, clean, policy)
        fp = sum(f is not None for f in flagged)
        reps = max(1, 20000 // len(clean))
        big = clean * reps
        start = time.perf_counter()
        detect(index, big, policy)
        seconds = time.perf_counter() - start
        results[f"{n}-gram, policy {policy[0]}" + (f" {policy[1]}" if policy[0] == "fraction" else "")] = {
            "recall": recall,
            "false_positives": fp,
            "clean_docs": len(clean),
            "false_positive_rate": round(fp / len(clean), 5),
            "index": {**index.stats, "bytes": index.nbytes(), "build_seconds": round(build_s, 2)},
            "docs_per_s": round(len(big) / seconds, 1),
            "throughput_docs": len(big),
        }
    payload = {"machine": machine_facts(), "items": len(items), "results": results}
    lines = [
        "# Decontamination: recall, false positives, speed",
        "",
        f"Index over {len(items):,} items (GSM8K, HumanEval, MMLU test sets); {PER_BENCHMARK} items per benchmark "
        "planted into real documents per variant; false positives on all 2,361 clean real documents.",
        "",
    ]
    for key, r in results.items():
        lines += [f"## {key}", "", "| benchmark | verbatim | normalized | partial (50%) |", "|---|---:|---:|---:|"]
        for name, v in r["recall"].items():
            lines.append(f"| {name} | {v['verbatim']:.4f} | {v['normalized']:.4f} | {v['partial']:.4f} |")
        idx = r["index"]
        lines += [
            "",
            f"False positives: {r['false_positives']} of {r['clean_docs']:,} clean documents "
            f"({100 * r['false_positive_rate']:.3f}%).",
            f"Index: {idx['ngrams']:,} n-grams, {idx['bytes'] / 1e6:.1f} MB; "
            f"{idx['excluded_common_across_items']:,} excluded as common across items, "
            f"{idx['excluded_mostly_numbers']:,} as mostly numbers; {idx['items_indexed_whole']:,} short items "
            f"indexed whole, {idx['items_too_short']:,} too short (< 6 tokens); built in {idx['build_seconds']} s.",
            f"Throughput (normalize + hash + lookup + decide, one core): {r['docs_per_s']:,.0f} docs/s "
            f"on {r['throughput_docs']:,} documents.",
            "",
        ]
    write_results("decontamination", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
