"""Stage ``mixing``: sample sources to target token shares within a token budget.

Element shapes: batches -> (mixture source, tokens) sums -> one plan dict
(``classifiers.mixture.plan_mixture``), broadcast as a singleton side input ->
batches with ``mixture_source`` and ``epoch`` (a document repeated k times
appears k times, epochs 0..k-1).

A document's mixture source is its ``source_column`` value mapped through
``source_map`` (unmapped values stand for themselves); a source without a
weight goes to ``other`` when the mixture has ``other``, else it is rejected
with ``source_not_in_mixture:<source>``.  Documents sampled out are rejected
with ``sampled_out:<source>``.  In the funnel, ``kept`` counts distinct
documents (epoch 0); repeats are counted apart.
"""
from __future__ import annotations

from fractions import Fraction

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.classifiers.mixture import epochs_for, plan_mixture, tokens_from_chars
from curate.transforms.io import write_json
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, reject_batch, with_columns

MIX_SOURCE = pa.field("mixture_source", pa.string())
EPOCH = pa.field("epoch", pa.int32())


def mixture_sources(batch: pa.RecordBatch, source_col: str, source_map: dict, weights: dict) -> list[str | None]:
    raw = batch.column(source_col).to_pylist() if source_col in batch.schema.names else [None] * batch.num_rows
    out = []
    for value in raw:
        mapped = source_map.get(value, value) if value is not None else None
        if mapped not in weights:
            mapped = "other" if "other" in weights else None
        out.append(mapped)
    return out


class Sample(beam.DoFn):
    def __init__(self, stage: str, cfg: dict, text_col: str, id_col: str, tokens_per_char: float):
        self.stage, self.cfg, self.text_col, self.id_col, self.tpc = stage, cfg, text_col, id_col, tokens_per_char

    def process(self, batch: pa.RecordBatch, plan: dict):
        c = self.cfg
        sources = mixture_sources(batch, c["source_column"], c["source_map"], c["weights"])
        ids = batch.column(self.id_col).to_pylist()
        epochs = np.zeros(batch.num_rows, dtype=np.int64)
        src_arr = np.array([s if s is not None else "" for s in sources], dtype=object)
        for source in set(sources) - {None}:
            idx = np.flatnonzero(src_arr == source)
            rate = Fraction(plan["sources"][source]["sampling_rate_exact"])
            epochs[idx] = epochs_for([ids[i] for i in idx], rate, c["seed"])
        annotated = with_columns(batch, {MIX_SOURCE.name: pa.array(sources, pa.string())})
        dropped = np.flatnonzero(epochs == 0)
        if len(dropped):
            reasons = [f"sampled_out:{sources[i]}" if sources[i] is not None else
                       f"source_not_in_mixture:{batch.column(c['source_column'])[i].as_py() if c['source_column'] in batch.schema.names else None}"
                       for i in dropped]
            rej = annotated.take(pa.array(dropped))
            rej = with_columns(rej, {EPOCH.name: pa.array(np.zeros(len(dropped), dtype=np.int32))})
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, reject_batch(rej, self.stage, reasons))
        kept_rows = np.repeat(np.arange(batch.num_rows), epochs)
        if len(kept_rows):
            epoch_of = np.concatenate([np.arange(k) for k in epochs if k > 0]).astype(np.int32)
            yield with_columns(annotated.take(pa.array(kept_rows)), {EPOCH.name: pa.array(epoch_of)})


class Mix(Stage):
    name = "mixing"
    added_fields = (MIX_SOURCE, EPOCH)
    repeat_column = EPOCH.name

    def __init__(self, columns, cfg: dict, tokens_per_char: float, plan_path: str):
        super().__init__(columns)
        self.cfg, self.tpc, self.plan_path = cfg, tokens_per_char, plan_path

    def expand(self, batches) -> StageResult:
        c, tpc, text_col = self.cfg, self.tpc, self.columns.text

        def chars_by_source(batch: pa.RecordBatch):
            sources = np.array([s or "" for s in mixture_sources(batch, c["source_column"], c["source_map"],
                                                                 c["weights"])], dtype=object)
            chars = pc.fill_null(pc.utf8_length(batch.column(text_col)), 0).to_numpy(zero_copy_only=False)
            for source in set(sources) - {""}:
                yield source, int(chars[sources == source].sum())  # integers: the sum is the same in any order

        plan_path = self.plan_path

        def make_plan(available_chars: dict) -> dict:
            plan = plan_mixture(tokens_from_chars(available_chars, tpc), c["weights"], c["token_budget"],
                                c["max_epochs"])
            write_json(plan_path, plan)
            return plan

        plan = (
            batches
            | "CharsBySource" >> beam.FlatMap(chars_by_source)
            | "SumChars" >> beam.CombinePerKey(sum)
            | "Available" >> beam.combiners.ToDict()
            | "Plan" >> beam.Map(make_plan)
        )
        out = batches | "Sample" >> TaggedParDo(
            Sample(self.name, c, text_col, self.columns.id, tpc), [REJECTED_TAG], main="kept",
            plan=beam.pvalue.AsSingleton(plan))
        name = self.name

        def mixed(batch: pa.RecordBatch):
            sources = np.array(batch.column(MIX_SOURCE.name).to_pylist(), dtype=object)
            chars = pc.fill_null(pc.utf8_length(batch.column(text_col)), 0).to_numpy(zero_copy_only=False)
            for source in set(sources):
                mask = sources == source
                yield (name, "mixed_by_source", source), (int(mask.sum()), int(chars[mask].sum()))

        stats = out.kept | "MixedBySource" >> beam.FlatMap(mixed)
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=stats)
