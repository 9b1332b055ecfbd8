"""Stage ``decontamination``: drop documents that contain benchmark test items.

The n-gram index (``classifiers.ngram_index``) is built once inside the
pipeline from the benchmark files -- Create(specs) -> load items -> one
combine -> build -- and broadcast to every worker as a singleton side input
(a few MB for GSM8K + HumanEval + MMLU).  Batches of documents are normalized
and hashed with Arrow/numpy and looked up with one ``searchsorted``.

Policies, per benchmark:
  ``any``       drop on any indexed n-gram of one of its items;
  ``fraction``  drop when the matched n-grams cover at least ``min_fraction``
                of one item's indexed n-grams;
  ``cut``       as NeMo Curator: remove ``cut_window`` characters around each
                matched n-gram, keep the document made of the remaining pieces
                of at least ``min_piece_chars``; drop it past ``max_cuts`` cuts
                or when nothing long enough remains.  A cut document stays in
                ``kept/`` with ``contamination_cuts`` > 0, and the removed text
                is written to ``cuts/decontamination/`` (id, benchmark, item,
                cut text), so nothing is lost.
Rejects carry ``contamination_benchmark``, ``contamination_item`` and
``matched_ngrams``; reason ``contaminated:<benchmark>``.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from curate.classifiers.benchmark_sets import BenchmarkFormatError, load_items
from curate.classifiers.ngram_index import NgramIndex, cut_matches
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split

BENCHMARK = pa.field("contamination_benchmark", pa.string())
ITEM = pa.field("contamination_item", pa.string())
MATCHED = pa.field("matched_ngrams", pa.int32())
CUTS = pa.field("contamination_cuts", pa.int32())
CUT_SCHEMA = pa.schema([("id", pa.string()), ("benchmark", pa.string()), ("item", pa.string()),
                        ("cut_text", pa.string())])


def resolve_path(path: str) -> str:
    """``bundled:NAME`` is a file shipped in the curate package, resolved where it is read
    (on the worker), so no driver-local path ends up in the pipeline."""
    if path.startswith("bundled:"):
        from importlib import resources

        return str(resources.files("curate.sample").joinpath(path.split(":", 1)[1]))
    return path


def load_spec_items(spec: dict):
    path = resolve_path(spec["path"])
    for item_id, text in load_items(spec["format"], path, spec.get("fields"), spec.get("id_field")):
        yield spec["name"], item_id, text


def decide(matches: list[dict], index: NgramIndex, policies: dict):
    """Per document: (keep, reason, benchmark, item, matched) for the item with most matches.

    Items of ``cut`` benchmarks are left out here (see ``cut_candidates``)."""
    keep = np.ones(len(matches), dtype=bool)
    reasons, benches, items, counts = [], [None] * len(matches), [None] * len(matches), np.zeros(len(matches), np.int32)
    for d, found in enumerate(matches):
        best = None
        for item, count in found.items():
            if item < 0:
                continue
            bench = index.item_benchmarks[item]
            policy, min_fraction = policies[bench][:2]
            if policy == "cut" or (policy == "fraction" and count < min_fraction * max(int(index.item_ngrams[item]), 1)):
                continue
            if best is None or count > best[1]:
                best = (item, count)
        if best is not None:
            item, count = best
            keep[d] = False
            benches[d], items[d], counts[d] = index.item_benchmarks[item], index.item_ids[item], count
            reasons.append(f"contaminated:{benches[d]}")
    return keep, reasons, benches, items, counts


class MatchBenchmarks(beam.DoFn):
    def __init__(self, stage: str, text_col: str, id_col: str, policies: dict):
        self.stage, self.text_col, self.id_col, self.policies = stage, text_col, id_col, policies

    def process(self, batch: pa.RecordBatch, index: NgramIndex):
        matches = index.match_batch(batch.column(self.text_col))
        keep, reasons, benches, items, counts = decide(matches, index, self.policies)
        cuts = np.zeros(batch.num_rows, dtype=np.int32)
        texts = None
        reasons = list(reasons)
        drop_order = list(np.flatnonzero(~keep))
        for d, found in enumerate(matches):
            if not keep[d] or not found:
                continue
            cut_items = [i for i in found if i >= 0 and self.policies[index.item_benchmarks[i]][0] == "cut"]
            if not cut_items:
                continue
            texts = texts if texts is not None else batch.column(self.text_col).to_pylist()
            item = max(cut_items, key=lambda i: found[i])
            bench = index.item_benchmarks[item]
            _, _, window, min_piece, max_cuts = self.policies[bench]
            new_text, removed, n_cuts = cut_matches(texts[d], found[-1], index.n, window, min_piece, max_cuts)
            benches[d], items[d], counts[d] = bench, index.item_ids[item], found[item]
            doc_id = batch.column(self.id_col)[d].as_py()
            for piece in removed:
                yield beam.pvalue.TaggedOutput("cuts", {"id": doc_id, "benchmark": bench,
                                                        "item": index.item_ids[item], "cut_text": piece})
            if new_text is None:
                keep[d] = False
                drop_order.append(d)
                reasons.append(f"contaminated:{bench}" + (":too_many_cuts" if n_cuts > max_cuts else ""))
            else:
                yield beam.pvalue.TaggedOutput("cut_stats", ((self.stage, "cut", ""), (1, len(texts[d]) - len(new_text))))
                texts[d], cuts[d] = new_text, n_cuts
        if texts is not None:  # some documents were cut: replace the text column
            col = batch.schema.get_field_index(self.text_col)
            batch = batch.set_column(col, self.text_col, pa.array(texts, pa.string()))
        # reasons must follow row order of the dropped rows
        order = np.argsort(np.array(drop_order, dtype=np.int64), kind="stable")
        reasons = [reasons[i] for i in order]
        extra = {BENCHMARK.name: pa.array(benches, pa.string()), ITEM.name: pa.array(items, pa.string()),
                 MATCHED.name: pa.array(counts, pa.int32())}
        yield from emit_split(batch, self.stage, keep, reasons, kept_extra={CUTS.name: pa.array(cuts, pa.int32())},
                              reject_extra=extra)


class Decontaminate(Stage):
    name = "decontamination"
    added_fields = (CUTS,)
    reject_fields = (BENCHMARK, ITEM, MATCHED)

    def __init__(self, columns, specs: list[dict], ngram: int = 13, max_item_frequency: int = 2,
                 reference_texts: list[str] | None = None):
        super().__init__(columns)
        self.specs, self.ngram, self.max_item_frequency = specs, ngram, max_item_frequency
        self.reference_texts = reference_texts or []

    def check(self):
        """Parse every benchmark file on the driver: a bad or missing file stops the run before any output,
        naming its config key."""
        for i, spec in enumerate(self.specs):
            key = f"config key stages.decontamination.benchmarks[{i}].path"
            try:
                for _ in load_spec_items(spec):
                    pass
            except BenchmarkFormatError as exc:
                raise BenchmarkFormatError(f"{key} ({spec['name']}): {exc}") from None
            except OSError as exc:  # FileNotFoundError, a folder, permissions; Beam's IOError for remote paths
                reason = exc.strerror or str(exc)
                raise BenchmarkFormatError(f"{key} ({spec['name']}): cannot read {spec['path']} ({reason})") from None

    def expand(self, batches) -> StageResult:
        n, max_freq, refs = self.ngram, self.max_item_frequency, self.reference_texts

        def build(items):
            items = sorted(items)  # deterministic item order whatever the runner
            return NgramIndex.build(items, n=n, max_item_frequency=max_freq, reference_texts=refs or None)

        index = (
            batches.pipeline
            | "BenchmarkSpecs" >> beam.Create(self.specs)
            | "LoadItems" >> beam.FlatMap(load_spec_items)
            | "AllItems" >> beam.combiners.ToList()
            | "BuildIndex" >> beam.Map(build)
        )
        policies = {s["name"]: (s["policy"], s["min_fraction"], s["cut_window"], s["min_piece_chars"], s["max_cuts"])
                    for s in self.specs}
        out = batches | "Match" >> TaggedParDo(
            MatchBenchmarks(self.name, self.columns.text, self.columns.id, policies),
            [REJECTED_TAG, "cuts", "cut_stats"], main="kept", index=beam.pvalue.AsSingleton(index))

        name = self.name

        def index_stats(idx: NgramIndex):
            for key, value in idx.stats.items():
                yield (name, "index", key), (int(value), 0)
            yield (name, "index", "bytes"), (idx.nbytes(), 0)

        def items_found(batch: pa.RecordBatch):
            for bench, item in zip(batch.column(BENCHMARK.name).to_pylist(), batch.column(ITEM.name).to_pylist()):
                yield (name, "item_found", f"{bench}\t{item}"), (1, 0)

        stats = ((index | "IndexStats" >> beam.FlatMap(index_stats)),
                 (out[REJECTED_TAG] | "ItemsFound" >> beam.FlatMap(items_found)),
                 out.cut_stats) | "DecontamStats" >> beam.Flatten()
        self.cuts = out.cuts  # rows of CUT_SCHEMA, written by the pipeline to cuts/decontamination/
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=stats)
