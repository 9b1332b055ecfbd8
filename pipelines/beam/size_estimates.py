"""Element sizes estimated from buffers, for Beam's fallback coder.

The cost (apache-beam 2.77, ``coders/coder_impl.py``): Beam samples the size
of elements for its counters by encoding them.  An untyped element holding a
batch or a numpy block (a ``(tag, batch)`` pair, a set block) was pickled only
to be measured, a pickle the size of the data for every sampled element.  The coder here is
Beam's ``FastPrimitivesCoder`` (encoding is Beam's, pickle fallback included)
with a size estimate read from the buffers; it subclasses a private impl class,
hence its place in this package.  Registered as Beam's fallback coder by
``install()`` (``install_on_driver``), before the pipeline is built.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from curate.transforms import spill

_SIZE_SAMPLE = 16


def cheap_size(value) -> int | None:
    """Approximate encoded bytes of our element shapes, or None for Beam to measure.

    Tuples (NamedTuple blocks too) and lists are summed over their items (a
    long list from its first ``_SIZE_SAMPLE``), batches and arrays by their
    buffers, strings by length."""
    if value is None or isinstance(value, (bool, int, float)):
        return 9
    if isinstance(value, (str, bytes)):
        return len(value) + 2
    if isinstance(value, (pa.RecordBatch, pa.Array, pa.ChunkedArray, np.ndarray)):
        return int(value.nbytes) + 64
    if isinstance(value, (tuple, list)):
        items = value if len(value) <= _SIZE_SAMPLE else value[:_SIZE_SAMPLE]
        total = 0
        for item in items:
            size = cheap_size(item)
            if size is None:
                return None
            total += size
        return 2 + (total if len(items) == len(value) else total * len(value) // len(items))
    return None


_HEAVY = (pa.RecordBatch, pa.Array, pa.ChunkedArray, np.ndarray)


def _carries_payload(value) -> bool:
    """Does ``value`` end in a batch, an array, a NamedTuple block or a long list?

    Our payloads ride last: ``batch``, ``(tag, batch)``, ``(partition, block)``,
    ``(partition, (key, block))``, ``(partition, [pair, ...])``; small
    per-document tuples are left to Beam's compiled size count."""
    for _ in range(3):
        kind = type(value)
        if kind is tuple:
            if not value:
                return False
            value = value[-1]
        elif kind is list:
            return len(value) > 4 * _SIZE_SAMPLE
        else:
            return isinstance(value, _HEAVY) or isinstance(value, tuple)
    return False


class _SizeEstimatingImpl(beam.coders.coder_impl.FastPrimitivesCoderImpl):
    def get_estimated_size_and_observables(self, value, nested=False):
        size = cheap_size(value) if _carries_payload(value) else None
        if size is None:
            return super().get_estimated_size_and_observables(value, nested)
        return size, []

    def estimate_size(self, value, nested=False):
        size = cheap_size(value) if _carries_payload(value) else None
        return super().estimate_size(value, nested) if size is None else size


class _SpillingPickleImpl(beam.coders.coder_impl.CoderImpl):
    """Beam's pickle fallback (``CallbackCoderImpl`` of ``PickleCoder``), whose large
    payloads (set blocks, pair blocks: numpy arrays in NamedTuples) cross a local
    runner's data plane as spill-file references, as batches do (``transforms/spill.py``).
    The bytes are length-prefixed in both cases, as Beam writes them nested."""

    def __init__(self, pickled):
        self.pickled = pickled

    def encode_to_stream(self, value, stream, nested):
        stream.write(self.encode(value), nested)

    def decode_from_stream(self, stream, nested):
        return self.decode(stream.read_all(nested))

    def encode(self, value):
        data = self.pickled.encode(value)
        return spill.maybe_spill(data) or data

    def decode(self, encoded):
        return self.pickled.decode(
            spill.read_reference(encoded).to_pybytes() if spill.is_reference(encoded) else encoded
        )

    def estimate_size(self, value, nested=False):
        return self.pickled.estimate_size(value, nested)


class SizeEstimatingCoder(beam.coders.FastPrimitivesCoder):
    """Beam's coder for untyped elements, with element sizes estimated from buffers.

    Beam samples the size of elements for its counters by encoding them: an
    untyped element holding a batch or a numpy block (a ``(tag, batch)`` pair,
    a set block) was pickled only to be measured.  Encoding itself is Beam's
    (pickle fallback), except that a large pickle spills to a file when the run
    spills batches (``_SpillingPickleImpl``)."""

    def _create_impl(self):
        return _SizeEstimatingImpl(_SpillingPickleImpl(self._fallback_coder.get_impl()))


def install() -> None:
    """Make it Beam's fallback coder for elements without a registered coder (idempotent)."""
    if not installed():
        beam.coders.registry.register_fallback_coder(SizeEstimatingCoder())


def installed() -> bool:
    return isinstance(beam.coders.registry.get_coder(beam.typehints.Any), SizeEstimatingCoder)
