"""pipelines.data_plane_copies: fewer copies of encoded chunks, same elements.

A pipeline with a shuffle, a side input, a multi-output ParDo and chunks
larger than the 10 MB flush threshold runs on the DirectRunner's in-memory
mode with Beam's own code and with ours; both must give the results computed
here in plain Python, and ours must actually have carried the data.  The
grouped output in chunks is compared byte for byte with Beam's one stream.
"""

from __future__ import annotations

import hashlib

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.worker import data_plane
from apache_beam.testing.util import assert_that, equal_to

from curate.pipelines.beam import data_plane_copies as plane
from curate.pipelines.beam.local_runner import LocalRunner

KEYS = 7
PAYLOAD = 40_000  # bytes per element: 1,200 elements are ~48 MB, several flushes per fusion break
ELEMENTS = 1_200


def _payload(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=64).digest() * (PAYLOAD // 64)


def _expected():
    by_key: dict[int, list[str]] = {}
    for i in range(ELEMENTS):
        by_key.setdefault(i % KEYS, []).append(hashlib.sha1(_payload(i)).hexdigest())
    total = sum(len(_payload(i)) for i in range(ELEMENTS))
    groups = [(k, sorted(v), total) for k, v in by_key.items()]
    odd = sorted(hashlib.sha1(_payload(i)).hexdigest() for i in range(ELEMENTS) if i % 2)
    return groups, odd


class SplitOdd(beam.DoFn):
    def process(self, element):
        i, payload = element
        if i % 2:
            yield beam.pvalue.TaggedOutput("odd", payload)
        yield i % KEYS, payload


def _run_and_check():
    groups, odd = _expected()
    options = PipelineOptions(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    with beam.Pipeline(runner=LocalRunner(), options=options) as p:
        items = p | beam.Create(list(range(ELEMENTS))) | beam.Reshuffle() | beam.Map(lambda i: (i, _payload(i)))
        split = items | beam.ParDo(SplitOdd()).with_output_types(beam.typehints.Any).with_outputs("odd", main="keyed")
        total = split.keyed | beam.Map(lambda kv: len(kv[1])) | beam.CombineGlobally(sum)
        grouped = (
            split.keyed
            | beam.GroupByKey()
            | beam.Map(
                lambda kv, size: (kv[0], sorted(hashlib.sha1(v).hexdigest() for v in kv[1]), size),
                size=beam.pvalue.AsSingleton(total),
            )
        )
        assert_that(grouped, equal_to(groups), label="groups")
        odd_hashes = split.odd | beam.Map(lambda v: hashlib.sha1(v).hexdigest())
        assert_that(odd_hashes, equal_to(odd), label="odd")


@pytest.fixture
def beams_own_plane():
    was = plane.installed()
    plane.uninstall()
    yield
    if was:
        plane.install()


def test_same_results_with_beams_plane_and_ours(beams_own_plane, monkeypatch):
    _run_and_check()  # Beam's own

    carried = []

    class Counted(plane.InMemoryData):
        __slots__ = ()

        def __init__(self, instruction_id, transform_id, data):
            carried.append(len(data))
            super().__init__(instruction_id, transform_id, data)

    monkeypatch.setattr(plane, "InMemoryData", Counted)
    assert plane.install() and plane.installed()
    _run_and_check()
    assert sum(carried) > ELEMENTS * PAYLOAD * 2, "our data plane did not carry the elements"
    assert max(carried) > 10 << 20 or len(carried) > 10, "expected several large chunks"


def test_install_is_idempotent_and_uninstall_restores_beam(beams_own_plane):
    assert not plane.installed()
    assert data_plane.InMemoryDataChannel.output_stream is plane._ORIGINAL["output_stream"]
    assert plane.install() and plane.install() and plane.installed()
    assert isinstance(fn_runner.beam_fn_api_pb2, plane._ProtoView)
    plane.uninstall()
    assert fn_runner.beam_fn_api_pb2 is plane.beam_fn_api_pb2 and not plane.installed()


def test_leaves_beam_alone_when_its_internals_differ(beams_own_plane, monkeypatch):
    monkeypatch.setattr(fn_runner, "beam_fn_api_pb2", object())
    assert plane.install() is False
    assert not plane.installed()
    assert data_plane.InMemoryDataChannel.input_elements is plane._ORIGINAL["input_elements"]


def test_running_a_curate_pipeline_installs_it(beams_own_plane):
    from curate.pipelines.build import _run_pipeline

    p = beam.Pipeline(runner=LocalRunner())
    p | beam.Create([1, 2]) | beam.Map(lambda x: x)
    _run_pipeline(p)
    assert plane.installed()


@pytest.mark.parametrize("workers", [1, 3])
def test_grouped_output_in_chunks_holds_the_same_elements_as_beams(beams_own_plane, monkeypatch, workers):
    """GroupingBuffer.partition: our chunks, joined, are Beam's one stream per worker, byte for byte."""
    from apache_beam import coders
    from apache_beam.coders.coder_impl import create_InputStream
    from apache_beam.runners.portability.fn_api_runner import execution
    from apache_beam.transforms import core
    from apache_beam.transforms.window import GlobalWindows

    kv = coders.TupleCoder([coders.StrUtf8Coder(), coders.BytesCoder()])
    pre = coders.WindowedValueCoder(kv, coders.coders.GlobalWindowCoder())
    post = coders.WindowedValueCoder(
        coders.TupleCoder([coders.StrUtf8Coder(), coders.IterableCoder(coders.BytesCoder())]),
        coders.coders.GlobalWindowCoder(),
    )
    encoded = b"".join(
        pre.get_impl().encode_nested(GlobalWindows.windowed_value((f"k{i % 23}", _payload(i)[: 500 + i])))
        for i in range(600)
    )

    def grouped(partition):
        buffer = execution.GroupingBuffer(pre, post, core.Windowing(GlobalWindows()))
        buffer.append(encoded)
        monkeypatch.setattr(execution.GroupingBuffer, "partition", partition)
        return buffer.partition(workers)

    monkeypatch.setattr(plane, "GROUPED_CHUNK_BYTES", 40_000)
    beams, ours = grouped(plane._ORIGINAL["partition"]), grouped(plane._grouped_partition)
    assert [len(chunks) for chunks in beams] == [1] * workers
    assert sum(len(chunks) for chunks in ours) > 2 * workers, "expected several chunks per worker"
    assert [b"".join(chunks) for chunks in ours] == [b"".join(chunks) for chunks in beams]
    impl = post.get_impl()
    for chunks in ours:  # every chunk decodes on its own: whole elements, each key once
        keys = []
        for chunk in chunks:
            stream = create_InputStream(chunk)
            while stream.size() > 0:
                keys.append(impl.decode_from_stream(stream, True).value[0])
        assert len(keys) == len(set(keys))
