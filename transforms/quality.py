"""Stages ``quality>=LOW`` and ``quality>=HIGH``.

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
from typing import Literal

import apache_beam as beam
import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from curate.classifiers.quality import default_model_dir, load_model
from curate.transforms import render
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, StatKind, register
from curate.transforms.stage import REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split

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
            batch = pa.RecordBatch.from_arrays(
                [*batch.columns, pa.array(scores, pa.float32())], names=[*batch.schema.names, EDU_SCORE]
            )
            # score histogram for the report: 20 bins of 0.05
            bins = np.minimum((np.asarray(scores) * HIST_BINS).astype(int), HIST_BINS - 1)
            for b, n in zip(*np.unique(bins, return_counts=True)):
                yield beam.pvalue.TaggedOutput("hist", (SCORES.key(self.stage, f"{b:02d}"), (int(n), 0)))
        else:
            scores = batch.column(EDU_SCORE).to_numpy(zero_copy_only=False)
        # compare in float32, the stored precision, so a reloaded score gives the same decision
        keep = np.asarray(scores, dtype=np.float32) >= np.float32(self.threshold)
        yield from emit_split(batch, self.stage, keep, f"edu_score<{self.threshold:g}")


class QualityThreshold(Stage):
    """One of the config's two cuts: ``low`` scores (and adds ``edu_score``), ``high`` reads the score."""

    def __init__(self, columns, cfg: "QualityConfig", cut: Literal["low", "high"]):
        threshold = cfg.low if cut == "low" else cfg.high
        self.name = f"quality>={threshold:g}"
        self.slot = f"quality_{cut}"
        super().__init__(columns)
        rescore = cut == "low"
        self.threshold, self.model_dir, self.rescore = threshold, cfg.model_dir, rescore
        self.added_fields = (pa.field(EDU_SCORE, pa.float32()),) if rescore else ()

    def check(self):
        if self.rescore and (not self.model_dir or "://" not in self.model_dir):
            load_model(self.model_dir or default_model_dir())  # raises ModelFormatError with the reason

    def expand(self, batches) -> StageResult:
        out = batches | "Score" >> TaggedParDo(
            ScoreAndSplit(
                self.name,
                self.columns.text,
                self.model_dir,
                self.threshold,
                self.rescore,
            ),
            [REJECTED_TAG, "hist"],
            main="kept",
        )
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=out.hist)


class QualityConfig(StageConfig):
    # Folder with model.json + weights.npz (written by `curate train-quality`),
    # local or any FileSystems URL.  Empty: the shipped default model.
    model_dir: str | None = None
    # The recipe's two cuts; each is a funnel stage (quality>=LOW, quality>=HIGH).
    low: float = Field(0.5, ge=0.0, le=1.0)
    high: float = Field(0.8, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError("@high: must be >= low")
        return self


class ScoreHistogram(StatKind):
    """Documents entering the first cut by ``edu_score``, in 20 bins of 0.05."""

    kind = "score_hist"
    html_order = 20

    def funnel(self, sums, entry, tokens_per_char):
        hist = {group: d for (kind, group), (d, _) in sums.items() if kind == self.kind}
        return {"score_histogram": [hist.get(f"{b:02d}", 0) for b in range(HIST_BINS)]} if hist else {}

    def html(self, entry, funnel, samples):
        if not entry.get("score_histogram"):
            return []
        return [
            "<h2>Educational-quality scores</h2>",
            "<p>Documents entering the quality stage by <code>edu_score</code>; dashed lines: the 0.5 and 0.8 "
            "cuts.</p>",
            render.histogram(entry["score_histogram"]),
        ]


SCORES = ScoreHistogram()


def build_quality(cfg: QualityConfig, ctx: BuildContext) -> list[Stage]:
    return [QualityThreshold(ctx.columns, cfg, "low"), QualityThreshold(ctx.columns, cfg, "high")]


register(
    StageSpec(
        key="quality",
        config=QualityConfig,
        build=build_quality,
        order=50,
        slots=(("quality_low", "quality>=0.5"), ("quality_high", "quality>=0.8")),
        stats=(SCORES,),
    )
)
