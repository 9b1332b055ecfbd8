"""A fix for Beam's runner-side data plane, installed where a pipeline is run.

The bug (apache-beam 2.77, ``runners/worker/data_plane.py``): the FnApiRunner
sends each bundle's input to a gRPC SDK worker through a
``TimeBasedBufferingClosableOutputStream`` (the runner's data service flushes
every ``DATA_BUFFER_TIME_LIMIT_MS`` = 1 s).  Its periodic flush runs in
another thread and does ``callback(self.get()); self._clear()``, and the
callback puts the bytes on a byte-limited send queue, which blocks while the
worker is behind.  Whatever the runner writes to the stream during that wait
is cleared unsent: whole chunks of encoded elements never reach the worker,
and nothing reports it.

Who is hit: the DirectRunner in ``multi_processing`` mode and the job
service (both send through gRPC); in-memory single-worker runs do not use the
stream.  Seen here as whole batches missing at a join (2 of 3 runs of the
full chain at 200k documents with 2 workers while another process used the
CPU; 0 of 4 on an idle machine), caught by ``RemoveListed``'s guard and the
conservation check, never published.

The fix: a write waits while a flush is in progress (the stream's own flush
lock), so a flush sends exactly what was written before it and clears only
that.  The runner writes whole chunks (one write per chunk), so the lock is
taken once per chunk, not per element.
"""

from __future__ import annotations

from apache_beam.runners.worker import data_plane

_STREAM = data_plane.TimeBasedBufferingClosableOutputStream
_UNLOCKED_WRITE = data_plane.OutputStream.write


def _write_between_flushes(self, b, nested=False):
    with self._flush_lock:
        _UNLOCKED_WRITE(self, b, nested)


def install() -> None:
    """Make the time-flushed stream's writes wait for a running flush (idempotent)."""
    _STREAM.write = _write_between_flushes


def installed() -> bool:
    return _STREAM.__dict__.get("write") is _write_between_flushes
