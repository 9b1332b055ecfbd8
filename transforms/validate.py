"""Stage ``input_check``: documents no later stage can judge are rejected first.

Reasons: ``null_id``, ``null_text``, ``empty_text`` (empty or whitespace only).
Rejecting them here, with a reason, keeps every later stage total and lets the
funnel's raw count equal the rows read.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.transforms.stage import Stage, StageResult, split_by_mask


def check_batch(batch: pa.RecordBatch, id_col: str, text_col: str):
    ids, texts = batch.column(id_col), batch.column(text_col)
    null_id = pc.is_null(ids).to_numpy(zero_copy_only=False)
    null_text = pc.is_null(texts).to_numpy(zero_copy_only=False)
    blank = pc.fill_null(
        pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(texts)), 0), False
    ).to_numpy(zero_copy_only=False)
    reasons = np.where(null_id, "null_id", np.where(null_text, "null_text", np.where(blank, "empty_text", "")))
    keep = reasons == ""
    return keep, [str(r) for r in reasons[~keep]], {}, {}


class InputCheck(Stage):
    name = "input_check"

    def expand(self, batches) -> StageResult:
        id_col, text_col = self.columns.id, self.columns.text
        return split_by_mask(batches, self.name, lambda b: check_batch(b, id_col, text_col))
