"""The sandboxes of every function, shared by all the execution environments LocalStack creates.

LocalStack makes one execution environment per concurrent invocation of a function: a map of
600 items started at once means 600 environments. Were each a process of its own, a 2-core
machine would spend itself starting interpreters (and LocalStack's own Step Functions would
time out reaching Lambda). Here an environment is only a handle: an invocation leases a
sandbox of its function from this pool, warm if one is idle, and gives it back afterwards.
At most `size()` sandboxes live at once (busy and idle, all functions); an invocation waits
for room, and when the pool is full of idle sandboxes of other functions, the least recently
used one is ended to make room. Size 0 means no bound (a sandbox per concurrent invocation).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from .sandbox import Sandbox

WAKE_SECONDS = 1.0  # a waiting lease looks at `stopped` at least this often


class Stopped(Exception):
    """The execution environment was stopped while its invocation waited for a sandbox."""


class WorkerPool:
    def __init__(self, size: Callable[[], int]) -> None:
        self._size = size
        self._cond = threading.Condition()
        self._busy = 0
        self._idle: OrderedDict[int, tuple[str, Sandbox]] = OrderedDict()  # least recently used first
        self._users: dict[str, int] = {}  # execution environments per key
        self._waiting = 0  # leases waiting for room

    def join(self, key: str) -> None:
        """An execution environment of `key` started."""
        with self._cond:
            self._users[key] = self._users.get(key, 0) + 1

    def leave(self, key: str) -> None:
        """An execution environment of `key` stopped; the last one takes the key's idle sandboxes with it."""
        with self._cond:
            left = self._users.get(key, 1) - 1
            if left > 0:
                self._users[key] = left
                return
            self._users.pop(key, None)
            ended = self._remove_idle(lambda k: k == key)
        _end(ended)

    def end_matching(self, prefix: str) -> None:
        """End the idle sandboxes of every key starting with `prefix` (a function version removed)."""
        with self._cond:
            ended = self._remove_idle(lambda k: k.startswith(prefix))
        _end(ended)

    def lease(self, key: str, make: Callable[[], Sandbox], stopped: threading.Event) -> tuple[Sandbox, bool]:
        """A sandbox for one invocation of `key`, and whether it is warm. A new one is made by
        `make` (not started) once the pool has room; until then this waits."""
        ended: list[Sandbox] = []
        try:
            with self._cond:
                while True:
                    if stopped.is_set():
                        raise Stopped
                    warm = self._take_idle(key, ended)
                    if warm is not None:
                        self._busy += 1
                        return warm, True
                    if self._has_room():
                        break
                    if self._idle:  # full, partly with other functions' idle sandboxes: end the oldest
                        ended.append(self._idle.popitem(last=False)[1][1])
                        break
                    self._waiting += 1
                    try:
                        self._cond.wait(WAKE_SECONDS)
                    finally:
                        self._waiting -= 1
                self._busy += 1
        finally:
            _end(ended)
        try:
            return make(), False
        except BaseException:
            self.give_back(key, None)
            raise

    def give_back(self, key: str, sandbox: Sandbox | None) -> None:
        """The invocation is over: a sandbox still alive stays warm for the next one of its key."""
        ended: list[Sandbox] = []
        with self._cond:
            self._busy -= 1
            if sandbox is not None:
                if sandbox.alive() and key in self._users:
                    self._idle[id(sandbox)] = (key, sandbox)
                else:
                    ended.append(sandbox)
            self._cond.notify_all()
        _end(ended)

    def counts(self) -> tuple[int, int, int]:
        """(busy, idle, waiting): sandboxes leased and idle, and leases waiting for room, now."""
        with self._cond:
            return self._busy, len(self._idle), self._waiting

    def _has_room(self) -> bool:
        size = self._size()
        return size <= 0 or self._busy + len(self._idle) < size

    def _take_idle(self, key: str, ended: list[Sandbox]) -> Sandbox | None:
        for ident, (owner, sandbox) in reversed(self._idle.items()):  # the warmest first
            if owner != key:
                continue
            del self._idle[ident]
            if sandbox.alive():
                return sandbox
            ended.append(sandbox)  # it exited while idle
            return self._take_idle(key, ended)
        return None

    def _remove_idle(self, matches: Callable[[str], bool]) -> list[Sandbox]:
        gone = [ident for ident, (key, _) in self._idle.items() if matches(key)]
        return [self._idle.pop(ident)[1] for ident in gone]


def _end(sandboxes: list[Sandbox]) -> None:
    for sandbox in sandboxes:
        sandbox.end()
