"""The block shuffle both dedup stages use: runs of equal keys, removals applied to batches."""
from __future__ import annotations

import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest

from curate.transforms.key_blocks import RemoveListed, auto_partitions, equal_key_runs, split_by_partition


def _blocks(keys: list[int], ids: list[str], batch: str, partitions: int):
    arr = np.array(keys, dtype=np.uint64).reshape(-1, 1)
    return [(p, (batch, block)) for p, block in split_by_partition(arr, pa.array(ids), partitions)]


def test_runs_are_the_same_whatever_the_order_blocks_arrive_in():
    rng = random.Random(3)
    keys = [rng.randrange(40) for _ in range(300)]
    ids = [f"doc{i:04d}" for i in range(300)]
    blocks = []
    for b in range(0, 300, 50):
        blocks += _blocks(keys[b:b + 50], ids[b:b + 50], ids[b], partitions=4)
    assert {p for p, _ in blocks} == {0, 1, 2, 3}

    def runs_by_partition(blocks):
        out = {}
        for p in range(4):
            out[p] = [[m[:2] for m in run] for run in equal_key_runs([v for q, v in blocks if q == p])]
        return out

    expected = runs_by_partition(blocks)
    for _ in range(5):
        rng.shuffle(blocks)
        assert runs_by_partition(blocks) == expected
    # every key shared by >= 2 documents is one run, its members sorted by id
    groups = {}
    for k, i in zip(keys, ids):
        groups.setdefault(k, []).append(i)
    found = sorted(tuple(i for i, _ in run) for runs in expected.values() for run in runs)
    assert found == sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)


def test_auto_partitions_bounds():
    assert auto_partitions(10_000, 1) == 16
    assert auto_partitions(100_000_000, 14) == 1400
    assert auto_partitions(10**10, 14) == 4096


def _run(batches, removals, expect_kept, expect_rejected, join):
    from apache_beam.testing.util import assert_that, equal_to

    with beam.Pipeline() as p:
        result = p | "B" >> beam.Create(batches) | RemoveListed("s", "dup", "id", p | "R" >> beam.Create(removals),
                                                                join)
        kept = result.kept | "K" >> beam.FlatMap(lambda b: b.column("id").to_pylist())
        rejected = result.rejected | "J" >> beam.FlatMap(
            lambda b: [(r["id"], r["duplicate_of"], r["stage"], r["reason"]) for r in b.to_pylist()])
        assert_that(kept, equal_to(expect_kept), label="Kept")
        assert_that(rejected, equal_to(expect_rejected), label="Rejected")


@pytest.mark.parametrize("join", ["side_input", "shuffle"])
def test_removals_reach_their_batch_and_nothing_is_lost(join):
    batches = [pa.RecordBatch.from_pylist([{"id": f"{b}{i}", "text": "t"} for i in range(4)]) for b in "abc"]
    _run(batches, [("a0", ("a2", "c1")), ("c0", ("c3", "a0")), ("c0", ("c1", "a0"))],
         ["a0", "a1", "a3", "b0", "b1", "b2", "b3", "c0", "c2"],
         [("a2", "c1", "s", "dup"), ("c3", "a0", "s", "dup"), ("c1", "a0", "s", "dup")], join)


@pytest.mark.parametrize("join", ["side_input", "shuffle"])
def test_a_removal_naming_a_row_not_in_its_batch_fails_the_run(join):
    batches = [pa.RecordBatch.from_pylist([{"id": "a0", "text": "t"}, {"id": "a1", "text": "u"}])]
    with pytest.raises(Exception, match="not in it"):
        _run(batches, [("a0", ("zz", "a0"))], ["a0", "a1"], [], join)


def test_join_is_a_side_input_up_to_the_bound_and_a_shuffle_above():
    from curate.transforms.key_blocks import SIDE_INPUT_MAX_ROWS, removal_join

    assert removal_join(0) == removal_join(SIDE_INPUT_MAX_ROWS) == "side_input"
    assert removal_join(SIDE_INPUT_MAX_ROWS + 1) == "shuffle"
    with pytest.raises(ValueError, match="join must be"):
        RemoveListed("s", "dup", "id", None, "broadcast")


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])  # one combined-key sort, or a lexsort
def test_set_blocks_hold_each_documents_unique_sorted_set(dtype):
    from curate.transforms.io import shard_of
    from curate.transforms.near_dedup import set_blocks, unique_per_document

    rng = np.random.default_rng(5)
    sizes = [0, 3, 50, 1, 17, 200]
    top = dtype(np.iinfo(dtype).max)  # values near the top: the combined key must not mix them into the doc bits
    docs = [np.concatenate([rng.integers(0, 40, n).astype(dtype), top - rng.integers(0, 3, n // 4).astype(dtype)])
            for n in sizes]
    sizes = [len(doc) for doc in docs]
    values = np.concatenate(docs)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    uniq, uniq_offsets = unique_per_document(values, offsets)
    for d, doc in enumerate(docs):
        assert uniq[uniq_offsets[d]:uniq_offsets[d + 1]].tolist() == np.unique(doc).tolist()
    ids = pa.array([f"id{d}" for d in range(len(docs))])
    expected = {f"id{d}": np.unique(doc).tolist() for d, doc in enumerate(docs)}
    # sets made before shipping, or raw shingles made sets by lookup (only those asked for)
    for block_values, block_offsets, raw in ((uniq, uniq_offsets, False), (values, offsets, True)):
        found = {}
        for p, block in set_blocks(ids, block_values, block_offsets, partitions=3, raw=raw):
            for doc_id, values_of in block.lookup({f"id{d}" for d in range(len(docs))}).items():
                assert shard_of(doc_id, 3) == p
                assert values_of.dtype == dtype
                found[doc_id] = values_of.tolist()
            asked = {f"id{d}" for d in (1, 4)}
            assert {k: v.tolist() for k, v in block.lookup(asked).items()} == \
                {k: v for k, v in expected.items() if k in asked and shard_of(k, 3) == p}
        assert found == expected


def test_lsh_bucket_pairs_follow_the_bucket_rule():
    """Small buckets give every pair, large ones anchor on their first 8 documents;
    a document listed twice in a bucket counts once (checked against the rule written out)."""
    import itertools

    import numpy as np

    from curate.classifiers.minhash import lsh_bucket_pairs

    rng = random.Random(11)
    buckets = [sorted(rng.choices(range(200), k=rng.choice([1, 2, 3, 5, 12, 13, 40]))) for _ in range(300)]
    docs = np.array([d for bucket in buckets for d in bucket], dtype=np.int64)
    bounds = np.cumsum([0] + [len(b) for b in buckets])
    a, b = lsh_bucket_pairs(docs, bounds, 12, 8)
    expected = []
    for bucket in buckets:
        distinct = sorted(set(bucket))
        if len(distinct) <= 12:
            expected += list(itertools.combinations(distinct, 2))
        else:
            expected += [(x, y) for i, x in enumerate(distinct[:8]) for y in distinct[i + 1:]]
    assert list(zip(a.tolist(), b.tolist())) == expected
    assert any(len(set(bucket)) > 12 for bucket in buckets) and len(expected) > 1000
