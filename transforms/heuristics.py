"""Stages ``gopher_quality``, ``gopher_repetition``, ``c4`` and ``fineweb``: the rule-based
filters of ``classifiers/heuristics.py``, one stage per family, one reject reason per rule
(``gopher_quality:mean_word_length``, ``c4:lorem_ipsum``, ...), so the funnel shows which
rule removed how much.

Words are split with each document's language when ``language_column`` names a column
of the batch (the language stage's output, ISO 639-1 codes), English otherwise, as
datatrove's filters take one ``language``.  The C4 stage removes lines: its kept batch
carries the edited text in the text column, and it emits the removed characters as the
stage's ``cut`` stat (``(stage, "cut", "") -> (documents edited, characters removed)``,
the funnel's accounting for text taken out of kept documents), so a stage's characters in
still equal kept + rejected + cut.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from curate.classifiers.heuristics import (C4Config, FineWebConfig, GopherQualityConfig, GopherRepetitionConfig,
                                           c4_filter, fineweb_reasons, gopher_quality_reasons,
                                           gopher_repetition_reasons)
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split, split_by_mask

CUT_STATS_TAG = "cut_stats"


def _languages(batch: pa.RecordBatch, language_column: str | None):
    if language_column and batch.schema.get_field_index(language_column) >= 0:
        return batch.column(language_column).to_pylist()
    return None


class _RuleStage(Stage):
    """A family whose rules only keep or drop documents: ``reasons_fn(texts, config, languages)``."""

    reasons_fn = None
    config_class = None

    def __init__(self, columns, config=None, language_column: str | None = None):
        super().__init__(columns)
        self.config = config if config is not None else self.config_class()
        self.language_column = language_column

    def expand(self, batches) -> StageResult:
        text_col, config, language_column, fn = self.columns.text, self.config, self.language_column, \
            type(self).reasons_fn

        def decide(batch):
            reasons = fn(batch.column(text_col), config, _languages(batch, language_column))
            keep = np.fromiter((r is None for r in reasons), np.bool_, len(reasons))
            return keep, [r for r in reasons if r is not None], {}, {}

        return split_by_mask(batches, self.name, decide)


class GopherQuality(_RuleStage):
    name = "gopher_quality"
    reasons_fn = staticmethod(gopher_quality_reasons)
    config_class = GopherQualityConfig

    def __init__(self, columns, config: GopherQualityConfig | None = None, language_column: str | None = None):
        super().__init__(columns, config, language_column)


class GopherRepetition(_RuleStage):
    name = "gopher_repetition"
    reasons_fn = staticmethod(gopher_repetition_reasons)
    config_class = GopherRepetitionConfig

    def __init__(self, columns, config: GopherRepetitionConfig | None = None, language_column: str | None = None):
        super().__init__(columns, config, language_column)


class FineWebQuality(_RuleStage):
    name = "fineweb"
    reasons_fn = staticmethod(fineweb_reasons)
    config_class = FineWebConfig

    def __init__(self, columns, config: FineWebConfig | None = None, language_column: str | None = None):
        super().__init__(columns, config, language_column)


class _C4Split(beam.DoFn):
    """Decides a batch with C4's rules; kept documents leave with their edited text."""

    def __init__(self, stage: str, text_col: str, config: C4Config, language_column: str | None):
        self.stage, self.text_col, self.config, self.language_column = stage, text_col, config, language_column

    def process(self, batch: pa.RecordBatch):
        original = batch.column(self.text_col)
        reasons, edited, removed = c4_filter(original, self.config, _languages(batch, self.language_column))
        keep = np.fromiter((r is None for r in reasons), np.bool_, len(reasons))
        texts = original.to_pylist()
        cut = [n for n, k in zip(removed, keep) if k and n > 0]
        if cut:
            yield beam.pvalue.TaggedOutput(CUT_STATS_TAG, ((self.stage, "cut", ""), (len(cut), int(sum(cut)))))
        if any(k and e != o for e, k, o in zip(edited, keep, texts)):
            # dropped rows keep their original text (they are rejected whole); a null text stays null
            texts = [e if k and o is not None else o for e, k, o in zip(edited, keep, texts)]
            col = batch.schema.get_field_index(self.text_col)
            batch = batch.set_column(col, batch.schema.field(col), pa.array(texts, batch.schema.field(col).type))
        yield from emit_split(batch, self.stage, keep, [r for r in reasons if r is not None])


class C4Quality(Stage):
    name = "c4"

    def __init__(self, columns, config: C4Config | None = None, language_column: str | None = None):
        super().__init__(columns)
        self.config = config if config is not None else C4Config()
        self.language_column = language_column

    def expand(self, batches) -> StageResult:
        out = batches | "C4" >> TaggedParDo(_C4Split(self.name, self.columns.text, self.config, self.language_column),
                                            [REJECTED_TAG, CUT_STATS_TAG], main="kept")
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=out[CUT_STATS_TAG])


STAGES = {"gopher_quality": (GopherQuality, GopherQualityConfig),
          "gopher_repetition": (GopherRepetition, GopherRepetitionConfig),
          "c4": (C4Quality, C4Config),
          "fineweb": (FineWebQuality, FineWebConfig)}
