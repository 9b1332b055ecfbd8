"""Stages ``quality>=LOW`` and ``quality>=HIGH``, and the optional ``textbook`` heuristics.

``QualityThreshold(low)`` scores every batch once with the educational-quality
model (loaded in ``DoFn.setup``), adds ``edu_score`` and keeps documents
scoring >= ``low``; ``QualityThreshold(high, rescore=False)`` then only reads
``edu_score``.  Two stages, so the funnel shows both cuts, as the Phi recipe.
Rejects carry ``edu_score``; reason ``edu_score<THRESHOLD``.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import apache_beam as beam
import numpy as np
import pyarrow as pa

from curate.classifiers.quality import default_model_dir, load_model
from curate.classifiers.textbook import textbook_reasons
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split, split_by_mask

EDU_SCORE = "edu_score"
HIST_BINS = 20
MODEL_FILES = ("model.json", "weights.npz")


def local_model_dir(model_dir: str | None) -> str:
    """A FileSystems URL (gs://...) is copied to a local temp folder once per worker."""
    if not model_dir:
        return default_model_dir()
    if "://" not in model_dir:
        return model_dir
    from apache_beam.io.filesystems import FileSystems

    local = tempfile.mkdtemp(prefix="curate-quality-")
    for name in MODEL_FILES:
        with FileSystems.open(FileSystems.join(model_dir, name)) as src, open(os.path.join(local, name), "wb") as out:
            shutil.copyfileobj(src, out)
    return local


class ScoreAndSplit(beam.DoFn):
    def __init__(self, stage: str, text_col: str, model_dir: str | None, threshold: float, rescore: bool):
        self.stage, self.text_col, self.model_dir = stage, text_col, model_dir
        self.threshold, self.rescore = threshold, rescore

    def setup(self):
        self.model = load_model(local_model_dir(self.model_dir)) if self.rescore else None

    def process(self, batch: pa.RecordBatch):
        if self.rescore:
            scores = self.model.score(batch.column(self.text_col))
            batch = pa.RecordBatch.from_arrays([*batch.columns, pa.array(scores, pa.float32())],
                                               names=[*batch.schema.names, EDU_SCORE])
            # score histogram for the report: 20 bins of 0.05
            bins = np.minimum((np.asarray(scores) * HIST_BINS).astype(int), HIST_BINS - 1)
            for b, n in zip(*np.unique(bins, return_counts=True)):
                yield beam.pvalue.TaggedOutput("hist", ((self.stage, "score_hist", f"{b:02d}"), (int(n), 0)))
        else:
            scores = batch.column(EDU_SCORE).to_numpy(zero_copy_only=False)
        # compare in float32, the stored precision, so a reloaded score gives the same decision
        keep = np.asarray(scores, dtype=np.float32) >= np.float32(self.threshold)
        yield from emit_split(batch, self.stage, keep, f"edu_score<{self.threshold:g}")


class QualityThreshold(Stage):
    def __init__(self, columns, threshold: float, slot: str, model_dir: str | None = None, rescore: bool = True):
        self.name = f"quality>={threshold:g}"
        self.slot = slot
        super().__init__(columns)
        self.threshold, self.model_dir, self.rescore = threshold, model_dir, rescore
        self.added_fields = (pa.field(EDU_SCORE, pa.float32()),) if rescore else ()
        self.added_fields_key = "(rename the input column edu_score)"

    def check(self):
        if self.rescore and (not self.model_dir or "://" not in self.model_dir):
            load_model(self.model_dir or default_model_dir())  # raises ModelFormatError with the reason

    def expand(self, batches) -> StageResult:
        out = batches | "Score" >> TaggedParDo(ScoreAndSplit(
            self.name, self.columns.text, self.model_dir, self.threshold, self.rescore,
        ), [REJECTED_TAG, "hist"], main="kept")
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=out.hist)


class TextbookHeuristics(Stage):
    name = "textbook"

    def __init__(self, columns, min_words: int = 100, min_markers: int = 2, check_code: bool = True):
        super().__init__(columns)
        self.min_words, self.min_markers, self.check_code = min_words, min_markers, check_code

    def expand(self, batches) -> StageResult:
        text_col, args = self.columns.text, (self.min_words, self.min_markers, self.check_code)

        def decide(batch):
            reasons = np.asarray(textbook_reasons(batch.column(text_col), *args), dtype=object)
            keep = reasons == ""
            return keep, [str(r) for r in reasons[~keep]], {}, {}

        return split_by_mask(batches, self.name, decide)
