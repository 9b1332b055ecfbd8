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

import dataclasses
import typing

import apache_beam as beam
import numpy as np
import pyarrow as pa
from pydantic import BeforeValidator, create_model

from curate.classifiers.heuristics import (
    C4Config,
    FineWebConfig,
    GopherQualityConfig,
    GopherRepetitionConfig,
    c4_filter,
    carry_words,
    fineweb_reasons,
    gopher_quality_reasons,
    gopher_repetition_reasons,
)
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, register
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split

CUT_STATS_TAG = "cut_stats"


def _languages(batch: pa.RecordBatch, language_column: str | None):
    if language_column and batch.schema.get_field_index(language_column) >= 0:
        return batch.column(language_column).to_pylist()
    return None


class _RuleSplit(beam.DoFn):
    """Decides a batch with one family's rules.  Before the kept rows go downstream, the words
    the family split them into are handed on to them (``carry_words``): the next family of
    the fused chain receives that very batch and does not tokenize it again."""

    def __init__(self, stage: str, text_col: str, fn, config, language_column: str | None):
        self.stage, self.text_col, self.fn, self.config = stage, text_col, fn, config
        self.language_column = language_column

    def process(self, batch: pa.RecordBatch):
        texts = batch.column(self.text_col)
        reasons = self.fn(texts, self.config, _languages(batch, self.language_column))
        keep = np.fromiter((r is None for r in reasons), np.bool_, len(reasons))
        for out in emit_split(batch, self.stage, keep, [r for r in reasons if r is not None]):
            if not isinstance(out, beam.pvalue.TaggedOutput):
                carry_words(texts, out.column(self.text_col), keep)
            yield out


class _RuleStage(Stage):
    """A family whose rules only keep or drop documents: ``reasons_fn(texts, config, languages)``."""

    reasons_fn = None
    config_class = None

    def __init__(self, columns, config=None, language_column: str | None = None):
        super().__init__(columns)
        self.config = config if config is not None else self.config_class()
        self.language_column = language_column

    def expand(self, batches) -> StageResult:
        split = _RuleSplit(self.name, self.columns.text, type(self).reasons_fn, self.config, self.language_column)
        out = batches | "Split" >> TaggedParDo(split, [REJECTED_TAG], main="kept")
        return StageResult(out.kept, out[REJECTED_TAG])


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
        out = batches | "C4" >> TaggedParDo(
            _C4Split(self.name, self.columns.text, self.config, self.language_column),
            [REJECTED_TAG, CUT_STATS_TAG],
            main="kept",
        )
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=out[CUT_STATS_TAG])


STAGES = {
    "gopher_quality": (GopherQuality, GopherQualityConfig),
    "gopher_repetition": (GopherRepetition, GopherRepetitionConfig),
    "c4": (C4Quality, C4Config),
    "fineweb": (FineWebQuality, FineWebConfig),
}


# -- the four families as registry stages ---------------------------------------------------------
# Their thresholds live in classifiers/heuristics.py's dataclasses (defaults and sources beside
# each field); each stage's config is that dataclass's fields, validated as every stage config is,
# plus ``enabled`` and the column holding each document's language.


def _tuples(value):
    """YAML has lists where the dataclasses hold tuples (stop words, (n, fraction) pairs)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _stage_config(name: str, rules, doc: str) -> type[StageConfig]:
    hints = typing.get_type_hints(rules)
    fields = {}
    for field in dataclasses.fields(rules):
        tp = hints[field.name]
        if typing.get_origin(tp) is tuple:
            tp = typing.Annotated[tp, BeforeValidator(_tuples)]
        fields[field.name] = (tp, field.default)
    model = create_model(
        name,
        __base__=StageConfig,
        __doc__=doc,
        __module__=__name__,
        enabled=(bool, False),
        language_column=(typing.Optional[str], "lang"),
        **fields,
    )
    model.rules = lambda self: rules(**{f.name: getattr(self, f.name) for f in dataclasses.fields(rules)})
    return model


GopherQualityStageConfig = _stage_config(
    "GopherQualityStageConfig",
    GopherQualityConfig,
    "Gopher quality rules (Rae et al. 2021, appendix A.1.1), as datatrove's GopherQualityFilter; "
    "language_column: the column with each document's language (the language stage's), else English.",
)
GopherRepetitionStageConfig = _stage_config(
    "GopherRepetitionStageConfig",
    GopherRepetitionConfig,
    "Gopher repetition rules (Rae et al. 2021, table A1), as datatrove's GopherRepetitionFilter.",
)
C4StageConfig = _stage_config(
    "C4StageConfig",
    C4Config,
    "C4's rules (Raffel et al. 2020), as datatrove's C4QualityFilter: line rules edit the text of kept "
    "documents, page rules drop documents.",
)
FineWebStageConfig = _stage_config(
    "FineWebStageConfig",
    FineWebConfig,
    "FineWeb's own rules (Penedo et al. 2024), as datatrove's FineWebQualityFilter.",
)


def _register(key: str, stage_class, config_class, order: float) -> None:
    def build(cfg, ctx: BuildContext) -> list[Stage]:
        return [stage_class(ctx.columns, cfg.rules(), cfg.language_column)]

    register(StageSpec(key=key, config=config_class, build=build, order=order))


# Off by default; in the Phi order they run after language ID (they need each document's
# language) and before the quality model; configs/fineweb.yaml puts them in FineWeb's order.
_register("gopher_repetition", GopherRepetition, GopherRepetitionStageConfig, 41)
_register("gopher_quality", GopherQuality, GopherQualityStageConfig, 42)
_register("c4", C4Quality, C4StageConfig, 43)
_register("fineweb", FineWebQuality, FineWebStageConfig, 44)
