"""The contract every stage follows, and the accounting around it.

Element shapes used throughout:
  * ``pa.RecordBatch``: a batch of documents (the usual element between stages);
  * ``dict``: one document row, only around shuffles (dedup, output sharding);
  * ``StatKey -> (docs, chars)``: funnel accounting, summed per key.

A stage is a composite ``PTransform`` taking batches and returning a
``StageResult(kept, rejected)``.  Rejected batches carry the input columns plus
``stage``, ``reason`` and any stage-specific columns, so nothing is lost: every
input document ends in exactly one of the two.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.classifiers.text import char_lengths, total_chars
from curate.transforms import progress, spill

_IPC_STREAM_SLACK = 64  # the stream's continuation markers, padding and end-of-stream marker


def _write_stream(sink, batch: pa.RecordBatch) -> None:
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)


class RecordBatchCoder(beam.coders.Coder):
    """Arrow IPC stream bytes for a ``pa.RecordBatch``, decoded without copying.

    Beam's default for an untyped element pickles it through its stream: 3.9 ms
    a round trip for a 2,048-document batch (4.4 MB), against 0.24 ms here.
    Used where a transform declares ``pa.RecordBatch`` outputs."""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        """Written into a buffer of the stream's size, allocated once: a growing
        ``BufferOutputStream`` reallocates and copies as it doubles (11 vs 4 ms per
        29 MB of batches).  A stream that does not fit (dictionary columns add
        messages) is written the growing way."""
        size = pa.ipc.get_record_batch_size(batch) + batch.schema.serialize().size + _IPC_STREAM_SLACK
        buffer = pa.allocate_buffer(size)
        sink = pa.FixedSizeBufferWriter(buffer)
        try:
            _write_stream(sink, batch)
        except (pa.ArrowInvalid, OSError, EOFError):
            sink = pa.BufferOutputStream()
            _write_stream(sink, batch)
            stream = sink.getvalue()
        else:
            stream = buffer[: sink.tell()]
        return spill.maybe_spill(memoryview(stream)) or stream.to_pybytes()

    def decode(self, encoded: bytes) -> pa.RecordBatch:
        data = spill.read_reference(encoded) if spill.is_reference(encoded) else pa.py_buffer(encoded)
        return pa.ipc.open_stream(data).read_next_batch()

    def estimate_size(self, batch: pa.RecordBatch) -> int:
        """The batch's buffer bytes: Beam samples element sizes for its counters, and
        the default estimate encodes the batch again (2.7 GB of extra encoding in a
        100k-document run)."""
        return batch.nbytes

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return pa.RecordBatch


# Beam's public coder registry: a batch crosses process boundaries as Arrow IPC, not a pickle.
beam.coders.registry.register_coder(pa.RecordBatch, RecordBatchCoder)

STAGE_FIELD = pa.field("stage", pa.string())
REASON_FIELD = pa.field("reason", pa.string())

# Stat kinds every stage has: documents entering a stage, leaving it kept, leaving it rejected;
# characters a stage cut out of documents it kept (``CUT``: (documents edited, characters removed));
# copies of kept documents (``REPEATS``, for a stage with a ``repeat_column``); kept documents by
# the stage's ``group_column`` (``KEPT_BY_GROUP``).  Stage-specific stats are ``registry.StatKind``s.
IN, KEPT, REJECTED = "in", "kept", "rejected"
CUT, REPEATS, KEPT_BY_GROUP = "cut", "repeats", "kept_by_lang"


@dataclasses.dataclass(frozen=True)
class Columns:
    """Names of the two required columns; every other column passes through."""

    id: str = "id"
    text: str = "text"


class StageResult(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection
    # Optional: documents that leave the main set but are written to a side
    # output instead of rejects (e.g. other languages, by language); they carry
    # ``stage`` and ``reason`` like rejects and count as rejected in the funnel.
    routed: beam.PCollection | None = None
    # Optional: stage-specific funnel stats, ((stage, kind, group), (docs, chars)).
    extra_stats: beam.PCollection | None = None


class Stage(beam.PTransform):
    """Base class: a named stage with a known output and reject schema.

    Subclasses set ``name`` (the funnel label), may add columns to kept
    documents (``added_fields``) and to rejects (``reject_fields``), and
    implement ``expand(batches) -> StageResult``.
    """

    name: str = "stage"
    # Funnel slot this stage fills (see pipelines/funnel.py); defaults to the name.
    slot: str = ""
    added_fields: tuple[pa.Field, ...] = ()
    reject_fields: tuple[pa.Field, ...] = ()
    # Config key naming the added columns, quoted when they clash with input columns.
    added_fields_key: str = ""
    # A column of kept documents the funnel breaks counts down by (e.g. language).
    group_column: str | None = None
    # A column numbering the copies of a kept document (0 = the first): the funnel
    # counts a document once as kept and its copies as repeats (mixing's epochs).
    repeat_column: str | None = None
    # A PCollection of pieces cut out of kept documents, written to cuts/<stage>/,
    # set by ``expand`` (decontamination's cut policy); with ``cut_schema``.
    cuts = None
    cut_schema: pa.Schema | None = None
    # Documents leaving the stage but written to by_language/<group>/ instead of rejects.
    route: bool = False
    # Kept documents are written to kept/<value>/ by this column (the last stage that sets it).
    kept_partition_column: str | None = None

    def __init__(self, columns: Columns):
        super().__init__(label=self.name)
        self.columns = columns
        self.slot = self.slot or self.name

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        return append_fields(schema, self.added_fields, self.added_fields_key, self.name)

    def check(self) -> None:
        """Driver-side checks (model files, indexes) run before the pipeline starts."""

    @property
    def folder(self) -> str:
        """The stage's name as a folder name a shell needs no quotes for (``quality>=0.5`` ->
        ``quality_ge_0.5``); the funnel and the report keep the display name."""
        return shell_safe(self.name)

    def reject_schema(self, schema: pa.Schema) -> pa.Schema:
        return append_fields(
            self.output_schema(schema), (STAGE_FIELD, REASON_FIELD, *self.reject_fields), stage=self.name
        )


_OPERATORS = ((">=", "_ge_"), ("<=", "_le_"), (">", "_gt_"), ("<", "_lt_"), ("=", "_eq_"))


def shell_safe(name: str) -> str:
    for op, word in _OPERATORS:
        name = name.replace(op, word)
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class ColumnClashError(ValueError):
    pass


def append_fields(schema: pa.Schema, fields, key: str = "", stage: str = "") -> pa.Schema:
    for field in fields:
        if schema.get_field_index(field.name) >= 0:
            hint = f"set {key} to another name or " if key else ""
            adds = f"the {stage} stage adds" if stage else "the pipeline adds"
            raise ColumnClashError(
                f"input column {field.name!r} clashes with a column {adds}; {hint}rename it in the input"
            )
        schema = schema.append(field)
    return schema


def with_columns(batch: pa.RecordBatch, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """Return ``batch`` with extra columns appended (same row count)."""
    arrays = list(batch.columns) + list(columns.values())
    names = list(batch.schema.names) + list(columns.keys())
    return pa.RecordBatch.from_arrays(arrays, names=names)


def reject_batch(
    batch: pa.RecordBatch, stage: str, reasons, extra: dict[str, pa.Array] | None = None
) -> pa.RecordBatch:
    """Mark every row of ``batch`` as rejected by ``stage`` with per-row ``reasons``."""
    n = batch.num_rows
    reason_array = pa.array([reasons] * n, pa.string()) if isinstance(reasons, str) else pa.array(reasons, pa.string())
    cols = {"stage": pa.array([stage] * n, pa.string()), "reason": reason_array}
    cols.update(extra or {})
    return with_columns(batch, cols)


def rows_to_batch(rows: list[dict], schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=schema)


class Rebatch(beam.PTransform):
    """PCollection[dict] -> PCollection[pa.RecordBatch] of at most ``batch_size`` rows."""

    def __init__(self, schema: pa.Schema, batch_size: int, label: str | None = None):
        super().__init__(label)
        self.schema, self.batch_size = schema, batch_size

    def expand(self, rows):
        schema = self.schema
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=min(64, self.batch_size), max_batch_size=self.batch_size)
            | "ToArrow" >> beam.Map(lambda rs: rows_to_batch(rs, schema)).with_output_types(pa.RecordBatch)
        )


class CountDocs(beam.PTransform):
    """Sum documents and characters of a batch PCollection under stat keys.

    ``kind`` is IN, KEPT or REJECTED.  Rows are grouped by ``group_column``
    (REJECTED groups by ``reason``; e.g. KEPT can group by ``lang``).
    ``also``: more (stage, kind) keys for the same PCollection, counted once
    (a stage's kept output is the next stage's input).
    Output: ``((stage, kind, group), (docs, chars))`` per batch, summed later.
    """

    def __init__(
        self,
        stage: str,
        kind: str,
        text_column: str,
        group_column: str | None = None,
        also=(),
        progress_dir: str | None = None,
    ):
        also = list(also)
        super().__init__(
            label=f"Count[{stage}/{kind}{'/' + group_column if group_column else ''}"
            + "".join(f"+{s}/{k}" for s, k in also)
            + "]"
        )
        self.stage, self.kind, self.text_column = stage, kind, text_column
        self.group_column = "reason" if kind == REJECTED and group_column is None else group_column
        if also and self.group_column is not None:
            raise ValueError("CountDocs: 'also' keys are for ungrouped counts")
        self.keys = [(stage, kind)] + also
        self.progress_dir = progress_dir  # live console counts (transforms/progress.py), local runs only

    def expand(self, batches):
        stage, kind, text_column, group_column, keys = (
            self.stage,
            self.kind,
            self.text_column,
            self.group_column,
            self.keys,
        )
        progress_dir = self.progress_dir

        def count(batch: pa.RecordBatch):
            if batch.num_rows == 0:
                return
            if group_column is None:
                counted = (batch.num_rows, total_chars(batch.column(text_column)))
                progress.add(progress_dir, keys, batch.num_rows)
                for key_stage, key_kind in keys:
                    yield (key_stage, key_kind, ""), counted
                return
            chars = char_lengths(batch.column(text_column))
            groups = batch.column(group_column).to_numpy(zero_copy_only=False).astype(str)
            chars_np = chars.to_numpy(zero_copy_only=False)
            for group in np.unique(groups):
                mask = groups == group
                yield (stage, kind, str(group)), (int(mask.sum()), int(chars_np[mask].sum()))

        return batches | "Count" >> beam.FlatMap(count)


SAMPLES_PER_REASON = 5
SNIPPET_CHARS = 400
SAMPLE_FIELDS = (
    "duplicate_of",
    "lang",
    "lang_score",
    "edu_score",
    "contamination_benchmark",
    "contamination_item",
    "matched_ngrams",
    "mixture_source",
)


def sample_order(row: dict) -> tuple:
    """Samples sort by id (null first), then by everything they show: a total order."""
    return (
        row["id"] is not None,
        row["id"] if row["id"] is not None else 0,
        json.dumps(row, sort_keys=True, default=str),
    )


def reject_samples(batch: pa.RecordBatch, id_col: str, text_col: str, per_reason: int = SAMPLES_PER_REASON):
    """Rejected batch -> ((stage, reason), sample) for the ``per_reason`` smallest
    (id, text) of each reason in it; a sample is the id, the text's length, its
    first ``SNIPPET_CHARS`` characters and the stage's annotations."""
    if batch.num_rows == 0:
        return
    ids, texts = batch.column(id_col), batch.column(text_col)
    keys = pa.table(
        {
            "reason": batch.column("reason"),
            "has_id": pc.is_valid(ids),
            "id": ids,
            "has_text": pc.is_valid(texts),
            "text": texts,
        }
    )  # nulls first, as in sample_order
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
    taken: dict = {}
    rows = []
    for row, reason in zip(order.to_pylist(), batch.column("reason").take(order).to_pylist()):
        if taken.get(reason, 0) < per_reason:
            taken[reason] = taken.get(reason, 0) + 1
            rows.append(row)
    fields = [f for f in SAMPLE_FIELDS if f in batch.schema.names]
    picked = batch.select([id_col, text_col, "stage", "reason", *fields]).take(pa.array(rows, pa.int64()))
    for r in picked.to_pylist():
        text = r[text_col] or ""
        yield (
            (r["stage"], r["reason"]),
            {
                "id": r[id_col],
                "chars": len(text),
                "text": text[:SNIPPET_CHARS] + ("\u2026" if len(text) > SNIPPET_CHARS else ""),
                **{k: r[k] for k in fields if r[k] is not None},
            },
        )


def nest_samples(keyed: list) -> dict:
    """[((stage, reason), samples), ...] -> {stage: {reason: samples}}."""
    out: dict = {}
    for (stage, reason), samples in sorted(keyed, key=lambda kv: (kv[0][0] or "", kv[0][1] or "")):
        out.setdefault(stage, {})[reason] = sorted(samples, key=sample_order)
    return out


class SampleRejects(beam.PTransform):
    """The rejected batches of every stage (a tuple of PCollections) -> one
    ``{stage: {reason: [sample, ...]}}`` with the ``per_reason`` smallest ids of
    each reason (what ``report.html`` shows).  Chosen where the rejects pass, per
    batch and then per key: no worker or driver reads the rejects back (at 1B
    documents, ~1B rows)."""

    def __init__(self, id_col: str, text_col: str, per_reason: int = SAMPLES_PER_REASON):
        super().__init__()
        self.id_col, self.text_col, self.per_reason = id_col, text_col, per_reason

    def expand(self, rejected):
        # candidates are taken from each stage's rejects before they meet: the
        # FnApiRunner materializes every input of a Flatten (~200 MB of rejected
        # batches at 100k documents), and a handful of samples per batch is small
        candidates = [
            pcoll | f"Candidates[{i}]" >> beam.FlatMap(reject_samples, self.id_col, self.text_col, self.per_reason)
            for i, pcoll in enumerate(rejected)
        ]
        return (
            candidates
            | "Flatten" >> beam.Flatten()
            | "Smallest" >> beam.combiners.Top.SmallestPerKey(self.per_reason, key=sample_order)
            | "All" >> beam.combiners.ToList()
            | "Nest" >> beam.Map(nest_samples)
        )


def sum_pairs(pairs):
    docs = chars = 0
    for d, c in pairs:
        docs += d
        chars += c
    return docs, chars


REJECTED_TAG = "rejected"
ROUTED_TAG = "routed"  # documents a stage sends to a side output (see StageResult.routed)
BATCH_TAGS = ("kept", REJECTED_TAG, ROUTED_TAG)  # TaggedParDo outputs that are batches (RecordBatchCoder)


def emit_split(batch: pa.RecordBatch, stage: str, keep, reasons, kept_extra=None, reject_extra=None):
    """Yield the kept part of ``batch`` (main output) and the rest as tagged rejects.

    ``keep``: bool mask; ``reasons``: one string or one per dropped row;
    ``kept_extra`` / ``reject_extra``: full-length columns added to each side
    (``kept_extra`` goes to both, as rejects keep the stage's annotations).
    """
    keep = pa.array(keep, pa.bool_())
    full = with_columns(batch, kept_extra or {})
    if pc.any(keep).as_py():
        yield full.filter(keep)
    drop = pc.invert(keep)
    if pc.any(drop).as_py():
        extra = {k: v.filter(drop) for k, v in (reject_extra or {}).items()}
        yield beam.pvalue.TaggedOutput(REJECTED_TAG, reject_batch(full.filter(drop), stage, reasons, extra))


class SplitByMask(beam.DoFn):
    """Generic filter body: ``decide(batch) -> (keep_mask, reasons, kept_extra, reject_extra)``.

    Emits kept batches on the main output and rejects on ``"rejected"``
    (see ``emit_split`` for the meaning of the four values).
    """

    def __init__(self, stage_name: str, decide):
        self.stage_name = stage_name
        self.decide = decide

    def process(self, batch: pa.RecordBatch):
        yield from emit_split(batch, self.stage_name, *self.decide(batch))


class _Outputs(dict):
    """Outputs of ``TaggedParDo`` by tag; ``out.kept`` reads ``out["kept"]``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


class _TagAsValue(beam.DoFn):
    """Runs ``inner`` and turns each output into ``(tag, value)`` (main output: tag None)."""

    def __init__(self, inner: beam.DoFn):
        self.inner = inner

    def setup(self):
        self.inner.setup()

    def teardown(self):
        self.inner.teardown()

    def process(self, element, *args, **kwargs):
        for out in self.inner.process(element, *args, **kwargs) or ():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield out.tag, out.value
            else:
                yield None, out


class TaggedParDo(beam.PTransform):
    """``ParDo(dofn).with_outputs(*tags, main=main)``, built from plain ParDos.

    Beam's DaskRunner (2.77) merges all outputs of a multi-output ParDo into one
    bag, so stages never use ``with_outputs``: the DoFn's outputs are tagged as
    values and split by filters, which every runner executes alike (one extra
    pass per tag over a PCollection of batches: negligible).
    """

    def __init__(self, dofn: beam.DoFn, tags, main: str, **side_inputs):
        super().__init__()
        self.dofn, self.tags, self.main, self.dofn_kwargs = dofn, list(tags), main, side_inputs

    def expand(self, pcoll):
        tagged = pcoll | "Run" >> beam.ParDo(_TagAsValue(self.dofn), **self.dofn_kwargs)
        out = _Outputs()
        for tag in [None, *self.tags]:
            name = self.main if tag is None else tag
            value = beam.Map(lambda kv: kv[1])
            if name in BATCH_TAGS:
                value = value.with_output_types(pa.RecordBatch)  # encoded by RecordBatchCoder
            out[name] = (
                tagged | f"Only[{name}]" >> beam.Filter(lambda kv, t=tag: kv[0] == t) | f"Value[{name}]" >> value
            )
        return out


def split_by_mask(batches, stage_name: str, decide) -> StageResult:
    out = batches | "Split" >> TaggedParDo(SplitByMask(stage_name, decide), [REJECTED_TAG], main="kept")
    return StageResult(out.kept, out[REJECTED_TAG])
