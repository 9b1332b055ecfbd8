"""Parquet shards in and out through Beam's FileSystems.

Reading yields Arrow record batches (no per-row dicts).  Writing assigns each
row to one of ``num_shards`` shards by a hash of its id and sorts each shard by
id, so the written bytes do not depend on how the runner split the work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curate.transforms import spill
from curate.transforms.stage import Columns


def write_json(path: str, payload) -> None:
    """Write a small JSON report file through FileSystems (sorted keys: deterministic)."""
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(json.dumps(payload, sort_keys=True).encode("utf-8"))


class BeamFiles:
    """``classifiers.benchmark_sets.LocalFiles`` through Beam's FileSystems: benchmark
    files on gs://, s3:// or any scheme the runner has, for the stages that load them
    (the classifiers layer reads local paths only and imports no Beam)."""

    def read(self, path: str) -> bytes:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read()

    def match(self, pattern: str) -> list[str]:
        return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


BEAM_FILES = BeamFiles()


class InputError(Exception):
    """A whole-input problem (file, column, type): stop before writing output."""


def _hidden(relative: str) -> bool:
    """Files Spark, Hive and Hadoop write beside the data: ``_SUCCESS``, ``_metadata``,
    ``.part-0.crc``, ``_temporary/``, hidden folders."""
    return any(part.startswith(("_", ".")) for part in relative.replace("\\", "/").split("/") if part)


def _folder_shards(folder: str) -> list[str]:
    """Every ``*.parquet`` under ``folder``, recursively, skipping hidden and bookkeeping files."""
    if "://" not in folder:
        found = []
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if not _hidden(d)]
            found += [os.path.join(root, f) for f in files if f.endswith(".parquet") and not _hidden(f)]
        return sorted(found)
    base = folder.rstrip("/") + "/"
    results = FileSystems.match([base + "**"])
    return sorted(
        m.path
        for r in results
        for m in r.metadata_list
        if m.path.endswith(".parquet") and not _hidden(m.path[len(base) :])
    )


def expand_inputs(patterns: list[str]) -> list[str]:
    """Glob every pattern through FileSystems; sorted, de-duplicated paths.

    A folder (local, or a remote prefix ending in ``/``) stands for every
    ``*.parquet`` under it, recursively, as Spark and datatrove read a dataset
    folder; names starting with ``_`` or ``.`` are skipped there."""
    paths: set[str] = set()
    for pattern in patterns:
        is_folder = os.path.isdir(pattern) if "://" not in pattern else pattern.endswith("/")
        try:
            if is_folder:
                matched = _folder_shards(pattern)
            else:
                matched = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
        except Exception as exc:  # Beam raises BeamIOError with a nested dict
            raise InputError(f"input {pattern!r}: cannot list files ({exc})") from exc
        if not matched:
            if is_folder:
                why = "is a folder with no *.parquet file under it"
            elif not any(c in pattern for c in "*?["):  # a plain path, not a pattern
                why = "does not exist"
            else:
                why = "matches no files"
            raise InputError(f"input {pattern!r} {why}")
        paths.update(matched)
    return sorted(paths)


def open_parquet(path: str) -> pq.ParquetFile:
    handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return pq.ParquetFile(handle)


def target_schema(schema: pa.Schema, columns: Columns, path: str) -> pa.Schema:
    """Check the required columns and return the schema batches are cast to.

    ``id`` may be any integer or string type and is cast to string; ``text``
    must be a string type.  Every other column is kept as it is.
    """
    for name in (columns.id, columns.text):
        if schema.get_field_index(name) < 0:
            raise InputError(
                f"{path}: required column {name!r} is missing (columns: {schema.names}); "
                "set input.id_column / input.text_column in the config if it has another name"
            )
    text_type = schema.field(columns.text).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise InputError(f"{path}: column {columns.text!r} has type {text_type}, expected string")
    id_type = schema.field(columns.id).type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type) or pa.types.is_integer(id_type)):
        raise InputError(f"{path}: column {columns.id!r} has type {id_type}, expected string or integer")
    fields = []
    for field in schema:
        if field.name in (columns.id, columns.text):
            field = pa.field(field.name, pa.string())
        fields.append(field)
    return pa.schema(fields)


def inspect_inputs(paths: list[str], columns: Columns, skipped: list | None = None) -> tuple[pa.Schema, int]:
    """Read every shard's footer once on the driver: fail fast, naming the shard.

    Returns the common schema (from the first good shard) and the total row
    count.  With a ``skipped`` list, bad shards are appended to it as
    ``(path, reason)`` instead of stopping the run (``--skip-bad-shards``);
    the caller must then drop them from ``paths``.
    """
    schema = None
    rows = 0
    for path in paths:
        try:
            try:
                meta = open_parquet(path).metadata
            except Exception as exc:
                raise InputError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
            this = target_schema(meta.schema.to_arrow_schema(), columns, path)
            if schema is not None and set(this.names) != set(schema.names):
                raise InputError(
                    f"{path}: columns {sorted(this.names)} differ from the first shard's {sorted(schema.names)}"
                )
        except InputError as exc:
            if skipped is None:
                raise
            skipped.append((path, str(exc)))
            continue
        schema = schema or this
        rows += meta.num_rows
    if schema is None:
        raise InputError(f"no readable input shard among {len(paths)} file(s)")
    return schema, rows


class ReadShardBatches(beam.DoFn):
    """(path, row group) -> RecordBatches cast to the common schema.

    ``source_of`` (path -> name) adds a constant ``source_column`` per shard,
    for inputs whose source is given by where they come from."""

    def __init__(
        self, schema: pa.Schema, batch_size: int, source_of: dict | None = None, source_column: str = "source"
    ):
        self.schema = schema
        self.batch_size = batch_size
        self.source_of, self.source_column = source_of or {}, source_column

    def process(self, unit: tuple[str, int]):
        path, row_group = unit
        try:
            parquet = open_parquet(path)
            read_names = [n for n in self.schema.names if not (self.source_of and n == self.source_column)]
            for batch in parquet.iter_batches(batch_size=self.batch_size, row_groups=[row_group], columns=read_names):
                if self.source_of:
                    batch = batch.append_column(
                        self.source_column, pa.array([self.source_of.get(path)] * batch.num_rows, pa.string())
                    )
                batch = batch.select(self.schema.names).cast(self.schema)
                yield batch
        except Exception as exc:
            raise InputError(f"{path}: failed while reading ({type(exc).__name__}: {exc})") from exc


class ReadParquetShards(beam.PTransform):
    """Shard paths -> PCollection[pa.RecordBatch].

    ``Create((path, row group))`` + a reading DoFn rather than
    ``ReadFromParquet``: it runs on every runner (ReadFromParquet fails on the
    DaskRunner), and row groups, not whole files, are the units the reshuffle
    spreads over workers (one large shard still keeps every worker busy).
    """

    def __init__(
        self,
        paths: list[str],
        schema: pa.Schema,
        batch_size: int = 2048,
        source_of: dict | None = None,
        source_column: str = "source",
    ):
        super().__init__()
        self.paths, self.schema, self.batch_size = paths, schema, batch_size
        self.source_of, self.source_column = source_of, source_column

    def expand(self, pbegin):
        return (
            pbegin
            | "RowGroups"
            >> beam.Create(
                [(path, group) for path in self.paths for group in range(open_parquet(path).metadata.num_row_groups)]
            )
            | "Spread" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(
                ReadShardBatches(self.schema, self.batch_size, self.source_of, self.source_column)
            ).with_output_types(pa.RecordBatch)
        )


def shard_of(doc_id: str, num_shards: int) -> int:
    return xxhash.xxh64_intdigest(doc_id.encode("utf-8")) % num_shards


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns, in its order (missing ones null)."""
    if batch.schema.equals(schema):
        return batch
    arrays = [
        batch.column(f.name).cast(f.type)
        if batch.schema.get_field_index(f.name) >= 0
        else pa.nulls(batch.num_rows, f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def stable_order(table: pa.Table, columns: Columns) -> pa.Table:
    """Sort by id, text, then the other columns of sortable types in schema order,
    nulls first; rows still tied (equal in all of those) by the row's JSON.

    Arrow compares strings by UTF-8 bytes, which is code-point order, as Python does.
    The extra columns settle most ties in Arrow (the mixing stage's repeats differ
    only in ``epoch``): JSON-encoding 29k tied rows took 1.2 s of a 100k run.
    """
    order_by = [columns.id, columns.text] + [
        f.name for f in table.schema if f.name not in (columns.id, columns.text) and _sortable(f.type)
    ]
    keys = {}
    for k, name in enumerate(order_by):
        keys[f"{k}_set"] = pc.is_valid(table.column(name))
        keys[f"{k}"] = table.column(name)
    keys = pa.table(keys)
    table = table.take(pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in keys.column_names]))
    tie_columns = [table.column(name) for name in order_by]
    n = table.num_rows
    if n < 2:
        return table
    # same[k]: row k + 1 equals row k in every sort column (null equals null), found
    # by Arrow without turning every text into a Python string
    same = _equal_to_previous(tie_columns[0])
    for column in tie_columns[1:]:
        if not pc.any(same).as_py():  # ids are unique in most shards: the texts need no comparing
            break
        same = pc.and_(same, _equal_to_previous(column))
    same = same.to_numpy(zero_copy_only=False)
    if not same.any():
        return table
    order = np.arange(n)
    edges = np.diff(np.concatenate(([0], same.astype(np.int8), [0])))
    for lo, last in zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()):
        rows = table.slice(lo, last + 1 - lo).to_pylist()  # a tied run: rows lo..last
        order[lo : last + 1] = sorted(
            range(lo, last + 1), key=lambda k: json.dumps(rows[k - lo], sort_keys=True, default=str)
        )
    return table.take(pa.array(order))


def _sortable(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_temporal(t)
        or pa.types.is_decimal(t)
    )


def _equal_to_previous(column) -> pa.Array:
    a, b = column.slice(1), column.slice(0, len(column) - 1)
    return pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))


class _SplitByShard(beam.DoFn):
    """batch -> ((partition, shard), the rows bound for that shard), a shard's rows of
    consecutive batches gathered into pieces of at least ``FLUSH_BYTES``.

    Cut per shard, a batch becomes many pieces of a few rows.  Each is an element the
    local runner holds until the write reads it, and pieces under the spill threshold
    (``transforms/spill.py``) cross inline: with 40 shards per folder at 1M documents
    they made the runner process grow by ~350 MB.  Gathered, a piece spills and the
    runner holds a reference.  The gathering is bounded (``MAX_PENDING_BYTES`` per
    bundle, the largest pieces emitted first past it), and the order of a shard's rows
    does not matter: the write sorts them."""

    FLUSH_BYTES = 8 * spill.MIN_BYTES  # well past the spill threshold (a piece's encoded size is ~ its nbytes)
    MAX_PENDING_BYTES = 16 * 1024 * 1024

    def __init__(self, num_shards: int, id_col: str, part_col: str | None):
        self.num_shards, self.id_col, self.part_col = num_shards, id_col, part_col

    def start_bundle(self):
        self._pending: dict = {}  # key -> [pieces, bytes]
        self._pending_bytes = 0

    def process(self, batch: pa.RecordBatch):
        shards = [shard_of(i or "", self.num_shards) for i in batch.column(self.id_col).to_pylist()]
        parts = batch.column(self.part_col).to_pylist() if self.part_col else [None] * batch.num_rows
        where: dict = {}
        for row, key in enumerate(zip(parts, shards)):
            where.setdefault(key, []).append(row)
        for key, rows in where.items():
            piece = batch if len(rows) == batch.num_rows else batch.take(rows)
            entry = self._pending.setdefault(key, [[], 0])
            entry[0].append(piece)
            entry[1] += piece.nbytes
            self._pending_bytes += piece.nbytes
            if entry[1] >= self.FLUSH_BYTES:
                yield self._emit(key)
        while self._pending_bytes > self.MAX_PENDING_BYTES:
            yield self._emit(max(self._pending, key=lambda k: self._pending[k][1]))

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        for key in list(self._pending):
            yield GlobalWindows.windowed_value(self._emit(key))

    def _emit(self, key):
        pieces, size = self._pending.pop(key)
        self._pending_bytes -= size
        return key, pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)


@dataclasses.dataclass(frozen=True)
class WrittenShard:
    path: str
    rows: int
    partition: str | None = None


class WriteParquetShards(beam.PTransform):
    """PCollection[pa.RecordBatch] -> Parquet files ``part-SSSSS-of-NNNNN.parquet``.

    Each row goes to shard ``xxh64(id) % num_shards``; a shard is written by one
    worker, sorted by id, so its bytes are the same on any runner.  Memory: one
    shard's rows at a time per worker; choose ``num_shards`` so that a shard
    fits (e.g. 1e9 docs of ~2 KB -> >= 20,000 shards of ~100 MB).
    With ``partition_column`` rows go to ``directory/<value>/part-...``.
    Output: PCollection[WrittenShard].
    """

    def __init__(
        self,
        directory: str,
        schema: pa.Schema,
        num_shards: int,
        columns: Columns,
        compression: str = "zstd",
        partition_column: str | None = None,
    ):
        super().__init__()
        self.directory, self.schema = directory.rstrip("/"), schema
        self.num_shards, self.columns, self.compression = num_shards, columns, compression
        self.partition_column = partition_column

    def expand(self, batches):
        return (
            batches
            | "SplitByShard"
            >> beam.ParDo(_SplitByShard(self.num_shards, self.columns.id, self.partition_column)).with_output_types(
                beam.typehints.Tuple[beam.typehints.Any, pa.RecordBatch]
            )  # sub-batches by RecordBatchCoder
            | "GroupShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.MapTuple(self._write)
        )

    def _write(self, key, batches) -> WrittenShard:
        partition, shard = key
        # one chunk: sorting and taking over a shard's many small batches (the filters
        # shrink them) took 7x longer than over one
        table = stable_order(
            pa.Table.from_batches([conform(b, self.schema) for b in batches], schema=self.schema).combine_chunks(),
            self.columns,
        )
        directory = (
            self.directory
            if partition is None
            else FileSystems.join(self.directory, re.sub(r"[^A-Za-z0-9_.-]", "_", str(partition)) or "_")
        )
        path = FileSystems.join(directory, f"part-{shard:05d}-of-{self.num_shards:05d}.parquet")
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            pq.write_table(table, handle, compression=self.compression)
        return WrittenShard(path, table.num_rows, partition)
