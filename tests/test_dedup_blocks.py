"""The block shuffle both dedup stages use: runs of equal keys, removals applied to batches."""

from __future__ import annotations

import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest

from curate.pipelines.beam.local_runner import LocalRunner
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
        blocks += _blocks(keys[b : b + 50], ids[b : b + 50], ids[b], partitions=4)
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

    with beam.Pipeline(runner=LocalRunner()) as p:
        result = (
            p | "B" >> beam.Create(batches) | RemoveListed("s", "dup", "id", p | "R" >> beam.Create(removals), join)
        )
        kept = result.kept | "K" >> beam.FlatMap(lambda b: b.column("id").to_pylist())
        rejected = result.rejected | "J" >> beam.FlatMap(
            lambda b: [(r["id"], r["duplicate_of"], r["stage"], r["reason"]) for r in b.to_pylist()]
        )
        assert_that(kept, equal_to(expect_kept), label="Kept")
        assert_that(rejected, equal_to(expect_rejected), label="Rejected")


@pytest.mark.parametrize("join", ["side_input", "shuffle"])
def test_removals_reach_their_batch_and_nothing_is_lost(join):
    batches = [pa.RecordBatch.from_pylist([{"id": f"{b}{i}", "text": "t"} for i in range(4)]) for b in "abc"]
    _run(
        batches,
        [("a0", ("a2", "c1")), ("c0", ("c3", "a0")), ("c0", ("c1", "a0"))],
        ["a0", "a1", "a3", "b0", "b1", "b2", "b3", "c0", "c2"],
        [("a2", "c1", "s", "dup"), ("c3", "a0", "s", "dup"), ("c1", "a0", "s", "dup")],
        join,
    )


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
    docs = [
        np.concatenate([rng.integers(0, 40, n).astype(dtype), top - rng.integers(0, 3, n // 4).astype(dtype)])
        for n in sizes
    ]
    sizes = [len(doc) for doc in docs]
    values = np.concatenate(docs)
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    uniq, uniq_offsets = unique_per_document(values, offsets)
    for d, doc in enumerate(docs):
        assert uniq[uniq_offsets[d] : uniq_offsets[d + 1]].tolist() == np.unique(doc).tolist()
    ids = pa.array([f"id{d}" for d in range(len(docs))])
    expected = {f"id{d}": np.unique(doc).tolist() for d, doc in enumerate(docs)}
    found = {}
    for p, block in set_blocks(ids, uniq, uniq_offsets, partitions=3):
        for doc_id, values_of in block.lookup(ids).items():
            assert shard_of(doc_id, 3) == p
            assert values_of.dtype == dtype
            found[doc_id] = values_of.tolist()
        asked = {f"id{d}" for d in (1, 4)}
        assert {k: v.tolist() for k, v in block.lookup(pa.array(sorted(asked))).items()} == {
            k: v for k, v in expected.items() if k in asked and shard_of(k, 3) == p
        }
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
            expected += [(x, y) for i, x in enumerate(distinct[:8]) for y in distinct[i + 1 :]]
    assert list(zip(a.tolist(), b.tolist())) == expected
    assert any(len(set(bucket)) > 12 for bucket in buckets) and len(expected) > 1000


def _pairs(rows, lengths=None):
    from curate.transforms.near_dedup import pair_block

    cols = [pa.array([r[i] for r in rows], pa.string()) for i in range(4)]
    lens = None if lengths is None else tuple(pa.array([x[i] for x in lengths], pa.int64()) for i in range(2))
    return pair_block(*cols, lens)


def test_pair_blocks_merge_to_each_pair_once_in_id_order_whatever_the_arrival_order():
    from curate.transforms.near_dedup import distinct_pairs, pair_tuples

    rows = [
        ("d%03d" % a, "k%d" % (a // 10), "d%03d" % b, "k%d" % (b // 10))
        for a in range(0, 60, 7)
        for b in range(a + 1, 60, 11)
    ]
    copies = rows + rows[::2] + rows[1::3]  # a pair found by several band partitions
    rng = random.Random(3)
    expected = sorted(set(rows))
    for _ in range(3):
        rng.shuffle(copies)
        blocks = [_pairs(copies[i : i + 7]) for i in range(0, len(copies), 7)]
        merged = distinct_pairs(blocks)
        assert list(zip(*(merged.column(c).to_pylist() for c in ("a", "a_bk", "b", "b_bk")))) == expected
    # priorities as the keep rules order documents: (id,) or (-length, id)
    assert pair_tuples(_pairs([("a", "ka", "b", "kb")])) == [((("a", "ka"), ("a",)), (("b", "kb"), ("b",)))]
    assert pair_tuples(_pairs([("a", "ka", "b", "kb")], [(5, 9)])) == [
        ((("a", "ka"), (-5, "a")), (("b", "kb"), (-9, "b")))
    ]


def test_wanted_ids_name_each_batchs_documents_once_and_pickle_only_their_own():
    """A slice of an Arrow array pickles with its whole buffers; each batch's wanted ids
    must travel alone (a 100k run held 4 GB of copies of every partition's ids)."""
    import pickle

    from curate.transforms.near_dedup import wanted_by_batch

    rows = [("d%04d" % a, "k%d" % (a % 50), "d%04d" % (a + 1), "k%d" % ((a + 1) % 50)) for a in range(0, 2000, 2)]
    wanted = wanted_by_batch((0, _pairs(rows)))
    expected: dict = {}
    for a, ka, b, kb in rows:
        expected.setdefault(ka, set()).add(a)
        expected.setdefault(kb, set()).add(b)
    assert [bk for bk, _ in wanted] == sorted(expected)
    assert {bk: sorted(ids.to_pylist()) for bk, ids in wanted} == {k: sorted(v) for k, v in expected.items()}
    everything = len(pickle.dumps(pa.array([r[0] for r in rows] + [r[2] for r in rows])))
    assert max(len(pickle.dumps(ids)) for _, ids in wanted) < everything / 10


def test_union_find_maps_every_label_to_the_smallest_of_its_component():
    """Checked against a union-find written out, on random graphs of the labels the
    components are found over ((priority, node) tuples), repeated edges included."""
    from curate.transforms.near_dedup import _union_find

    rng = random.Random(11)
    for trial in range(20):
        nodes = [((-rng.randrange(50), f"d{i:03d}"), (f"d{i:03d}", f"k{i // 7}")) for i in range(rng.randrange(1, 120))]
        edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(rng.randrange(0, 150))]
        edges += [edges[0]] * 300 if edges else []  # the same pair found by many band partitions
        parent = {}

        def find(x):
            parent.setdefault(x, x)
            while parent[x] != x:
                x = parent[x]
            return x

        for a, b in edges:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        assert _union_find(edges) == {x: find(x) for x in parent}, trial
    assert _union_find([]) == {}


def test_packed_removals_name_the_same_rows_as_the_tuples_they_pack():
    from curate.transforms.key_blocks import pack_removals, removal_dict

    pairs = [(f"k{i % 7}", (f"d{i}", f"d{i - 1}" if i % 3 else None)) for i in range(1, 200)]
    packed = pack_removals(iter(pairs))
    assert [key for key, _ in packed] == sorted({key for key, _ in pairs})
    for key, batch in packed:
        expected = dict(item for k, item in pairs if k == key)
        assert removal_dict([batch]) == expected
        assert removal_dict([item for k, item in pairs if k == key]) == expected  # tuples still accepted
    assert pack_removals([]) == []


def test_components_of_pair_blocks_match_the_union_find_over_pair_tuples():
    """The Arrow path (``rounds: 0``) removes exactly what the label path's union-find
    does, under both keep rules, with pairs repeated across blocks."""
    from curate.transforms.key_blocks import removal_dict
    from curate.transforms.near_dedup import _removal, _union_find, components_of_pairs, pair_tuples

    rng = random.Random(5)
    for trial in range(30):
        n = rng.randrange(2, 150)
        length = {i: rng.randrange(1, 40) for i in range(n)}
        rows, lengths = [], []
        for _ in range(rng.randrange(1, 200)):
            x, y = sorted(rng.sample(range(n), 2))
            rows.append((f"d{x:03d}", f"k{x // 9}", f"d{y:03d}", f"k{y // 9}"))
            lengths.append((length[x], length[y]))
        rows, lengths = rows + rows[:5], lengths + lengths[:5]  # found by several band partitions
        for by_length in (False, True):
            blocks = [
                _pairs(rows[i : i + 13], lengths[i : i + 13] if by_length else None) for i in range(0, len(rows), 13)
            ]
            tuples = [t for block in blocks for t in pair_tuples(block)]
            labels = [((prio_a, a), (prio_b, b)) for (a, prio_a), (b, prio_b) in tuples]
            expected: dict = {}
            for label, root in _union_find(labels).items():
                for key, removal in _removal(label[1], root):
                    expected.setdefault(key, {})[removal[0]] = removal[1]
            packed, sizes = components_of_pairs(blocks)
            assert [key for key, _ in packed] == sorted(expected), trial
            assert {key: removal_dict([batch]) for key, batch in packed} == expected, trial
            members = {x for a, _, b, _ in rows for x in (a, b)}
            assert sizes.sum() == len(members) and len(sizes) == len(members) - sum(map(len, expected.values()))
    packed, sizes = components_of_pairs([_pairs([])])
    assert packed == [] and len(sizes) == 0
