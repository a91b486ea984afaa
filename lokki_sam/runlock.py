"""One process at a time per local run: an OS lock on the run's lock file, which names its holder.

Two `--resume` of one run at once would both read "not done", both write, and each report
success with the other's items missing. The second one now refuses ("run in use", naming the
holder's pid). The kernel releases the lock of a process that dies (SIGKILL included), so a
stale lock is taken over by the next run without any clean-up. A forked child (a map's worker
process) closes its copy of the lock: the lock stays the runner's, and ends with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO

from lokki_sam.errors import LokkiError, StoreError


class RunInUse(LokkiError):
    """Another live process is running (or resuming) the same run."""


_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()  # the locks this process holds


def _drop_in_child() -> None:
    """In a forked child: let go of the parent's locks without releasing them (flock belongs to
    the open file, which the parent keeps open)."""
    for lock in list(_HELD):
        if lock._file is not None:
            with contextlib.suppress(OSError):
                lock._file.close()
            lock._file = None
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_in_child)


class RunLock:
    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")  # noqa: SIM115  (held open for the lock's lifetime)
        except OSError as exc:  # e.g. --store names a file, or a read-only directory
            raise StoreError(
                f"cannot lock the run: {exc.strerror or exc}",
                where=str(self.path),
                hint="the store (--store, or 'store' in lokki.toml) must be a writable directory",
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _parse(handle.read())
            handle.close()
            raise RunInUse(
                f"run {self.run_id} is in use by process {holder.get('pid', '?')} on {holder.get('host', '?')}",
                where=str(self.path),
                hint="wait for that process to finish, or stop it; then run the command again",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        handle.flush()
        self._file = handle
        _HELD.add(self)

    def release(self) -> None:
        _HELD.discard(self)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.truncate(0)  # the holder's name matters only while it holds the lock
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _parse(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
