"""Batches across fusion breaks as file references (transforms/spill.py), and stage inputs dealt
to worker processes by element (pipelines/beam/balanced_partitions.py)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from pathlib import Path

import pyarrow as pa
from apache_beam import coders
from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
from apache_beam.runners.portability.fn_api_runner import execution

from curate.pipelines import build
from curate.pipelines.beam import balanced_partitions
from curate.pipelines.config import load_config
from curate.transforms import spill
from curate.transforms.stage import RecordBatchCoder


def _batch(rows: int) -> pa.RecordBatch:
    return pa.record_batch(
        {"id": [f"d{i:06d}" for i in range(rows)], "text": [f"text number {i} " * 8 for i in range(rows)]}
    )


def test_large_batches_cross_as_references_small_ones_inline(tmp_path):
    coder = RecordBatchCoder()
    big, small = _batch(5_000), _batch(3)
    assert not spill.is_reference(coder.encode(big))  # spilling off: the IPC stream itself
    with spill.spilling(str(tmp_path)) as directory:
        encoded_big, encoded_small = coder.encode(big), coder.encode(small)
        assert spill.is_reference(encoded_big) and len(encoded_big) < 200
        assert not spill.is_reference(encoded_small)
        assert coder.decode(encoded_big).equals(big) and coder.decode(encoded_small).equals(small)
        second = coder.encode(big.slice(100, 2_000))  # appended to the same file, at its own offset
        assert coder.decode(second).equals(big.slice(100, 2_000))
        assert len(os.listdir(directory)) == 1
    assert not os.path.exists(directory) and spill.spill_dir() is None
    assert coder.decode(coder.encode(big)).equals(big)


def test_a_new_folder_gets_a_new_file_in_the_same_process(tmp_path):
    coder = RecordBatchCoder()
    for run in ("a", "b"):
        with spill.spilling(str(tmp_path / run)) as directory:
            encoded = coder.encode(_batch(5_000))
            assert directory.encode() in encoded and coder.decode(encoded).num_rows == 5_000


def _partition_counts(chunk_sizes: list[int], n: int, make=None):
    coder = coders.BytesCoder().get_impl()
    buffer = execution.ListBuffer(coder)
    values = []
    for size in chunk_sizes:
        out = create_OutputStream()
        for _ in range(size):
            value = (make or (lambda k: hashlib.sha1(str(k).encode()).digest()))(len(values))
            values.append(value)
            coder.encode_to_stream(value, out, True)
        buffer.append(out.get())
    parts = buffer.partition(n)
    after = []  # what a later reader of the whole buffer sees
    for chunk in buffer:
        stream = create_InputStream(chunk)
        while stream.size() > 0:
            after.append(coder.decode_from_stream(stream, True))
    assert sorted(after) == sorted(values)
    if n > 1 and balanced_partitions.installed():  # each element held once: the buffer is the dealt chunks
        assert [id(c) for c in buffer] == [id(c) for part in parts for c in part]
    got = []
    for part in parts:
        got.append([])
        for chunk in part:
            stream = create_InputStream(chunk)
            while stream.size() > 0:
                got[-1].append(coder.decode_from_stream(stream, True))
    return values, got


def test_stage_input_is_dealt_by_element_not_by_chunk():
    was = balanced_partitions.installed()
    balanced_partitions.uninstall()
    try:
        values, beams = _partition_counts([40, 1, 1, 1], 2)  # Beam's: whole chunks round-robin
        assert sorted(len(p) for p in beams) == [2, 41]
        assert balanced_partitions.install() and balanced_partitions.installed()
        values, ours = _partition_counts([40, 1, 1, 1], 2)
        assert sorted(len(p) for p in ours) == [21, 22]
        assert sorted(v for p in ours for v in p) == sorted(values)
        values, one = _partition_counts([5, 7], 1)  # one worker: Beam's own answer
        assert [len(p) for p in one] == [12]
    finally:
        balanced_partitions.uninstall()
        if was:
            balanced_partitions.install()


def _reference(length: int) -> bytes:
    return spill.MAGIC + struct.pack("<QQ", 0, length) + b"/spill/_1-1.arrow"


def test_elements_are_dealt_by_the_bytes_they_stand_for():
    """A large batch (inline, or a spill reference weighing what it points to) counts for
    many small ones: the other worker gets the small ones until it has as many bytes."""
    was = balanced_partitions.installed()
    balanced_partitions.install()
    try:
        sizes = [10_000] + [1_000] * 12
        _, inline = _partition_counts([len(sizes)], 2, lambda k: bytes([k]) * sizes[k])
        assert sorted(len(p) for p in inline) == [2, 11]  # the large one and a small one, against 11 small
        assert [sum(map(len, p)) for p in inline] == [11_000, 11_000]
        _, spilled = _partition_counts([len(sizes)], 2, lambda k: _reference(sizes[k]) + bytes([k]))
        assert sorted(len(p) for p in spilled) == [2, 11]
        _, again = _partition_counts([len(sizes)], 2, lambda k: _reference(sizes[k]) + bytes([k]))
        assert again == spilled  # the same deal every time
    finally:
        balanced_partitions.uninstall()
        if was:
            balanced_partitions.install()


def _published(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.parquet"))
        if "rejects" in p.parts or "kept" in p.parts
    }


def test_multi_process_run_spills_and_publishes_the_same_bytes(tmp_path, monkeypatch):
    """Two worker processes write their batches to spill files (seen just before the driver
    deletes the folder); kept and rejects are byte for byte those of an in-process run
    without spilling; no spill folder is left."""
    cfg = load_config([])
    seen = []
    close = spill.close

    def close_and_look():
        directory = spill.spill_dir()
        seen.extend((name, os.path.getsize(os.path.join(directory, name))) for name in os.listdir(directory))
        close()

    monkeypatch.setattr(spill, "close", close_and_look)
    build.run(
        cfg,
        str(tmp_path / "multi"),
        beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        log=lambda *_: None,
    )
    assert len(seen) >= 2 and all(size > 0 for _, size in seen), seen  # the workers' own files
    monkeypatch.setattr(spill, "spilling", lambda parent: contextlib.nullcontext())
    build.run(cfg, str(tmp_path / "inline"), beam_args=["--direct_num_workers=1"], log=lambda *_: None)
    multi, inline = _published(tmp_path / "multi"), _published(tmp_path / "inline")
    assert multi and multi == inline
    assert not [p for p in (tmp_path / "multi").rglob("*") if "_spill" in str(p.relative_to(tmp_path))]


def test_large_untyped_elements_spill_through_the_fallback_coder(tmp_path):
    """Set and pair blocks (numpy arrays in tuples) are pickled by Beam's fallback coder;
    a large pickle crosses as a reference too, small elements stay inline."""
    import numpy as np

    from curate.pipelines.beam.size_estimates import SizeEstimatingCoder

    impl = SizeEstimatingCoder().get_impl()
    block = (7, ("k", np.arange(200_000, dtype=np.uint32)))
    small = (7, ("k", np.arange(3, dtype=np.uint32)))
    with spill.spilling(str(tmp_path)):
        encoded, encoded_small = impl.encode(block), impl.encode(small)
        assert len(encoded) < 300 and len(encoded_small) < 300
        assert os.path.getsize(os.path.join(spill.spill_dir(), os.listdir(spill.spill_dir())[0])) > 800_000
        got = impl.decode(encoded)
        assert got[0] == 7 and got[1][0] == "k" and np.array_equal(got[1][1], block[1][1])
        assert np.array_equal(impl.decode(encoded_small)[1][1], small[1][1])
    assert len(impl.encode(block)) > 800_000  # spilling off: inline


def test_output_shard_pieces_are_gathered_until_they_would_spill():
    """A batch cut per output shard gives pieces of a few rows: gathered per shard until
    FLUSH_BYTES (so they spill, not stay in the runner), every row once, bounded."""
    from curate.transforms.io import _SplitByShard, shard_of

    split = _SplitByShard(8, "id", None)
    split.start_bundle()
    batches = [pa.record_batch({"id": [f"d{b}-{i}" for i in range(64)], "text": ["x" * 200] * 64}) for b in range(40)]
    out = [kv for b in batches for kv in split.process(b)]
    early = len(out)
    out += [wv.value for wv in split.finish_bundle()]
    assert split._pending == {} and split._pending_bytes == 0
    # a piece of one batch is ~1.6 KB: emitted during the bundle only once gathered past FLUSH_BYTES
    assert early and all(piece.nbytes >= split.FLUSH_BYTES for _, piece in out[:early])
    rows = [(key, i) for key, piece in out for i in piece.column("id").to_pylist()]
    assert sorted(i for _, i in rows) == sorted(i for b in batches for i in b.column("id").to_pylist())
    assert all(key == (None, shard_of(i, 8)) for key, i in rows)
    # pending memory is bounded however many shards: past MAX_PENDING_BYTES the largest go
    tight = _SplitByShard(1000, "id", None)
    tight.MAX_PENDING_BYTES = 20_000
    tight.start_bundle()
    for b in batches:
        list(tight.process(b))
        assert tight._pending_bytes <= tight.MAX_PENDING_BYTES
