"""The console's live view of a run: documents in and kept per stage, docs/s, elapsed, ETA.

Counts come from ``transforms/progress.py`` (written where ``CountDocs`` counts,
in every worker process); the expected total is the input row count, known from
the Parquet footers before the run starts.  On a terminal the block of lines is
redrawn in place twice a second; elsewhere (CI, a log file) one plain line is
printed every ``plain_every`` seconds.  The run ends with the totals.  The
funnel, written after the run, is the record; this only shows the run moving.
"""

from __future__ import annotations

import sys
import threading
import time

from curate.transforms import progress

RAW = ("raw", "kept")


class LiveProgress:
    """``with LiveProgress(staging, input_rows, stage_names):`` around the pipeline's run."""

    def __init__(
        self,
        directory: str | None,
        input_rows: int,
        stages: list[str],
        stream=None,
        tty: bool | None = None,
        plain_every: float = 10.0,
    ):
        self.directory, self.input_rows, self.stages = directory, input_rows, stages
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every = 0.5 if self.tty else plain_every
        self.started = time.monotonic()
        self.read_seconds: float | None = None  # when the last input row was read
        self.drawn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="curate-progress", daemon=True)

    def __enter__(self) -> "LiveProgress":
        if self.directory:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.directory:
            self._stop.set()
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.draw(progress.read(self.directory))

    def lines(self, totals: dict, final: bool = False) -> list[str]:
        elapsed = time.monotonic() - self.started
        read = totals.get(RAW, 0)
        if self.read_seconds is None and self.input_rows and read >= self.input_rows:
            self.read_seconds = elapsed
        # the read rate over the reading time: after the last row, the stages still work
        # and an average over the whole run would only fall
        reading = self.read_seconds if self.read_seconds is not None else elapsed
        rate = read / reading if reading > 0 else 0.0
        share = f" ({100 * read / self.input_rows:.0f}%)" if self.input_rows else ""
        if final:
            eta = "done"
        elif self.read_seconds is not None:
            eta = "all read; stages finishing"
        elif rate > 0 and self.input_rows:
            eta = f"ETA read {max(0.0, (self.input_rows - read) / rate):.0f}s"
        else:
            eta = "ETA -"
        head = f"[curate] {elapsed:6.1f}s  read {read:,}/{self.input_rows:,}{share}  {rate:,.0f} docs/s  {eta}"
        out = [head]
        for name in self.stages:
            seen, kept = self._seen(totals, name), self._kept(totals, name, final)
            out.append(f"[curate]   {name:<20} in {seen:>12,}  kept {kept:>12}")
        return out

    @staticmethod
    def _seen(totals: dict, name: str) -> int:
        """Documents in so far: at least those kept.  A stage's in and kept counts are flushed
        by different steps (and processes) at different moments, so the last flushed in
        can lag the kept; a stage never keeps more than it received."""
        return max(totals.get((name, "in"), 0), totals.get((name, "kept"), 0))

    @staticmethod
    def _kept(totals: dict, name: str, final: bool) -> str:
        """Kept so far; "pending" while none is: the dedup stages decide once they have
        seen every document, and a 0 then reads as if all were dropped."""
        kept = totals.get((name, "kept"), 0)
        return "pending" if not final and kept == 0 and totals.get((name, "in"), 0) else f"{kept:,}"

    def draw(self, totals: dict) -> None:
        lines = self.lines(totals)
        if self.tty:
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        else:
            stages = "; ".join(f"{n} {self._seen(totals, n):,} -> {self._kept(totals, n, False)}" for n in self.stages)
            self.stream.write(f"{lines[0]} | {stages}\n")
        self.stream.flush()

    def finish(self, funnel: dict) -> None:
        """The totals, from the funnel (every count, not the last flushed ones)."""
        totals = {RAW: funnel["raw"]["docs"]}
        for s in funnel["stages"]:
            if s["status"] == "run":
                totals[(s["name"], "in")] = s["in"]["docs"]
                totals[(s["name"], "kept")] = s["kept"]["docs"]
        lines = self.lines(totals, final=True)
        if self.tty and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F" + "".join(f"\x1b[2K{line}\n" for line in lines))
        else:
            self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
