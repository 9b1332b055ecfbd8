"""Fewer copies of encoded chunks in the FnApiRunner's data plane (apache-beam 2.77).

With one in-process worker (the DirectRunner's ``in_memory`` mode, what
``curate run`` uses on a laptop), every fusion break sends its elements
through ``InMemoryDataChannel``.  Beam wraps each chunk in a protobuf
``Elements.Data`` message, which copies the bytes in, copies them out again on
every ``.data`` read, and the runner first concatenates a whole PCollection
into one ``OutputStream`` (two more copies) before sending it.  An Arrow batch
of documents crosses a fusion break as megabytes of IPC bytes, so those copies
are page faults and system time proportional to the corpus.

1. The in-memory channel carries the same chunks as plain objects
   (``InMemoryData``: instruction id, transform id, bytes), and the runner
   sends the chunks its buffers already hold one by one, each a whole number
   of encoded elements, as the gRPC path also does.  The consumers in
   ``fn_runner``, ``execution`` and ``bundle_processor`` test
   ``isinstance(x, beam_fn_api_pb2.Elements.Data)``; those three modules see
   a view of ``beam_fn_api_pb2`` in which ``Elements.Data`` is the pair of
   both types (everything else is the real module).  gRPC channels are
   untouched.
2. A ``GroupByKey``'s output (``GroupingBuffer.partition``, on any
   FnApiRunner) is cut into chunks of ``GROUPED_CHUNK_BYTES`` between keys
   instead of one stream per worker that grows by doubling to the size of the
   whole PCollection and is then copied out.

What it is worth today: ``benchmarks/results/paired_patches.md``; its history:
``benchmarks/results/performance_notes.md``.

Same kept, rejected and funnel output.  ``install`` checks the Beam
internals it replaces and leaves Beam alone if they differ.
"""

from __future__ import annotations

import logging
import types

from apache_beam.coders.coder_impl import create_OutputStream
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.portability.fn_api_runner import execution, fn_runner
from apache_beam.runners.worker import bundle_processor, data_plane
from apache_beam.transforms import trigger
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils import windowed_value

_LOG = logging.getLogger(__name__)


class InMemoryData:
    """What ``Elements.Data`` carries, without the protobuf copy."""

    __slots__ = ("instruction_id", "transform_id", "data", "is_last")

    def __init__(self, instruction_id: str, transform_id: str, data: bytes):
        self.instruction_id, self.transform_id, self.data, self.is_last = instruction_id, transform_id, data, False


DATA_TYPES = (beam_fn_api_pb2.Elements.Data, InMemoryData)


class _ProtoView(types.ModuleType):
    """``beam_fn_api_pb2`` as the consumers see it: ``Elements.Data`` also matches ``InMemoryData``."""

    Elements = types.SimpleNamespace(Data=DATA_TYPES, Timers=beam_fn_api_pb2.Elements.Timers)

    def __getattr__(self, name):
        return getattr(beam_fn_api_pb2, name)


_CONSUMERS = (fn_runner, execution, bundle_processor)
_ORIGINAL = {
    "input_elements": data_plane.InMemoryDataChannel.input_elements,
    "output_stream": data_plane.InMemoryDataChannel.output_stream,
    "send": fn_runner.BundleManager._send_input_to_worker,
    "partition": execution.GroupingBuffer.partition,
}
GROUPED_CHUNK_BYTES = 8 << 20


def _input_elements(self, instruction_id, unused_expected_inputs, abort_callback=None):
    """Beam's ``InMemoryDataChannel.input_elements``, also yielding ``InMemoryData``."""
    other_inputs = []
    for element in self._inputs:
        if element.instruction_id == instruction_id:
            if isinstance(element, beam_fn_api_pb2.Elements.Timers):
                if not element.is_last:
                    yield element
            elif isinstance(element, DATA_TYPES):
                if element.data or element.is_last:
                    yield element
        else:
            other_inputs.append(element)
    self._inputs = other_inputs


def _output_stream(self, instruction_id, transform_id):
    """Beam's ``InMemoryDataChannel.output_stream``: each flushed chunk as ``InMemoryData``."""
    inverse_inputs = self._inverse._inputs  # pylint: disable=protected-access

    def add_to_inverse_output(data: bytes) -> None:
        if data:  # empty chunks were appended and then skipped by input_elements
            inverse_inputs.append(InMemoryData(instruction_id, transform_id, data))

    return data_plane.ClosableOutputStream.create(
        add_to_inverse_output, add_to_inverse_output, self._data_buffer_time_limit_ms
    )


def _send_input_to_worker(self, process_bundle_id, read_transform_id, byte_streams):
    """The runner's buffered chunks go to an in-memory worker as they are, not concatenated."""
    data_conn = self._worker_handler.data_conn
    if not isinstance(data_conn, data_plane.InMemoryDataChannel):
        return _ORIGINAL["send"](self, process_bundle_id, read_transform_id, byte_streams)
    worker_inputs = data_conn.inverse()._inputs  # pylint: disable=protected-access
    for chunk in byte_streams or []:
        if chunk:
            worker_inputs.append(InMemoryData(process_bundle_id, read_transform_id, bytes(chunk)))
    return None


def _grouped_partition(self, n: int) -> list[list[bytes]]:
    """Beam's ``GroupingBuffer.partition``, each worker's share as chunks of about
    ``GROUPED_CHUNK_BYTES`` cut between keys (a chunk holds whole elements)."""
    if not self._grouped_output:
        if self._windowing.is_default():
            globally_window = GlobalWindows.windowed_value(
                None,
                timestamp=GlobalWindow().max_timestamp(),
                pane_info=windowed_value.PaneInfo(
                    is_first=True,
                    is_last=True,
                    timing=windowed_value.PaneInfoTiming.ON_TIME,
                    index=0,
                    nonspeculative_index=0,
                ),
            ).with_value

            def windowed_key_values(key, values):
                return [globally_window((key, values))]
        else:
            windowed_key_values = trigger.create_trigger_driver(self._windowing, True).process_entire_key
        coder_impl = self._post_grouped_coder.get_impl()
        key_coder_impl = self._key_coder.get_impl()
        grouped: list[list[bytes]] = [[] for _ in range(n)]
        streams = [create_OutputStream() for _ in range(n)]
        for idx, (encoded_key, windowed_values) in enumerate(self._table.items()):
            key = key_coder_impl.decode(encoded_key)
            ix = idx % n
            for wkvs in windowed_key_values(key, windowed_values):
                coder_impl.encode_to_stream(wkvs, streams[ix], True)
            if streams[ix].size() >= GROUPED_CHUNK_BYTES:
                grouped[ix].append(streams[ix].get())
                streams[ix] = create_OutputStream()
        for ix, stream in enumerate(streams):
            if stream.size() or not grouped[ix]:  # Beam gives every worker at least one (maybe empty) chunk
                grouped[ix].append(stream.get())
        self._grouped_output = grouped
        self._table.clear()
    return self._grouped_output


def _compatible() -> bool:
    """The internals replaced here exist as in apache-beam 2.77."""
    channel = data_plane.InMemoryDataChannel
    return (
        all(getattr(module, "beam_fn_api_pb2", None) is beam_fn_api_pb2 for module in _CONSUMERS)
        and all(callable(getattr(channel, name, None)) for name in ("input_elements", "output_stream", "inverse"))
        and "_inputs" in vars(channel(None))
        and callable(getattr(fn_runner.BundleManager, "_send_input_to_worker", None))
        and all(hasattr(execution.GroupingBuffer, name) for name in ("partition", "append", "__iter__"))
    )


def install() -> bool:
    """Install on this process (idempotent); False, with a log line, if Beam's internals changed."""
    if installed():
        return True
    if not _compatible():
        _LOG.info("apache-beam's in-memory data plane differs from 2.77's: left as it is")
        return False
    data_plane.InMemoryDataChannel.input_elements = _input_elements
    data_plane.InMemoryDataChannel.output_stream = _output_stream
    fn_runner.BundleManager._send_input_to_worker = _send_input_to_worker
    execution.GroupingBuffer.partition = _grouped_partition
    for module in _CONSUMERS:
        module.beam_fn_api_pb2 = _ProtoView(beam_fn_api_pb2.__name__)
    return True


def uninstall() -> None:
    """Back to Beam's own code (for tests that compare the two)."""
    data_plane.InMemoryDataChannel.input_elements = _ORIGINAL["input_elements"]
    data_plane.InMemoryDataChannel.output_stream = _ORIGINAL["output_stream"]
    fn_runner.BundleManager._send_input_to_worker = _ORIGINAL["send"]
    execution.GroupingBuffer.partition = _ORIGINAL["partition"]
    for module in _CONSUMERS:
        module.beam_fn_api_pb2 = beam_fn_api_pb2


def installed() -> bool:
    return data_plane.InMemoryDataChannel.output_stream is _output_stream
