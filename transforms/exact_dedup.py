"""Stage ``exact_dedup``: one document per normalized-text hash.

Normalization (NFKC, lower-case, whitespace collapsed) and the 128-bit hash
live in ``classifiers.text``.  Rows are keyed by hash, grouped, and the row
with the smallest id is kept; the others are rejected with reason
``exact_duplicate`` and ``duplicate_of`` = the kept id.
"""
from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from curate.classifiers.text import content_hashes, normalize_for_exact_dedup
from curate.transforms.stage import REJECTED_TAG, Rebatch, Stage, StageResult, TaggedParDo

DUPLICATE_OF = pa.field("duplicate_of", pa.string())


def representative_key(row: dict, id_col: str, text_col: str):
    """Smallest id wins; equal ids (bad input) fall back to the text."""
    return (row[id_col], row[text_col])


class SplitGroup(beam.DoFn):
    """(key, rows) -> the representative on main, the rest tagged ``rejected``.

    Two passes over the grouped iterable (re-iterable on every runner) so a
    group of a million copies of one cookie banner is never held in memory.
    """

    def __init__(self, stage: str, reason: str, id_col: str, text_col: str):
        self.stage, self.reason, self.id_col, self.text_col = stage, reason, id_col, text_col

    def process(self, element):
        _, rows = element
        best, best_key = None, None
        for row in rows:
            k = representative_key(row, self.id_col, self.text_col)
            if best is None or k < best_key:
                best, best_key = row, k
        yield best
        skipped_best = False
        for row in rows:
            if not skipped_best and (row is best or row == best):
                skipped_best = True
                continue
            rejected = dict(row)
            rejected.update(stage=self.stage, reason=self.reason, duplicate_of=best[self.id_col])
            yield beam.pvalue.TaggedOutput(REJECTED_TAG, rejected)


class ExactDedup(Stage):
    name = "exact_dedup"
    reject_fields = (DUPLICATE_OF,)

    def __init__(self, columns, schema: pa.Schema, batch_size: int = 2048):
        super().__init__(columns)
        self.schema, self.batch_size = schema, batch_size

    def expand(self, batches) -> StageResult:
        text_col = self.columns.text

        def key_rows(batch: pa.RecordBatch):
            hashes = content_hashes(normalize_for_exact_dedup(batch.column(text_col)))
            return zip(hashes, batch.to_pylist())

        split = (
            batches
            | "KeyByHash" >> beam.FlatMap(key_rows)
            | "GroupByHash" >> beam.GroupByKey()
            | "KeepSmallestId" >> TaggedParDo(
                SplitGroup(self.name, "exact_duplicate", self.columns.id, text_col), [REJECTED_TAG], main="kept")
        )
        return StageResult(
            split.kept | "RebatchKept" >> Rebatch(self.output_schema(self.schema), self.batch_size),
            split[REJECTED_TAG] | "RebatchRejected" >> Rebatch(self.reject_schema(self.schema), self.batch_size),
        )
