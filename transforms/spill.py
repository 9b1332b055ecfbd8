"""Batches that cross a fusion break as a file reference instead of their bytes.

Every ``pa.RecordBatch`` that leaves a fused stage is encoded by
``RecordBatchCoder``; a local runner (Beam's ``FnApiRunner``, in process or with
worker processes) then moves those bytes through its own process and, at each
fusion break, keeps the whole PCollection in memory until its consumers have
read it.  Profiled on 100k documents with 2 worker processes, the runner
process spent its whole core moving batch bytes over gRPC (``_write_outputs``,
``_get_element_size_bytes``, ``grpc._transform``), and in process the buffered
PCollections made resident memory grow with the corpus.

When ``CURATE_SPILL_DIR`` names a folder every worker process can read (set by
``pipelines.build`` for runners whose workers are processes of this machine,
and inherited by them), a batch is instead appended, as an Arrow IPC stream, to
a file of the writing process in that folder, and what crosses the data plane
is a short reference (offset, length, path).  The reader memory-maps the
file: no copy into Python bytes, and the runner's buffered PCollections hold
references instead of the corpus (in process, resident memory no longer grows
with it).  The runner never decodes
these values (it sees length-prefixed bytes), so a reference is read only by
the DoFn that consumes the batch.  The folder lives as long as the run; the
driver deletes it when the pipeline finishes.

Without the variable (a remote runner's workers, or no local runner) batches
are encoded inline, as before.  A reference is recognized by its magic prefix,
which an IPC stream (starting with ``0xFFFFFFFF``) never has.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
import threading

import pyarrow as pa

ENV = "CURATE_SPILL_DIR"
MAGIC = b"CSPL"
_HEAD = struct.Struct("<QQ")  # offset, length
# Smaller encoded elements stay inline: a reference (~100 bytes, and a memory map opened to read
# it) saves little there.  Larger ones spill: an element that crosses inline is held by the runner
# process until the next stage has read it, so the inline share is what grows with the corpus in
# that process (small batches after the filters, keyed blocks of the dedup shuffles).
MIN_BYTES = 8 * 1024


class _Writer:
    """This process's append-only spill file (one per process and folder: workers are
    separate processes; threads of one process share it under a lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.key, self.file, self.path = None, None, None

    def append(self, directory: str, data) -> bytes:
        with self.lock:
            if self.key != (os.getpid(), directory):  # first use, a forked child, or a new run's folder
                self.key = (os.getpid(), directory)
                self.path = os.path.join(directory, f"_{os.getpid()}-{threading.get_ident()}.arrow")
                self.file = open(self.path, "ab", buffering=0)
            offset = self.file.tell()
            self.file.write(data)
        return MAGIC + _HEAD.pack(offset, len(data)) + self.path.encode()

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
            self.key, self.file, self.path = None, None, None


_WRITER = _Writer()


def spill_dir() -> str | None:
    return os.environ.get(ENV) or None


def maybe_spill(data) -> bytes | None:
    """A reference to ``data`` (an IPC stream, bytes-like) appended to this process's spill
    file, or None when spilling is off or the stream is small."""
    directory = spill_dir()
    if directory is None or len(data) < MIN_BYTES:
        return None
    return _WRITER.append(directory, data)


def is_reference(encoded: bytes) -> bool:
    return encoded[:4] == MAGIC


def referenced_size(encoded: bytes) -> int:
    """How many bytes a reference stands for."""
    return _HEAD.unpack_from(encoded, 4)[1]


def read_reference(encoded: bytes) -> pa.Buffer:
    """The referenced bytes, memory-mapped.  The map is not kept: it lives as long as the
    buffers of the batch decoded from it, so resident memory follows the batches in use,
    not the size of the spill file (mapped pages count as resident while mapped)."""
    offset, length = _HEAD.unpack_from(encoded, 4)
    with pa.memory_map(encoded[4 + _HEAD.size :].decode()) as mapped:
        mapped.seek(offset)
        return mapped.read_buffer(length)  # a slice of the map (``read_at`` would copy into bytes)


def close() -> None:
    """Close this process's spill file (the driver, after an in-process run, before the
    folder is deleted)."""
    _WRITER.close()


@contextlib.contextmanager
def spilling(parent: str | None):
    """Within the block, batches spill to a new folder under ``parent`` (a local folder; None:
    the system's temp folder); the folder is deleted when the block ends.  For runners whose
    workers are this process or its children (they inherit the variable when they start)."""
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="_spill-", dir=parent)
    before = os.environ.get(ENV)
    os.environ[ENV] = directory
    try:
        yield directory
    finally:
        close()
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        shutil.rmtree(directory, ignore_errors=True)
