"""pipelines.beam_fixes: the runner's time-flushed input stream keeps every byte.

Beam's ``TimeBasedBufferingClosableOutputStream`` flushes from a timer thread
with ``callback(get()); _clear()``; bytes written while the callback waits (a
full send queue) are cleared unsent.  These tests hold a flush inside its
callback deterministically (an Event), write meanwhile, and compare what
reached the other side with what was written.
"""

import threading

from apache_beam.runners.worker.data_plane import TimeBasedBufferingClosableOutputStream

from curate.pipelines.beam import fixes as beam_fixes


def _write_during_flush(stream_factory):
    """Write b'a'*10, let the timer's flush start and block, write b'b'*10 from another
    thread, release the flush, close; returns (bytes received, writer blocked while flushing)."""
    received, release, flushing = [], threading.Event(), threading.Event()

    def slow_send(data):  # the runner's callback: put on a byte-limited queue that is full
        flushing.set()
        assert release.wait(10)
        received.append(data)

    stream = stream_factory(close_callback=received.append, flush_callback=slow_send, time_flush_threshold_ms=5)
    stream.write(b"a" * 10)
    assert flushing.wait(10), "the periodic flush did not run"
    writer = threading.Thread(target=stream.write, args=(b"b" * 10,))
    writer.start()
    writer.join(0.3)
    waited = writer.is_alive()
    release.set()
    writer.join(10)
    stream.close()
    return b"".join(received), waited


def test_write_waits_for_a_running_flush_and_nothing_is_lost():
    beam_fixes.install()
    got, waited = _write_during_flush(TimeBasedBufferingClosableOutputStream)
    assert got == b"a" * 10 + b"b" * 10
    assert waited, "the write went ahead while a flush was in its callback"


def test_beam_stream_without_the_fix_still_loses_the_write():
    """If this fails, Beam fixed its stream: remove beam_fixes and this test."""
    beam_fixes.install()
    fixed_write = TimeBasedBufferingClosableOutputStream.__dict__["write"]
    del TimeBasedBufferingClosableOutputStream.write
    try:
        got, _ = _write_during_flush(TimeBasedBufferingClosableOutputStream)
    finally:
        TimeBasedBufferingClosableOutputStream.write = fixed_write
    assert got == b"a" * 10, f"Beam's stream kept the write ({got!r}): the fix may be obsolete"


def test_install_is_idempotent_and_running_a_pipeline_installs_it():
    import apache_beam as beam

    from curate.pipelines.build import _run_pipeline

    if beam_fixes.installed():
        del TimeBasedBufferingClosableOutputStream.write  # as Beam ships it
    assert not beam_fixes.installed()
    from curate.pipelines.beam.local_runner import LocalRunner

    p = beam.Pipeline(runner=LocalRunner())
    p | beam.Create([1, 2]) | beam.Map(lambda x: x)
    _run_pipeline(p)
    assert beam_fixes.installed()
    beam_fixes.install()
    assert beam_fixes.installed()
