"""Stage ``input_check``: documents no later stage can judge are rejected first.

Reasons: ``null_id``, ``null_text``, ``invalid_utf8`` (bytes that are not
UTF-8, e.g. lone surrogates, in a string column), ``empty_text`` (empty or
whitespace only), ``duplicate_id`` (every row whose id occurs more than once:
which of them is the right one cannot be known, and later stages key on ids).
Rejecting them here, with a reason, keeps every later stage total and lets the
funnel's raw count equal the rows read.

Duplicate ids are found by counting ids (ids only, not rows) through a
CombinePerKey; the ids seen more than once reach every worker as a side input,
so its memory is the number of duplicated ids.
"""

from __future__ import annotations

import collections

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curate.classifiers.text import total_chars
from curate.transforms.key_blocks import MIN_PARTITIONS, auto_partitions, equal_key_runs, split_by_partition
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, register
from curate.transforms.stage import CUT, REJECTED_TAG, Stage, StageResult, TaggedParDo, emit_split


def invalid_utf8_rows(texts: pa.Array) -> np.ndarray:
    """Rows whose bytes are not valid UTF-8 (Arrow does not check on read)."""
    try:
        texts.validate(full=True)
        return np.zeros(len(texts), dtype=bool)
    except pa.ArrowInvalid:
        raw = texts.cast(pa.binary()).to_pylist()
        bad = np.zeros(len(texts), dtype=bool)
        for i, b in enumerate(raw):
            if b is not None:
                try:
                    b.decode("utf-8")
                except UnicodeDecodeError:
                    bad[i] = True
        return bad


def blank_rows(texts: pa.Array) -> np.ndarray:
    """Rows that are empty or only whitespace (Arrow's ``utf8_trim_whitespace`` leaves
    nothing).  Only the rows starting with whitespace are trimmed: a text starting
    with any other character is not blank (``utf8_is_space`` and the trim use the
    same code points, checked over all of them); trimming every text copied the
    whole batch."""
    first = pc.utf8_slice_codeunits(texts, 0, 1)
    maybe = pc.fill_null(pc.or_(pc.equal(pc.utf8_length(first), 0), pc.utf8_is_space(first)), False)
    blank = np.zeros(len(texts), dtype=bool)
    rows = pc.indices_nonzero(maybe)
    if len(rows):
        trimmed = pc.utf8_trim_whitespace(texts.take(rows))
        blank[rows.to_numpy()] = pc.fill_null(pc.equal(pc.utf8_length(trimmed), 0), False).to_numpy(
            zero_copy_only=False
        )
    return blank


def check_batch(batch: pa.RecordBatch, id_col: str, text_col: str, duplicate_ids=frozenset()):
    bad_utf8 = invalid_utf8_rows(batch.column(text_col))
    if bad_utf8.any():  # decode lossily (U+FFFD) so no later kernel reads invalid bytes
        raw = batch.column(text_col).cast(pa.binary()).to_pylist()
        fixed = pa.array(
            [
                b.decode("utf-8", "replace")
                if bad and b is not None
                else (b.decode("utf-8") if b is not None else None)
                for b, bad in zip(raw, bad_utf8)
            ],
            pa.string(),
        )
        batch = batch.set_column(batch.schema.get_field_index(text_col), text_col, fixed)
    ids, texts = batch.column(id_col), batch.column(text_col)
    null_id = pc.is_null(ids).to_numpy(zero_copy_only=False)
    null_text = pc.is_null(texts).to_numpy(zero_copy_only=False)
    blank = blank_rows(texts)
    duplicated = (
        np.fromiter((i in duplicate_ids for i in ids.to_pylist()), dtype=bool, count=len(ids))
        if duplicate_ids
        else np.zeros(len(ids), dtype=bool)
    )
    reasons = np.where(
        null_id,
        "null_id",
        np.where(
            null_text,
            "null_text",
            np.where(bad_utf8, "invalid_utf8", np.where(blank, "empty_text", np.where(duplicated, "duplicate_id", ""))),
        ),
    )
    keep = reasons == ""
    return batch, keep, [str(r) for r in reasons[~keep]]


class CheckRows(beam.DoFn):
    def __init__(self, stage: str, id_col: str, text_col: str):
        self.stage, self.id_col, self.text_col = stage, id_col, text_col

    def process(self, batch: pa.RecordBatch, duplicate_ids):
        before = total_chars(batch.column(self.text_col))
        checked, keep, reasons = check_batch(batch, self.id_col, self.text_col, duplicate_ids)
        after = before if checked is batch else total_chars(checked.column(self.text_col))
        batch = checked
        if before != after:  # repaired UTF-8 changes the character count: account for it
            yield beam.pvalue.TaggedOutput("cut_stats", ((self.stage, CUT, ""), (0, before - after)))
        yield from emit_split(batch, self.stage, keep, reasons)


class InputCheck(Stage):
    """Rejects rows no stage can judge; repeated ids are found by the key-block
    shuffle (``key_blocks``: xxh64 of the id, ``partitions`` partitions)."""

    name = "input_check"

    def __init__(self, columns, partitions: int = MIN_PARTITIONS):
        super().__init__(columns)
        self.partitions = partitions

    def expand(self, batches) -> StageResult:
        id_col, text_col = self.columns.id, self.columns.text

        partitions = self.partitions

        def id_blocks(batch: pa.RecordBatch):
            ids = batch.column(id_col)
            ids = ids.filter(pc.is_valid(ids))
            if len(ids):
                keys = np.array(
                    [xxhash.xxh64_intdigest(i.encode("utf-8")) for i in ids.to_pylist()], dtype=np.uint64
                ).reshape(-1, 1)
                for p, block in split_by_partition(keys, ids, partitions):
                    yield p, (None, block)

        def repeated(element):
            _, blocks = element
            for run in equal_key_runs(blocks):  # equal id hashes; a hash collision is not a repeat
                counts = collections.Counter(doc_id for doc_id, _, _ in run)
                yield from (doc_id for doc_id, n in counts.items() if n > 1)

        duplicates = (
            batches
            | "IdBlocks" >> beam.FlatMap(id_blocks)
            | "GroupIds" >> beam.GroupByKey()
            | "RepeatedIds" >> beam.FlatMap(repeated)
            | "AsSet" >> beam.combiners.ToList()
            | "Frozen" >> beam.Map(frozenset)
        )
        out = batches | "Check" >> TaggedParDo(
            CheckRows(self.name, id_col, text_col),
            [REJECTED_TAG, "cut_stats"],
            main="kept",
            duplicate_ids=beam.pvalue.AsSingleton(duplicates),
        )
        return StageResult(out.kept, out[REJECTED_TAG], extra_stats=out.cut_stats)


class InputCheckConfig(StageConfig):
    """Always runs: rows no stage can judge (null, empty, invalid UTF-8, repeated ids) leave here."""


def build_input_check(cfg: InputCheckConfig, ctx: BuildContext) -> list[Stage]:
    return [InputCheck(ctx.columns, auto_partitions(ctx.input_rows, 1))]


register(
    StageSpec(
        key="input_check",
        config=InputCheckConfig,
        build=build_input_check,
        order=0,
        always=True,
    )
)
