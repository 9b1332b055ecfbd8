"""Stage ``near_dedup``: MinHash + LSH, verified pairs, connected components in the dataflow.

Element shapes, in order:
  batches                 pa.RecordBatch
  band blocks             (partition, (batch_key, HashBlock))  band keys of one batch in one partition
  pair blocks             (partition of a, pa.RecordBatch)  candidate pairs as columns a, a_bk, b, b_bk
                                                            (+ a_len, b_len for ``longest_text``), id a < id b
  wanted                  (batch_key, pa.Array of ids)      documents of a batch that are in a pair
  set blocks              (partition, SetBlock)             sorted unique shingle hashes (or signatures)
                                                            of a batch's wanted documents in one id-hash partition
  half blocks             (partition of b, HalfBlock)       pairs with their a's sets
  verified pairs          pa.RecordBatch                    pair block rows whose Jaccard >= threshold
  labels (rounds > 0)     (node, (priority, rep_node))     min label over the component, from
                          pair = ((node_a, prio_a), (node_b, prio_b)), node = (doc_id, batch_key)
  removals                (batch_key, pa.RecordBatch)      doc ids and representatives, packed per batch
                                                            (``rounds > 0``: (batch_key, (doc_id, rep_id)));
                                                            meet the batches at the end (``key_blocks``)

Band keys and shingle sets travel as numpy blocks, one element per (batch,
partition) rather than ``bands`` + 1 elements per document; each partition's
keys are sorted together and runs of equal keys are the LSH buckets.  Only the
documents of a candidate pair get a set, made again from their text once the
pairs are known (``CandidateSets``); a pair meets the sets of its two
documents in the partitions of their ids.  Pairs travel as Arrow columns, one
element per pair of partitions, and so do the verified pairs; only the label
propagation (``rounds > 0``) makes Python tuples, and only for duplicates.
Documents stay in their batches (see ``key_blocks``).

Candidate pairs per bucket: every pair when the bucket holds at most
``max_bucket_pairs`` documents; a larger bucket (typically thousands of copies of
one boilerplate page) pairs every document with the bucket's first 8 documents
in id order, which keeps it connected without m^2 pairs.

Verification: ``exact`` (default) computes the Jaccard of the two shingle sets,
as NeMo Curator's false-positive check; ``signature`` uses the MinHash
estimate (cheaper, less precise); ``none`` keeps every candidate pair.

Connected components: with ``rounds: 0`` (the automatic choice up to 10M
documents) one connected-components pass over all verified pairs on one
worker (``components_of_pairs``: Arrow and scipy), as datatrove's clustering
step.  Otherwise ``rounds`` rounds of min-label
propagation over the verified edges (each a CoGroupByKey + CombinePerKey
over edges, O(1) state per document).  A component whose diameter exceeds ``rounds`` is finished by a
union-find over the label pairs that still disagree; that list is collected on
one worker, so its memory is O(disagreeing label pairs), which is empty when
the rounds suffice (they report how many were needed in the funnel).

Representative: the component's minimum label, where the label orders
documents by the ``keep`` rule: ``smallest_id`` or ``longest_text`` (ties by
id).  Other members are rejected with ``near_duplicate`` and ``duplicate_of``.
"""

from __future__ import annotations

import pickle
from typing import Literal, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from curate.classifiers.minhash import MinHasher, band_keys, jaccard_sorted, lsh_bucket_pairs, optimal_bands
from curate.classifiers.minhash_kernels import unique_segments
from curate.transforms import render
from curate.transforms.io import shard_of
from curate.transforms.key_blocks import (
    DUPLICATE_OF,
    MIN_PARTITIONS,
    BatchVisitor,
    JoinListed,
    RemoveListed,
    auto_partitions,
    batch_key,
    key_runs,
    pack_removals,
    removal_join,
    split_by_partition,
    take_segments,
)
from curate.transforms.registry import BuildContext, StageConfig, StageSpec, StatKind, register
from curate.transforms.stage import Stage, StageResult, TaggedParDo

PAIRS_PER_LARGE_BUCKET = 8
# ``rounds: null``: up to this many input documents the components are found by
# one union-find over all verified edges on one worker (rounds = 0; ~300 bytes
# of Python objects per edge: 10M documents x 30% duplicates ~ 1 GB), above it
# by ``AUTO_ROUNDS`` rounds of label propagation.  The result is the same.
UNION_FIND_MAX_ROWS = 10_000_000
AUTO_ROUNDS = 6


def auto_rounds(input_rows: int) -> int:
    return 0 if input_rows <= UNION_FIND_MAX_ROWS else AUTO_ROUNDS


class Signatures(beam.DoFn):
    """batch -> band blocks, by band-key partition."""

    def __init__(self, cfg: "NearDedupConfig", id_col: str, text_col: str, partitions: int):
        self.cfg, self.id_col, self.text_col, self.partitions = cfg, id_col, text_col, partitions

    def setup(self):
        self.hasher = make_hasher(self.cfg)

    def process(self, batch: pa.RecordBatch):
        if batch.num_rows == 0:
            return
        c = self.cfg
        texts = batch.column(self.text_col)
        keys = band_keys(self.hasher.signatures(texts), c.bands, c.rows)
        lengths = (
            pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64) if c.keep == "longest_text" else None
        )
        bk = batch_key(batch, self.id_col)
        entry_doc = np.repeat(np.arange(batch.num_rows), keys.shape[1])  # band keys row-major: doc d's bands
        for p, block in split_by_partition(
            keys.reshape(-1, 1),
            batch.column(self.id_col).take(pa.array(entry_doc)),
            self.partitions,
            None if lengths is None else lengths[entry_doc],
        ):
            yield p, (bk, block)


def make_hasher(cfg: "NearDedupConfig") -> MinHasher:
    return MinHasher(num_perm=cfg.num_perm, seed=cfg.seed, ngram=cfg.ngram, bits=cfg.bits)


def wanted_by_batch(pair_list) -> list:
    """(partition, pair block) -> [(batch_key, ids), ...]: the documents of the pairs,
    one element per batch they live in (``CandidateSets`` makes their sets).  ``ids``
    is an Arrow array: Beam's side-input cache weighs a tuple of strings object by
    object (objsize; ~1 s per 100k documents), an Arrow array as one."""
    _, pairs = pair_list
    docs = pa.table(
        {
            "bk": pa.concat_arrays([pairs.column("a_bk"), pairs.column("b_bk")]),
            "id": pa.concat_arrays([pairs.column("a"), pairs.column("b")]),
        }
    )
    by_batch = docs.group_by("bk", use_threads=False).aggregate([("id", "distinct")]).sort_by("bk")
    ids = by_batch.column("id_distinct").combine_chunks()
    # concat_arrays copies: a slice of an Arrow array pickles with its whole buffers
    return [(bk, pa.concat_arrays([ids[i].values])) for i, bk in enumerate(by_batch.column("bk").to_pylist())]


class CandidateSets(BatchVisitor):
    """A batch and the ids of its documents in a candidate pair -> their set blocks
    (sorted unique shingle hashes, or signatures), by id-hash partition.

    Only these documents' sets travel to the verification joins, made from the
    text again: a quarter of the documents on the benchmark corpus.  Shipping
    every document's shingles from ``Signatures`` moved ~300 MB per 100k
    documents through both joins, 9.5 of a 42 s chain (``verify: none`` took
    32.7 s)."""

    def __init__(self, cfg: "NearDedupConfig", id_col: str, text_col: str, partitions: int):
        self.cfg, self.id_col, self.text_col, self.partitions = cfg, id_col, text_col, partitions

    def setup(self):
        self.hasher = make_hasher(self.cfg)

    def visit(self, key, batches, items):
        if not items:
            return
        wanted = pa.concat_arrays(items)
        for batch in batches:
            ids = batch.column(self.id_col)
            rows = pc.indices_nonzero(pc.is_in(ids, value_set=wanted.cast(ids.type)))
            if not len(rows):
                continue
            texts = batch.column(self.text_col).take(rows)
            if self.cfg.verify == "exact":
                values, offsets = self.hasher.shingles(texts)
                values, offsets = unique_per_document(
                    values.astype(self.hasher.dtype, copy=False), np.asarray(offsets, np.int64)
                )
            else:
                sigs = self.hasher.signatures(texts)
                values, offsets = sigs.ravel(), np.arange(len(rows) + 1, dtype=np.int64) * sigs.shape[1]
            yield from set_blocks(ids.take(rows), values, offsets, self.partitions)


class SetBlock(NamedTuple):
    """The sets (or signatures) of one batch's candidate documents that fall in one
    partition: document i's are ``values[offsets[i]:offsets[i + 1]]``."""

    ids: pa.Array
    values: np.ndarray
    offsets: np.ndarray

    def lookup(self, wanted: pa.Array) -> dict:
        """{doc_id: its values} for the ids of this block that are in ``wanted`` (strings)."""
        hits = np.flatnonzero(pc.is_in(self.ids, value_set=wanted.cast(self.ids.type)).to_numpy(zero_copy_only=False))
        names = self.ids.take(pa.array(hits)).to_pylist()
        return {name: self.values[self.offsets[i] : self.offsets[i + 1]] for name, i in zip(names, hits.tolist())}


def unique_per_document(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values of each document's segment (``minhash_kernels.unique_segments``)."""
    return unique_segments(values, np.asarray(offsets, dtype=np.int64))


def set_blocks(ids: pa.Array, values: np.ndarray, offsets: np.ndarray, partitions: int):
    """One ``SetBlock`` per partition that holds documents of this batch (partition by id hash)."""
    part = np.array([shard_of(i, partitions) for i in ids.to_pylist()], dtype=np.int64)
    for p in np.unique(part).tolist():
        rows = np.flatnonzero(part == p)
        yield p, SetBlock(ids.take(pa.array(rows)), *take_segments(values, offsets, rows))


def bucket_pairs_of_partition(element, max_bucket_pairs: int, partitions: int):
    """(partition, band blocks) -> (partition of a, pair block): the candidate pairs of
    every bucket (run of equal band keys, ``minhash.lsh_bucket_pairs``), each pair
    once however many bands of this partition found it, sorted by (a, b), one
    block per partition of their a's id.

    Pair blocks, not Python tuples: at 100k documents the band partitions find
    ~670k pair copies (~150k distinct), which as nested tuples cost ~1 s to make,
    as much to pickle and unpickle and ~0.7 s to deduplicate."""
    _, blocks = element
    blocks = list(blocks)
    runs = key_runs(blocks)
    if runs is None:
        return
    a, b = lsh_bucket_pairs(runs.doc[runs.members], runs.bounds, max_bucket_pairs, PAIRS_PER_LARGE_BUCKET)
    if not len(a):
        return
    pair_keys = np.unique((a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64))  # sorted: by a, then b
    a, b = (pair_keys >> np.uint64(32)).astype(np.int64), (pair_keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    docs = np.unique(np.concatenate([a, b]))
    entry_of_doc = np.empty(int(runs.doc.max()) + 1, dtype=np.int64)
    entry_of_doc[runs.doc[runs.members]] = runs.members
    entries = entry_of_doc[docs]
    ids = runs.ids.take(pa.array(entries))
    batch_keys = pa.array([bk for bk, _ in blocks], pa.string()).take(pa.array(runs.block_of[entries]))
    lengths = None if runs.extra is None else pa.array(runs.extra[entries], pa.int64())
    part_of = np.array([shard_of(i, partitions) for i in ids.to_pylist()], dtype=np.int64)
    x, y = np.searchsorted(docs, a), np.searchsorted(docs, b)
    part_a = part_of[x]
    for p in np.unique(part_a).tolist():
        rows = np.flatnonzero(part_a == p)
        xs, ys = pa.array(x[rows]), pa.array(y[rows])
        yield (
            p,
            pair_block(
                ids.take(xs),
                batch_keys.take(xs),
                ids.take(ys),
                batch_keys.take(ys),
                None if lengths is None else (lengths.take(xs), lengths.take(ys)),
            ),
        )


def pair_block(a_ids, a_keys, b_ids, b_keys, lengths=None) -> pa.RecordBatch:
    """Candidate pairs as columns: row k is a pair of documents (``a`` < ``b`` by id) with
    their batch keys, and their text lengths under the ``longest_text`` keep rule."""
    columns = {"a": a_ids, "a_bk": a_keys, "b": b_ids, "b_bk": b_keys}
    if lengths is not None:
        columns.update(a_len=lengths[0], b_len=lengths[1])
    return pa.RecordBatch.from_pydict(columns)


def distinct_pairs(blocks: list) -> pa.Table:
    """Pair blocks -> each pair once, sorted by (a, b): the same whatever order the
    blocks arrive in."""
    table = pa.Table.from_batches(blocks)
    names = table.schema.names
    return (
        table.group_by(names, use_threads=False)
        .aggregate([])
        .select(names)
        .sort_by([("a", "ascending"), ("b", "ascending")])
    )


def pair_tuples(pairs) -> list:
    """Pair block -> [((node_a, prio_a), (node_b, prio_b)), ...], node = (doc_id, batch_key),
    prio = (-length, doc_id) under the ``longest_text`` keep rule, else (doc_id,):
    the shape label propagation (``rounds > 0``) works on (made only for verified pairs)."""
    a, a_bk, b, b_bk = (pairs.column(name).to_pylist() for name in ("a", "a_bk", "b", "b_bk"))
    if "a_len" not in pairs.schema.names:
        return [(((x, xk), (x,)), ((y, yk), (y,))) for x, xk, y, yk in zip(a, a_bk, b, b_bk)]
    a_len, b_len = pairs.column("a_len").to_pylist(), pairs.column("b_len").to_pylist()
    return [(((x, xk), (-xl, x)), ((y, yk), (-yl, y))) for x, xk, xl, y, yk, yl in zip(a, a_bk, a_len, b, b_bk, b_len)]


class HalfBlock(NamedTuple):
    """Pairs on their way to b's partition, with a's sets: pair k's a has the set
    ``values[offsets[i]:offsets[i + 1]]`` for ``i = set_index[k]`` (each a's set once
    per block, however many pairs it is in)."""

    pairs: pa.RecordBatch
    set_index: np.ndarray
    values: np.ndarray
    offsets: np.ndarray


def similarity(a: np.ndarray, b: np.ndarray, verify: str) -> float:
    """Jaccard of two sorted shingle sets, or the share of equal signature slots."""
    if verify == "exact":
        return jaccard_sorted(a, b)
    return float(np.mean(a == b))


class NearDedup(Stage):
    name = "near_dedup"
    reject_fields = (DUPLICATE_OF,)

    def __init__(self, columns, cfg: "NearDedupConfig", partitions: int = MIN_PARTITIONS, join: str = "side_input"):
        """``cfg`` with ``bands``, ``rows`` and ``rounds`` resolved (``build_near_dedup``)."""
        super().__init__(columns)
        self.cfg, self.partitions, self.join = cfg, partitions, join

    def expand(self, batches) -> StageResult:
        c = self.cfg
        bands = batches | "Signatures" >> TaggedParDo(
            Signatures(c, self.columns.id, self.columns.text, self.partitions), [], main="bands"
        )
        pair_lists = (
            bands.bands
            | "GroupBands" >> beam.GroupByKey()
            | "BucketPairs" >> beam.FlatMap(bucket_pairs_of_partition, c.max_bucket_pairs, self.partitions)
        )  # a pair found in several bands comes once per band partition; _verify meets the copies
        if c.verify != "none":
            wanted = pair_lists | "WantedSets" >> beam.FlatMap(wanted_by_batch)
            # A PCollection of its own: the FnApiRunner advances a PCollection's watermark
            # only when every stage reading it has run, and RemoveDuplicates reads
            # ``batches`` waiting (side input) on what CandidateSets makes: reading
            # ``batches`` here too deadlocks ("watermark-pending bundles did not execute").
            columns = [self.columns.id, self.columns.text]
            texts = batches | "SetTexts" >> beam.Map(lambda b: b.select(columns)).with_output_types(pa.RecordBatch)
            sets = (
                texts
                | "CandidateSets"
                >> JoinListed(
                    CandidateSets(c, self.columns.id, self.columns.text, self.partitions),
                    self.columns.id,
                    wanted,
                    self.join,
                    main="sets",
                )
            ).sets
            edge_lists = self._verify(pair_lists, sets)
        else:
            edge_lists = pair_lists | "Pairs" >> beam.Map(lambda kv: kv[1])
        removals, stats = self._components(edge_lists)
        result = batches | "RemoveDuplicates" >> RemoveListed(
            self.name, "near_duplicate", self.columns.id, removals, self.join
        )
        return StageResult(result.kept, result.rejected, extra_stats=stats)

    def _verify(self, pair_lists, sets):
        verify, threshold, partitions = self.cfg.verify, self.cfg.threshold, self.partitions

        def sets_of(blocks, wanted: pa.Array) -> dict:
            found = {}
            for block in blocks:
                found.update(block.lookup(wanted))
            return found

        def first_half(element):
            """(partition, {set blocks, pair blocks by a}) -> (partition of b, HalfBlock).

            Every copy of a pair (one per band partition that found it) has the same
            a, so they meet here and are merged; a's set travels once per partition
            of its b's, not once per pair."""
            _, grouped = element
            blocks = [block for block in grouped["pair"] if block.num_rows]
            if not blocks:
                return
            pairs = distinct_pairs(blocks)
            set_of = sets_of(grouped["set"], pc.unique(pairs.column("a")))
            a_names = pairs.column("a").to_pylist()
            part_b = np.array([shard_of(b, partitions) for b in pairs.column("b").to_pylist()], dtype=np.int64)
            for part in np.unique(part_b).tolist():
                rows = np.flatnonzero(part_b == part)
                index: dict = {}
                set_index = np.array([index.setdefault(a_names[r], len(index)) for r in rows.tolist()], np.int64)
                sets = [set_of[name] for name in index]
                offsets = np.concatenate(([0], np.cumsum([len(x) for x in sets]))).astype(np.int64)
                half = pairs.take(pa.array(rows)).combine_chunks().to_batches()[0]
                yield part, HalfBlock(half, set_index, np.concatenate(sets), offsets)

        def second_half(element):
            """-> the verified pairs of this partition, a pair block per half block."""
            _, grouped = element
            halves = list(grouped["half"])
            if not halves:
                return
            wanted = pc.unique(pa.concat_arrays([half.pairs.column("b") for half in halves]))
            set_of = sets_of(grouped["set"], wanted)
            for half in halves:
                keep = [
                    similarity(half.values[half.offsets[i] : half.offsets[i + 1]], set_of[b], verify) >= threshold
                    for i, b in zip(half.set_index.tolist(), half.pairs.column("b").to_pylist())
                ]
                if any(keep):
                    yield half.pairs.filter(pa.array(keep))

        halves = (
            {"set": sets, "pair": pair_lists} | "JoinA" >> beam.CoGroupByKey() | "WithSetA" >> beam.FlatMap(first_half)
        )
        return {"set": sets, "half": halves} | "JoinB" >> beam.CoGroupByKey() | "Similar" >> beam.FlatMap(second_half)

    def _components(self, edge_lists):
        """Lists of verified pairs -> (removals, cluster stats)."""
        rounds = self.cfg.rounds
        if rounds == 0:
            return self._components_on_one_worker(edge_lists)
        verified = edge_lists | "EachEdge" >> beam.FlatMap(pair_tuples)
        edges = verified | "Edges" >> beam.Map(lambda pair: (pair[0][0], pair[1][0]))
        adjacency = edges | "BothWays" >> beam.FlatMap(lambda e: [(e[0], e[1]), (e[1], e[0])])
        # each endpoint starts labelled by itself: (priority, id); no join, the pair carries both
        labels = (
            verified
            | "Endpoints" >> beam.FlatMap(lambda pair: [(i, (prio, i)) for i, prio in pair])
            | "InitialLabels" >> beam.CombinePerKey(min)
        )

        def spread(element):
            node, grouped = element
            for label in grouped["label"]:
                yield node, label
                for other in grouped["adj"]:
                    yield other, label

        for r in range(rounds):
            labels = (
                {"label": labels, "adj": adjacency}
                | f"Round{r}" >> beam.CoGroupByKey()
                | f"Spread{r}" >> beam.FlatMap(spread)
                | f"Min{r}" >> beam.CombinePerKey(min)
            )

        # label pairs that still disagree across an edge (empty when the rounds sufficed)
        def label_of_a(element):
            a, grouped = element
            for label in grouped["label"]:
                for b in grouped["edge"]:
                    yield b, label

        def disagree(element):
            _, grouped = element
            for label_b in grouped["label"]:
                for label_a in grouped["from_a"]:
                    if label_a != label_b:
                        yield (min(label_a, label_b), max(label_a, label_b))

        from_a = (
            {"label": labels, "edge": edges}
            | "EdgeLabelA" >> beam.CoGroupByKey()
            | "LabelToB" >> beam.FlatMap(label_of_a)
        )
        leftover = (
            {"label": labels, "from_a": from_a}
            | "EdgeLabelB" >> beam.CoGroupByKey()
            | "Disagree" >> beam.FlatMap(disagree)
            | "DistinctLeftover" >> beam.Distinct()
        )
        remap = leftover | "CollectLeftover" >> CollectPacked() | "UnionFind" >> beam.Map(_union_find)
        final = labels | "Finish" >> beam.Map(
            lambda kv, m: (kv[0], m.get(kv[1], kv[1])), m=beam.pvalue.AsSingleton(remap)
        )
        removals = final | "Removals" >> beam.FlatMap(lambda kv: _removal(kv[0], kv[1]))
        return removals, self._cluster_stats(final, leftover)

    def _components_on_one_worker(self, pair_blocks):
        """``rounds: 0``: every verified pair into one connected-components pass
        (datatrove's clustering step): no per-round shuffles; memory O(edges) on one
        worker.  Removals and cluster sizes come straight from its result: no element
        per document of a cluster."""
        name = self.name
        found = pair_blocks | "CollectEdges" >> beam.combiners.ToList() | "Components" >> beam.Map(components_of_pairs)
        removals = found | "Removals" >> beam.FlatMap(lambda found: found[0])
        stats = found | "ClusterSizes" >> beam.FlatMap(lambda found: _size_histogram(name, found[1].tolist()))
        return removals, stats

    def _cluster_stats(self, final, leftover):
        name = self.name
        sizes = (
            final
            | "ByRep" >> beam.Map(lambda kv: (kv[1][1], 1))
            | "ClusterSize" >> beam.CombinePerKey(sum)
            | "Sizes" >> beam.Values()
            | "AllSizes" >> beam.combiners.ToList()
            | "Histogram" >> beam.FlatMap(lambda sizes_list: _size_histogram(name, sizes_list))
        )
        leftover_stat = (
            leftover
            | "CountLeftover" >> beam.combiners.Count.Globally()
            | "LeftoverStat" >> beam.Map(lambda n: (CLUSTERS.key(name, kind=UNCONVERGED), (n, 0)))
        )
        return (sizes, leftover_stat) | "ClusterStats" >> beam.Flatten()


def components_of_pairs(blocks: list) -> tuple[list, np.ndarray]:
    """Pair blocks (pairs may repeat) -> (removals packed per batch key as
    ``pack_removals`` makes them, the size of every component).

    A component keeps its first document by the keep rule, the order of
    ``pair_tuples``'s priorities: the smallest id, or under ``longest_text`` the
    longest text and then the smallest id; every other member is removed as a
    duplicate of it.  Ids are unique (``input_check``), so a document is its id.
    Arrow and scipy over the pairs' columns: the same components as
    ``_union_find`` over ``pair_tuples`` (checked in the tests), which for the
    ~100k verified pairs of 100k documents made and pickled ~0.4 s of tuples;
    only the ~20k removals become tuples, for ``pack_removals``."""
    blocks = [block for block in blocks if block.num_rows]
    if not blocks:
        return [], np.zeros(0, dtype=np.int64)
    pairs = pa.Table.from_batches(blocks)
    by_length = "a_len" in pairs.schema.names
    ends = [
        pairs.select([x, f"{x}_bk", *([f"{x}_len"] if by_length else [])]).rename_columns(
            ["id", "bk", *(["len"] if by_length else [])]
        )
        for x in ("a", "b")
    ]
    nodes = pa.concat_tables(ends).group_by(ends[0].column_names, use_threads=False).aggregate([])
    nodes = nodes.sort_by(([("len", "descending")] if by_length else []) + [("id", "ascending")])
    ids = nodes.column("id").combine_chunks()
    if len(pc.unique(ids)) != len(ids):
        raise ValueError("near_dedup: a document id is in two batches or has two lengths; ids must be unique")
    rank_a = pc.index_in(pairs.column("a"), value_set=ids).to_numpy()
    rank_b = pc.index_in(pairs.column("b"), value_set=ids).to_numpy()
    kept_as, component = _component_firsts(len(ids), rank_a, rank_b)  # nodes are in keep-rule order
    removed = np.flatnonzero(kept_as != np.arange(len(ids)))
    batch_keys = nodes.column("bk").take(pa.array(removed)).to_pylist()
    doc_ids = ids.take(pa.array(removed)).to_pylist()
    kept_ids = ids.take(pa.array(kept_as[removed])).to_pylist()
    return pack_removals(zip(batch_keys, zip(doc_ids, kept_ids))), np.bincount(component)


def _component_firsts(n: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes 0..n-1 and edges (rows[k], cols[k]) -> (the smallest node of each node's
    connected component, the component of each node), by scipy's
    ``connected_components`` (repeated edges are summed: int32 weights)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, component = connected_components(
        coo_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(n, n)), directed=False
    )
    first = np.full(int(component.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first, component, np.arange(n))
    return first[component], component


def _removal(node, root):
    """node (doc_id, batch_key) labelled by another component member's node (root =
    (priority, rep_node)): [(batch_key, (doc_id, rep_id))], else []."""
    return [(node[1], (node[0], root[1][0]))] if root[1] != node else []


def _counts(values) -> dict:
    counts: dict = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _size_histogram(name: str, sizes):
    for size, count in sorted(_counts(sizes).items()):
        yield CLUSTERS.key(name, str(size)), (count, 0)


class CollectPacked(beam.PTransform):
    """PCollection -> one list of all its elements (``ToList``), moved as pickled
    batches: the FnApiRunner serves a large grouped value from its state cache,
    which weighs cached values object by object (objsize: 2.4 s for the ~100k
    label pairs of a 100k-document run, against ~0.05 s to pickle them).  Our
    own data only, never a user's file."""

    def expand(self, pcoll):
        return (
            pcoll
            | "Batch" >> beam.BatchElements(min_batch_size=1024, max_batch_size=65536)
            | "Pack" >> beam.Map(lambda batch: pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
            | "Collect" >> beam.combiners.ToList()
            | "Unpack" >> beam.Map(lambda blobs: [x for blob in blobs for x in pickle.loads(blob)])
        )


def _union_find(pairs) -> dict:
    """label -> smallest label of its connected component, for every label in ``pairs``.

    Labels are ranked by sorting them once; the components come from scipy's
    ``connected_components`` over the ranks (a union-find in Python took ~0.3 s
    for the ~150k verified edges of 100k documents, and grows with them: at the
    10M-document bound of ``rounds: 0`` that is ~15M edges)."""
    firsts, seconds = [], []
    for a, b in pairs:
        firsts.append(a)
        seconds.append(b)
    labels = sorted(set(firsts).union(seconds))
    if not labels:
        return {}
    rank = {label: i for i, label in enumerate(labels)}
    m = len(firsts)
    rows = np.fromiter((rank[x] for x in firsts), dtype=np.int64, count=m)
    cols = np.fromiter((rank[x] for x in seconds), dtype=np.int64, count=m)
    roots, _ = _component_firsts(len(labels), rows, cols)  # labels are in rank order: the smallest is the root
    return dict(zip(labels, (labels[r] for r in roots.tolist())))


# -- the stage's unit: config, declared stats, registration ----------------------------------------


class NearDedupConfig(StageConfig):
    # Shingle size: word 5-grams (FineWeb); character 5-grams in CJK/Thai documents.
    ngram: int = Field(5, ge=1, le=50)
    # 112 permutations = 14 bands x 8 rows, as FineWeb: P(candidate) = 1-(1-J^8)^14,
    # 0.5 at J~0.72, 0.92 at J=0.8, 0.9995 at J=0.9.
    num_perm: int = Field(112, ge=1, le=1024)
    bands: int | None = Field(14, ge=1)
    rows: int | None = Field(8, ge=1)
    # Jaccard threshold of a duplicate; with bands/rows null they are chosen from it
    # (datasketch's optimal-parameter rule, equal false-positive/negative weights).
    threshold: float = Field(0.8, gt=0.0, le=1.0)
    bits: Literal[32, 64] = 32  # 32 (datasketch affine32) or 64 (affine64)
    seed: int = 1
    verify: Literal["exact", "signature", "none"] = "exact"
    keep: Literal["smallest_id", "longest_text"] = "smallest_id"
    # A band bucket of at most this many documents yields all its pairs; a larger
    # one pairs each document with the bucket's first 8 ids only (m x 8 pairs, not
    # m^2/2: a bucket of 10,000 copies of one page must not make 5e7 pairs).
    max_bucket_pairs: int = Field(12, ge=2)
    # Label-propagation rounds before the union-find fix-up; 0: one union-find
    # over all verified edges on one worker; null: 0 up to 10M input documents,
    # else 6.  The components are the same either way.
    rounds: int | None = Field(None, ge=0, le=50)
    # Partitions of the band-key shuffle; null: one per 1M band keys of input
    # (rows x bands; at least 4, at most 4096).
    partitions: int | None = Field(None, ge=1, le=65536)
    # How documents meet their removals: side_input | shuffle; null: side_input up
    # to 10M input documents, else shuffle (transforms/key_blocks.py).
    join: Literal["side_input", "shuffle"] | None = None

    @model_validator(mode="after")
    def _bands_fit(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("@bands: set both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError("@bands: bands x rows must be <= num_perm")
        return self


UNCONVERGED = "unconverged_label_pairs"


class Clusters(StatKind):
    """Duplicate clusters by size, and the label pairs the union-find had to finish."""

    kind = "cluster_size"
    markdown_order = 50
    html_order = 30

    def funnel(self, sums, entry, tokens_per_char):
        clusters = {int(group): d for (kind, group), (d, _) in sums.items() if kind == self.kind}
        if not clusters and (UNCONVERGED, "") not in sums:
            return {}
        return {
            "clusters": {
                "count": sum(clusters.values()),
                "documents_in_clusters": sum(size * n for size, n in clusters.items()),
                "size_histogram": {str(size): clusters[size] for size in sorted(clusters)},
                "label_pairs_finished_by_union_find": sums.get((UNCONVERGED, ""), (0, 0))[0],
            }
        }

    def markdown(self, entry, funnel):
        c = entry.get("clusters")
        if not c:
            return []
        lines = [
            "",
            f"## Duplicate clusters ({entry['name']})",
            "",
            f"{c['count']:,} clusters of 2 or more documents, {c['documents_in_clusters']:,} documents in them; "
            f"{c['label_pairs_finished_by_union_find']} label pairs needed the union-find fix-up.",
            "",
            "| cluster size | clusters |",
            "|---:|---:|",
        ]
        return lines + [f"| {size} | {n:,} |" for size, n in c["size_histogram"].items()]

    def html(self, entry, funnel, samples):
        c = entry.get("clusters")
        if not c:
            return []
        return [
            "<h2>Near-duplicate clusters</h2>",
            f"<p>{c['count']:,} clusters with {c['documents_in_clusters']:,} documents.</p>",
            render.bars([(f"size {k}", v, f"{v:,} clusters") for k, v in c["size_histogram"].items()]),
        ]


CLUSTERS = Clusters()


def build_near_dedup(cfg: NearDedupConfig, ctx: BuildContext) -> list[Stage]:
    bands, rows = (cfg.bands, cfg.rows) if cfg.bands is not None else optimal_bands(cfg.threshold, cfg.num_perm)
    rounds = cfg.rounds if cfg.rounds is not None else auto_rounds(ctx.input_rows)
    resolved = cfg.model_copy(update={"bands": bands, "rows": rows, "rounds": rounds})
    return [
        NearDedup(
            ctx.columns,
            resolved,
            cfg.partitions or auto_partitions(ctx.input_rows, bands),
            cfg.join or removal_join(ctx.input_rows),
        )
    ]


register(
    StageSpec(
        key="near_dedup",
        config=NearDedupConfig,
        build=build_near_dedup,
        order=30,
        stats=(CLUSTERS,),
    )
)
