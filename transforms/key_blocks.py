"""Shuffling keys in blocks, and removing listed rows from their batches.

Shared by the stages that find documents with equal keys (``input_check``:
repeated ids; ``exact_dedup``: text hashes; ``near_dedup``: LSH band keys).

Element shapes:
  key blocks      (partition, (batch_key, HashBlock))   a batch's keys that fall in one partition
  removals        (batch_key, (doc_id, duplicate_of))   joined with the batches by ``RemoveListed``
                  or (batch_key, pa.RecordBatch)       the same, packed per batch key (``pack_removals``)
  keyed batches   (batch_key, pa.RecordBatch)

Why blocks: the shuffle moves one element per (batch, partition) instead of
one per document or per band (~0.7 us per element per fused step plus ~3 us
per shuffled element in Beam), and equal keys are found by sorting each
partition in numpy.  Documents themselves never leave their batch: a batch
meets its (few) removals by ``batch_key``, the first id of the batch, unique
because ``input_check`` rejects repeated ids.

How a batch meets its removals (``RemoveListed``'s ``join``):
  ``side_input``  the removals are a multimap side input read per batch key;
                  the batches are not shuffled.  Default up to
                  ``SIDE_INPUT_MAX_ROWS`` input documents.
  ``shuffle``     a CoGroupByKey of batches and removals on the batch key;
                  every batch crosses the shuffle, but no worker holds more
                  than its own keys.  Above ``SIDE_INPUT_MAX_ROWS``.
On the FnApiRunner (DirectRunner, job service) a CoGroupByKey costs a full
extra pass of its inputs (its Flatten is materialized as a stage of its own),
which is why the side input is the default where it fits.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.transforms.stage import REJECTED_TAG, StageResult, TaggedParDo, emit_split

DUPLICATE_OF = pa.field("duplicate_of", pa.string())

# Auto partition count: one partition per this many shuffled index entries
# (hashes or band keys), so one partition's sort holds ~1M entries (~50 MB with
# ids) on a worker, bounded to [MIN_PARTITIONS, MAX_PARTITIONS].  At 1e9
# documents x 14 bands the cap applies: 1.4e10 / 4096 = 3.4M entries each.
# The floor of 16 keys lets a small job's shuffles spread over the workers: with
# 4, a Dask run of 8 partitions left half of them empty (100k documents on 2
# workers: 66.6 s at 4, 61.6 s at 16; 1 worker unchanged).
ENTRIES_PER_PARTITION = 1_000_000
MIN_PARTITIONS, MAX_PARTITIONS = 16, 4096


# Up to this many input documents, removals (at most one per document, ~100
# bytes each: <= 1 GB) reach the batches as a side input served per batch key;
# above, by a shuffle join.  Flink broadcasts side inputs to every task, so a
# bound is needed.
SIDE_INPUT_MAX_ROWS = 10_000_000


def removal_join(input_rows: int) -> str:
    return "side_input" if input_rows <= SIDE_INPUT_MAX_ROWS else "shuffle"


def auto_partitions(input_rows: int, entries_per_doc: int) -> int:
    wanted = math.ceil(max(input_rows, 0) * entries_per_doc / ENTRIES_PER_PARTITION)
    return min(MAX_PARTITIONS, max(MIN_PARTITIONS, wanted))


def batch_key(batch: pa.RecordBatch, id_col: str) -> str:
    """The batch's first id: unique among batches, as ids are unique after input_check."""
    return batch.column(id_col)[0].as_py()


class HashBlock(NamedTuple):
    """One batch's entries in one partition: ``keys`` (n, w) uint64, ``ids`` (n,)
    Arrow strings, optional ``extra`` (n,) int64 that travels with them (a text
    length for the keep rule).  Arrays, not lists: a block pickles as a few
    buffers, and Beam's side-input cache does not walk millions of objects."""

    keys: np.ndarray
    ids: pa.Array
    extra: np.ndarray | None = None


def segment_positions(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Positions ``starts[k] .. starts[k] + sizes[k] - 1`` of every segment k, concatenated."""
    return np.repeat(starts, sizes) + (np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes))


def take_segments(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Segments ``values[offsets[r]:offsets[r + 1]]`` of ``rows``, in that order -> (values, int64 offsets)."""
    sizes = offsets[rows + 1] - offsets[rows]
    return values[segment_positions(offsets[rows], sizes)], np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def split_by_partition(keys: np.ndarray, ids: pa.Array, partitions: int, extra: np.ndarray | None = None):
    """(n, w) uint64 keys and their ids -> (partition, HashBlock) by the first key word."""
    part = keys[:, 0] % np.uint64(partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1, dtype=np.uint64))
    for p in range(partitions):
        lo, hi = bounds[p], bounds[p + 1]
        if hi > lo:
            rows = order[lo:hi]
            yield p, HashBlock(keys[rows], ids.take(pa.array(rows)), None if extra is None else extra[rows])


class KeyRuns(NamedTuple):
    """The runs of >= 2 equal keys of one partition's blocks, as arrays.

    Entry e (blocks concatenated) has ``ids[e]``, ``doc[e]`` (dense rank of its
    id: equal ids, equal doc; id order), ``block_of[e]`` and ``extra[e]``; run k
    is the entries ``members[bounds[k]:bounds[k + 1]]``, in id order."""

    ids: pa.Array
    doc: np.ndarray
    block_of: np.ndarray
    extra: np.ndarray | None
    members: np.ndarray
    bounds: np.ndarray


def key_runs(blocks: list) -> KeyRuns | None:
    """Blocks ``(batch_key, HashBlock)`` of one partition -> ``KeyRuns`` (None: no run).

    Sorting is numpy's lexsort on the key words and the id's rank (Arrow's
    string sort), so the result does not depend on the order blocks arrive in.
    """
    if not blocks:
        return None
    keys = np.concatenate([b.keys for _, b in blocks])
    ids = pa.concat_arrays([b.ids.cast(pa.string()) for _, b in blocks])
    block_of = np.repeat(np.arange(len(blocks)), [len(b.keys) for _, b in blocks])
    extra = np.concatenate([b.extra for _, b in blocks]) if blocks[0][1].extra is not None else None
    doc = pc.rank(ids, sort_keys="ascending", tiebreaker="dense").to_numpy().astype(np.int64) - 1
    order = np.lexsort((doc, *[keys[:, w] for w in range(keys.shape[1] - 1, -1, -1)]))
    sorted_keys = keys[order]
    same = np.all(sorted_keys[1:] == sorted_keys[:-1], axis=1)
    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    ends = np.append(starts[1:], len(order))
    multi = ends - starts >= 2
    if not multi.any():
        return None
    starts, sizes = starts[multi], (ends - starts)[multi]
    members = order[segment_positions(starts, sizes)]
    return KeyRuns(ids, doc, block_of, extra, members, np.concatenate(([0], np.cumsum(sizes))))


def equal_key_runs(blocks) -> list[list[tuple]]:
    """Blocks of one partition -> every run of >= 2 equal keys, as a list of
    ``(doc_id, batch_key, extra)`` sorted by id (``key_runs``); Python objects
    are made only for the members of runs (the duplicates), in one Arrow take."""
    blocks = list(blocks)
    runs = key_runs(blocks)
    if runs is None:
        return []
    members = runs.members
    member_ids = runs.ids.take(pa.array(members)).to_pylist()
    batch_keys = [blocks[b][0] for b in runs.block_of[members].tolist()]
    extras = [int(x) for x in runs.extra[members].tolist()] if runs.extra is not None else [None] * len(members)
    rows = list(zip(member_ids, batch_keys, extras))
    bounds = runs.bounds.tolist()
    return [rows[bounds[k] : bounds[k + 1]] for k in range(len(bounds) - 1)]


class BatchVisitor:
    """What ``JoinListed`` runs per batch key: ``visit(key, batches, items)`` yields
    outputs (``TaggedOutput`` for its tags); ``setup`` is called once per worker."""

    def setup(self):
        pass

    def visit(self, key, batches: list, items: list):
        raise NotImplementedError


class JoinListed(beam.PTransform):
    """(batches, listed) -> the outputs of ``visitor.visit(batch_key, batches, items)``.

    ``listed``: PCollection[(batch_key, item)]; a batch meets the items listed
    under its key (none: an empty list) by ``join``: ``side_input`` or
    ``shuffle`` (module docstring).  Outputs as ``TaggedParDo``'s."""

    def __init__(self, visitor: BatchVisitor, id_col: str, listed, join: str, tags=(), main: str = "main"):
        super().__init__()
        if join not in ("side_input", "shuffle"):
            raise ValueError(f"join must be 'side_input' or 'shuffle', not {join!r}")
        self.visitor, self.id_col, self.listed, self.join, self.tags, self.main = (
            visitor,
            id_col,
            listed,
            join,
            list(tags),
            main,
        )

    def expand(self, batches):
        id_col = self.id_col
        if self.join == "side_input":
            return batches | "Visit" >> TaggedParDo(
                _VisitBatch(self.visitor, id_col), self.tags, main=self.main, listed=beam.pvalue.AsMultiMap(self.listed)
            )
        # an empty batch has no key and nothing listed (stages never emit one; a guard)
        keyed = batches | "KeyBatches" >> beam.FlatMap(lambda b: [(batch_key(b, id_col), b)] if b.num_rows else [])
        return (
            {"batch": keyed, "listed": self.listed}
            | "JoinListed" >> beam.CoGroupByKey()
            | "Visit" >> TaggedParDo(_VisitGrouped(self.visitor), self.tags, main=self.main)
        )


class _VisitBatch(beam.DoFn):
    """``side_input`` join: one batch and the items listed under its key."""

    def __init__(self, visitor: BatchVisitor, id_col: str):
        self.visitor, self.id_col = visitor, id_col

    def setup(self):
        self.visitor.setup()

    def process(self, batch, listed):
        if batch.num_rows == 0:
            return
        key = batch_key(batch, self.id_col)
        yield from self.visitor.visit(key, [batch], list(listed[key]))


class _VisitGrouped(beam.DoFn):
    """``shuffle`` join: the batch and the items grouped under one key."""

    def __init__(self, visitor: BatchVisitor):
        self.visitor = visitor

    def setup(self):
        self.visitor.setup()

    def process(self, element):
        key, grouped = element
        yield from self.visitor.visit(key, list(grouped["batch"]), list(grouped["listed"]))


class RemoveListed(beam.PTransform):
    """(batches, removals) -> StageResult: each batch loses the ids listed for it.

    ``removals``: PCollection[(batch_key, (doc_id, duplicate_of))]; ``join``:
    ``side_input`` or ``shuffle`` (module docstring).  Rejected rows get
    ``stage``, ``reason`` and ``duplicate_of``.  A removal naming a row that is
    not in its batch is a bug, and fails the run rather than losing it.
    """

    def __init__(self, stage: str, reason: str, id_col: str, removals, join: str = "side_input"):
        super().__init__()
        self.join_listed = JoinListed(
            _Remover(stage, reason, id_col), id_col, removals, join, [REJECTED_TAG], main="kept"
        )

    def expand(self, batches):
        out = batches | "Remove" >> self.join_listed
        return StageResult(out.kept, out[REJECTED_TAG])


class _Remover(BatchVisitor):
    def __init__(self, stage: str, reason: str, id_col: str):
        self.stage, self.reason, self.id_col = stage, reason, id_col

    def visit(self, key, batches, items):
        return _remove(self.stage, self.reason, self.id_col, key, batches, removal_dict(items))


def pack_removals(removals) -> list:
    """[(batch_key, (doc_id, duplicate_of)), ...] -> [(batch_key, pa.RecordBatch), ...], one
    element per batch key: Beam's side-input cache weighs a value object by object
    (objsize), so ~20k removal tuples per 100k documents cost ~0.15 s to weigh, a
    batch of two string columns next to nothing."""
    by_key: dict = {}
    for key, (doc_id, duplicate_of) in removals:
        by_key.setdefault(key, ([], []))
        by_key[key][0].append(doc_id)
        by_key[key][1].append(duplicate_of)
    return [
        (
            key,
            pa.RecordBatch.from_arrays(
                [pa.array(ids, pa.string()), pa.array(dups, pa.string())], names=["doc_id", DUPLICATE_OF.name]
            ),
        )
        for key, (ids, dups) in sorted(by_key.items())
    ]


def removal_dict(items) -> dict:
    """{doc_id: duplicate_of} from removal items: (doc_id, duplicate_of) pairs or packed batches."""
    removed: dict = {}
    for item in items:
        if isinstance(item, pa.RecordBatch):
            removed.update(zip(item.column(0).to_pylist(), item.column(1).to_pylist()))
        else:
            removed[item[0]] = item[1]
    return removed


def _remove(stage: str, reason: str, id_col: str, key, batches: list, removed: dict):
    """Split ``batches`` (those under ``key``) by ``removed`` {doc_id: duplicate_of}."""
    found = 0
    for batch in batches:
        if not removed:
            yield batch
            continue
        duplicate_of = [removed.get(i) for i in batch.column(id_col).to_pylist()]
        keep = [d is None for d in duplicate_of]
        found += len(keep) - sum(keep)
        yield from emit_split(
            batch, stage, keep, reason, reject_extra={DUPLICATE_OF.name: pa.array(duplicate_of, pa.string())}
        )
    if found != len(removed):
        present = {i for b in batches for i in b.column(id_col).to_pylist()}
        missing = sorted(i for i in removed if i not in present)
        raise RuntimeError(
            f"{stage}: {len(removed) - found} removal(s) for batch {key!r} name rows "
            f"that are not in it (batches under that key: {[b.num_rows for b in batches]}; "
            f"missing e.g. {missing[:3]})"
        )
