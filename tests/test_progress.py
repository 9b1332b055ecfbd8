"""The console while a run works: a live view per stage on a terminal, plain lines elsewhere,
the totals at the end, and no Beam INFO chatter at the default log level."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
from pathlib import Path

from conftest import CURATE


def _stage_names(out: Path) -> list[str]:
    return [s["name"] for s in json.loads((out / "funnel.json").read_text())["stages"] if s["status"] == "run"]


def test_on_a_terminal_the_view_is_redrawn_in_place_and_ends_with_the_totals(tmp_path):
    out = tmp_path / "out"
    leader, follower = pty.openpty()
    proc = subprocess.Popen([CURATE, "run", "--output", str(out)], stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text[-2000:]
    assert "\x1b[2K" in text  # lines rewritten in place, not appended
    final = text[text.rindex("[curate] ", 0, text.rindex("docs/s  done")) :]  # the last view, head line included
    funnel = json.loads((out / "funnel.json").read_text())
    for stage in funnel["stages"]:
        if stage["status"] == "run":
            assert stage["name"] in final
            assert f"kept {stage['kept']['docs']:>12,}" in final  # the totals, from the funnel
    assert f"read {funnel['raw']['docs']:,}/{funnel['raw']['docs']:,} (100%)" in final


def test_without_a_terminal_plain_lines_name_every_stage_and_no_beam_info_reaches_the_console(tmp_path):
    out = tmp_path / "out"
    # two SDK worker processes: their bootstrap logging must not reach the console either
    done = subprocess.run(
        [CURATE, "run", "--output", str(out), "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\x1b[" not in done.stderr
    for name in _stage_names(out):
        assert f"[curate]   {name}" in done.stderr
    assert "done" in done.stderr
    beam_info = [line for line in done.stderr.splitlines() if "INFO" in line and not line.startswith("[curate]")]
    assert beam_info == []
    assert "apitools" not in done.stderr and "Discarding unparseable args" not in done.stderr


def test_quiet_prints_no_progress(tmp_path):
    done = subprocess.run(
        [CURATE, "run", "--output", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and "[curate]" not in done.stderr, done.stderr


def test_rate_eta_and_pending_stages_while_the_run_works():
    import io

    from curate.pipelines.progress import RAW, LiveProgress

    view = LiveProgress(None, 1000, ["near_dedup", "quality"], stream=io.StringIO(), tty=False)
    view.started -= 10.0  # ten seconds in
    reading = {RAW: 500, ("near_dedup", "in"): 500, ("quality", "in"): 0}
    head, dedup, quality = view.lines(reading)
    assert "read 500/1,000 (50%)" in head and "ETA read" in head and view.read_seconds is None
    assert dedup.split()[-1] == "pending" and quality.split()[-1] == "0"  # a dedup stage decides at the end
    done = {RAW: 1000, ("near_dedup", "in"): 1000, ("near_dedup", "kept"): 400, ("quality", "in"): 400}
    head = view.lines(done)[0]
    assert "all read; stages finishing" in head and view.read_seconds is not None
    rate = re.search(r"([\d,]+) docs/s", head).group(1)
    view.started -= 30.0  # later: the read rate stays what it was when reading ended
    assert re.search(r"([\d,]+) docs/s", view.lines(done)[0]).group(1) == rate != "0"
    final = view.lines({**done, ("quality", "kept"): 0}, final=True)
    assert "done" in final[0] and final[1].split()[-1] == "400" and final[2].split()[-1] == "0"


def test_a_stage_never_shows_more_kept_than_in():
    """In and kept are flushed at different moments; a lagging in count must not show a
    stage keeping more than it received (terminal view and plain lines)."""
    import io

    from curate.pipelines.progress import RAW, LiveProgress

    lagging = {RAW: 900, ("quality", "in"): 300, ("quality", "kept"): 350}
    stream = io.StringIO()
    view = LiveProgress(None, 1000, ["quality"], stream=stream, tty=False)
    line = view.lines(lagging)[1].split()
    assert line[line.index("in") + 1] == "350" and line[-1] == "350"
    view.draw(lagging)
    assert "quality 350 -> 350" in stream.getvalue()
