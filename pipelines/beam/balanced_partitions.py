"""Split a stage's input between worker processes by element, not by chunk (apache-beam 2.77).

With ``direct_num_workers=N`` the ``FnApiRunner`` runs each fused stage as N
bundles, one per worker, and ``ListBuffer.partition`` decides which input goes
to which: when the buffered PCollection has at least N data chunks it deals
out whole chunks round-robin (``self._inputs[k::n]``), whatever they hold.  A
chunk is whatever a worker's output stream flushed at once, so chunks of one
PCollection hold very different numbers of elements; when batches cross the
data plane as small file references (``curate.transforms.spill``) one chunk
can hold a whole bundle's output.  Measured on 100k documents with 2 workers:
one worker ran alone for 5 of 30 s while the other waited at the end of a
stage.

This partition deals out elements one by one (decoding each with the runner's
safe coder, which for curate's batches is a length-prefixed byte string: a
reference, or the batch's bytes), each to the worker with the fewest bytes so
far, a reference weighing the bytes it points to.  Dealing by count, as Beam
does when there are fewer chunks than workers, leaves the worker that drew the
larger batches running alone at the end of every stage: a parquet row group's
last batch holds a few hundred rows, the others 2,048, and a batch after the
filters any number in between.  Which worker processes an element does not
change any output: outputs are sharded by document id and sorted.  The dealt
chunks then stand in for the buffer's own (same elements, dealt order), so the
runner holds a stage's input once, not twice.
"""

from __future__ import annotations

import logging

from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
from apache_beam.runners.portability.fn_api_runner import execution

from curate.transforms import spill

_LOG = logging.getLogger(__name__)
_ORIGINAL = {"partition": execution.ListBuffer.partition}


def _by_element(self, n: int) -> list[list[bytes]]:
    if n <= 1 or self._coder_impl is None or self.cleared or not self._inputs:
        return _ORIGINAL["partition"](self, n)
    if not self._grouped_output:
        streams = [create_OutputStream() for _ in range(n)]
        loads = [0] * n
        for chunk in self._inputs:
            stream = create_InputStream(chunk)
            while stream.size() > 0:
                start = stream.size()
                value = self._coder_impl.decode_from_stream(stream, True)
                index = loads.index(min(loads))  # the least loaded, the first of equals: deterministic
                self._coder_impl.encode_to_stream(value, streams[index], True)
                loads[index] += weight(value, start - stream.size())
        self._grouped_output = [[out.get()] for out in streams]
        # the dealt chunks hold every element once: they replace the original chunks, which
        # would otherwise stay buffered beside them (twice the stage's input in the runner
        # process until the stage ends); a later reader iterates the same elements
        self._inputs = [chunk for part in self._grouped_output for chunk in part]
    return self._grouped_output


def weight(value, encoded_size: int) -> int:
    """What an element costs its worker, in bytes: a spilled batch's referenced bytes, else its encoding."""
    if isinstance(value, bytes) and spill.is_reference(value):
        return spill.referenced_size(value)
    return encoded_size


def _compatible() -> bool:
    probe = execution.ListBuffer(None)
    return all(hasattr(probe, name) for name in ("_inputs", "_grouped_output", "_coder_impl", "cleared"))


def install() -> bool:
    """Install on this process (idempotent); False, with a log line, if Beam's internals changed."""
    if installed():
        return True
    if not _compatible():
        _LOG.info("apache-beam's ListBuffer differs from 2.77's: left as it is")
        return False
    execution.ListBuffer.partition = _by_element
    return True


def uninstall() -> None:
    execution.ListBuffer.partition = _ORIGINAL["partition"]


def installed() -> bool:
    return execution.ListBuffer.partition is _by_element
