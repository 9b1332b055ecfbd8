"""Live counts for the console, written where the counting happens.

``CountDocs`` adds each batch's documents here; at most once a second a
process writes its running totals to ``<dir>/_progress-<pid>-<token>.json``
(write, then rename: a reader never sees half a file).  The driver sums every
process's file (``pipelines/progress.py``): in-process workers, the
multi-processing DirectRunner's worker processes and Dask workers on this
machine all write into the run's local staging folder.  Runners on other
machines get no live view (the staging folder is remote); the funnel is the
record either way, these counts only show the run moving.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

FLUSH_SECONDS = 1.0
PREFIX = "_progress-"


class _Totals:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, dict[str, int]] = {}  # directory -> "stage\tkind" -> docs
        self.last = 0.0
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def add(self, directory: str, keys, docs: int) -> None:
        with self.lock:
            bucket = self.counts.setdefault(directory, {})
            for stage, kind in keys:  # all keys of one batch before any flush: a view never sees half
                key = f"{stage}\t{kind}"
                bucket[key] = bucket.get(key, 0) + docs
            now = time.monotonic()
            if now - self.last < FLUSH_SECONDS:
                return
            self.last = now
            snapshot = {d: dict(c) for d, c in self.counts.items()}
        for d, counts in snapshot.items():
            _write(d, self.token, counts)


def _write(directory: str, token: str, counts: dict) -> None:
    path = os.path.join(directory, f"{PREFIX}{token}.json")
    try:
        with open(path + ".tmp", "w") as handle:
            json.dump(counts, handle)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # the run went on; the console view is best effort


_TOTALS = _Totals()


def add(directory: str | None, keys, docs: int) -> None:
    """``docs`` more documents under every (stage, kind) of ``keys``."""
    if directory:
        _TOTALS.add(directory, keys, docs)


def read(directory: str) -> dict[tuple[str, str], int]:
    """Every process's latest totals, summed: (stage, kind) -> documents."""
    totals: dict[tuple[str, str], int] = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return totals
    for name in names:
        if not (name.startswith(PREFIX) and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(directory, name)) as handle:
                counts = json.load(handle)
        except (OSError, ValueError):
            continue
        for key, docs in counts.items():
            stage, kind = key.split("\t", 1)
            totals[(stage, kind)] = totals.get((stage, kind), 0) + int(docs)
    return totals
