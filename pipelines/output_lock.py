"""One run owns an output folder at a time.

Two runs into one ``OUTPUT`` would otherwise race: the second cleans what it
takes for a killed run's staging (the first run's live ``_tmp-*``), and the
first then publishes an output with whole folders missing.  So a run takes
``OUTPUT/_curate.lock`` before it looks at the folder, holds it until it has
published (or failed), and a second run exits with the holder's pid, host and
start time.

Local disk: the lock is a ``flock`` on that file, held through an open file
descriptor.  The kernel drops it when the holding process dies, however it
dies (``kill -9`` included), so "the lock is free" proves the previous holder
is dead, and only then is its staging removed.  The file's JSON only names
the holder for the message; it is never trusted to decide liveness (a pid can
be reused).  ``flock`` works on local file systems and on NFSv4; on a network
file system without working locks use a local output and copy it.

Object stores (``gs://``, ``s3://`` ...): no locks exist there, so the lock is
a create-if-absent marker checked through Beam's FileSystems: a run that finds
the marker exits naming the holder, and a run that dies leaves the marker,
which the user deletes after checking that the run is gone (the message says
so).  What is not guaranteed: Beam's FileSystems has no atomic create-if-absent,
so two runs started within the same moment can both miss the other's marker.
The published-files conservation check still catches a resulting loss, since
it counts the rows of the files about to be published.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

LOCK_FILE = "_curate.lock"


class OutputLocked(Exception):
    """Another live run holds the output folder."""


class OutputNotWritable(Exception):
    """The output path cannot hold a run's output (a file, no permission, ...)."""


def _is_local(path: str) -> bool:
    return "://" not in path


def check_output_path(output: str) -> None:
    """Refuse an output that is an existing file, or a folder this process cannot write, before any work."""
    if not _is_local(output):
        return
    path = os.path.abspath(output)
    probe = path
    while not os.path.exists(probe):  # the nearest existing ancestor must be a writable folder
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(probe) and not os.path.isdir(probe):
        what = "is an existing file" if probe == path else f"lies under {probe}, which is a file"
        raise OutputNotWritable(f"output {output} {what}, not a folder; choose another --output")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is a folder" if probe == path else f"would be created in {probe}, a folder"
        raise OutputNotWritable(
            f"output {output} {what} without write permission for this user; "
            "choose another --output or fix its permissions"
        )


def _owner_record(run_id: str, staging: str) -> dict:
    return {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "staging": staging,
    }


def describe(owner: dict | None) -> str:
    if not owner:
        return "another run (its lock names no owner yet)"
    return (
        f"run {owner.get('run_id', '?')} (pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, "
        f"started {owner.get('started_utc', '?')})"
    )


class OutputLock:
    """``with OutputLock(output, staging) as lock:`` -- ``lock.previous`` is a dead holder's record, if any."""

    def __init__(self, output: str, staging: str, run_id: str | None = None):
        self.output = output
        self.path = FileSystems.join(output, LOCK_FILE)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.record = _owner_record(self.run_id, staging)
        self.previous: dict | None = None
        self._fd: int | None = None

    # -- local disk -----------------------------------------------------------------------------
    def _acquire_local(self) -> None:
        os.makedirs(self.output, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputNotWritable(f"output {self.output}: cannot create {LOCK_FILE} ({exc.strerror})") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                owner = _read_fd(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise OutputLocked(
                        f"output {self.output} is in use by {describe(owner)}; wait for it to finish or choose "
                        "another --output"
                    ) from None
                raise
            # the holder may have removed the file between our open and our flock: the lock we hold
            # is then on an unlinked file, and a third run could take a new one at the same path
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self.previous = _read_fd(fd) or None  # a dead run's record: its staging may be removed
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(self.record, sort_keys=True) + "\n").encode(), 0)
            self._fd = fd
            return

    # -- object stores: create-if-absent marker (see the module docstring for the limits) ----------------
    def _acquire_marker(self) -> None:
        if FileSystems.exists(self.path):
            try:
                with FileSystems.open(self.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                    owner = json.loads(handle.read().decode("utf-8"))
            except Exception:
                owner = None
            raise OutputLocked(
                f"output {self.output} is in use by {describe(owner)}; if that run is no longer running, "
                f"delete {self.path} and run again"
            )
        with FileSystems.create(self.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write((json.dumps(self.record, sort_keys=True) + "\n").encode())

    def acquire(self) -> "OutputLock":
        if _is_local(self.output):
            self._acquire_local()
        else:
            self._acquire_marker()
        return self

    def release(self) -> None:
        if _is_local(self.output):
            if self._fd is not None:
                try:
                    os.unlink(self.path)  # while still holding it: no one can take a lock we then remove
                except FileNotFoundError:
                    pass
                os.close(self._fd)
                self._fd = None
        else:
            try:
                FileSystems.delete([self.path])
            except Exception:
                pass

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_fd(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, 65536, 0)
        return json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, ValueError):
        return None
