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

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.classifiers.fasttext_lid import UnsupportedModel, model_labels
from curate.classifiers.langid import (LanguageIdentifier, ModelFileError, check_fasttext_file, default_model_path,
                                       suggest_codes)
from curate.transforms.stage import (REJECTED_TAG, ROUTED_TAG, Stage, StageResult, TaggedParDo, reject_batch,
                                     with_columns)

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
        undetermined, "no_letters",
        np.where(~confident, "low_confidence:" + labels_np.astype(str), ROUTE_PREFIX + labels_np.astype(str)),
    )
    return keep, [str(r) for r in reasons[~keep]]


class IdentifyLanguage(beam.DoFn):
    """RecordBatch -> kept batch (main), rejects (``rejected``), routed (``routed``)."""

    def __init__(self, stage: str, text_col: str, model_path, targets, min_score, max_chars, route: bool,
                 lang_col: str, score_col: str):
        self.stage, self.text_col, self.model_path = stage, text_col, model_path
        self.lang_col, self.score_col = lang_col, score_col
        self.targets, self.min_score, self.max_chars, self.route = frozenset(targets), min_score, max_chars, route

    def setup(self):
        self.model = LanguageIdentifier(local_model_path(self.model_path), max_chars=self.max_chars)

    def process(self, batch: pa.RecordBatch):
        labels, scores = self.model.predict(batch.column(self.text_col))
        keep, reasons = decide_languages(labels, scores, self.targets, self.min_score)
        annotated = with_columns(batch, {self.lang_col: pa.array(labels, pa.string()),
                                         self.score_col: pa.array(scores, pa.float32())})
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

    def __init__(self, columns, languages, min_score: float = 0.65, model_path: str | None = None,
                 max_chars: int = 5000, non_target: str = "reject", lang_column: str = "lang",
                 score_column: str = "lang_score"):
        super().__init__(columns)
        self.lang_column, self.score_column = lang_column, score_column
        self.added_fields = (pa.field(lang_column, pa.string()), pa.field(score_column, pa.float32()))
        self.group_column = lang_column  # the funnel counts kept documents per language
        self.added_fields_key = "stages.language.output_column/score_column"
        self.languages, self.min_score, self.model_path = list(languages), min_score, model_path
        self.max_chars, self.route = max_chars, non_target == "route"

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
                    f"{os.path.basename(path)}; {suggest_codes(code, labels)}")

    def expand(self, batches) -> StageResult:
        out = batches | "IdentifyLanguage" >> TaggedParDo(IdentifyLanguage(
            self.name, self.columns.text, self.model_path, self.languages, self.min_score, self.max_chars, self.route,
            self.lang_column, self.score_column,
        ), [REJECTED_TAG, ROUTED_TAG], main="kept")
        return StageResult(out.kept, out[REJECTED_TAG], out[ROUTED_TAG] if self.route else None)
