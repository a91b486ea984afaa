"""Map batches in threads of the runner's process: cheap to start, shared memory, one core for
Python code at a time (the GIL), which suits steps that wait on I/O.

Threads pull batches one at a time from a shared queue (no unit is handed out in advance, so
threads can be added, or the rest taken away, while the map runs: `executors/auto.py`), and
deliver what they store at every write (`units.run_unit`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterator

from lokki_sam.execution import RunContext
from lokki_sam.executors.base import MapExecutor, RunnerHooks
from lokki_sam.executors.units import Batch, BatchDone, UnitHooks, run_unit
from lokki_sam.ir import MapBlock


class _Ended:
    """A thread's last delivery: it ran out of batches (error None) or raised `error`."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class ThreadExecutor(MapExecutor):
    def __init__(
        self, ctx: RunContext, block: MapBlock, batches: list[Batch], workers: int, hooks: RunnerHooks
    ) -> None:
        self.ctx, self.block, self.hooks = ctx, block, hooks
        self.workers = min(workers, len(batches))
        self.todo: deque[Batch] = deque(batches)
        self._stop = threading.Event()  # threads stop between batches
        self._held = threading.Event()  # no thread takes another batch (the rest goes elsewhere)
        self._delivered: queue.SimpleQueue[list[BatchDone] | _Ended] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._running = 0  # threads that have not delivered their end yet

    def start(self, threads: int | None = None) -> None:
        self.add(self.workers if threads is None else threads)

    def add(self, threads: int) -> None:
        for _ in range(min(threads, self.workers - len(self._threads))):
            thread = threading.Thread(target=self._run, name=f"lokki-{self.block.id}-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            self._running += 1
            thread.start()

    def hold(self) -> list[Batch]:
        """Take away the batches no thread has started; the threads finish what they run."""
        self._held.set()
        rest = []
        while True:
            try:
                rest.append(self.todo.popleft())
            except IndexError:
                return rest

    def results(self, until: float | None = None) -> Iterator[list[BatchDone]]:
        """What the threads store, as they write it, until they have all ended (or, with `until`,
        a `time.perf_counter()` deadline, until then)."""
        while self._running:
            wait = None if until is None else until - time.perf_counter()
            if wait is not None and wait <= 0:
                return
            try:
                delivered = self._delivered.get(timeout=wait)
            except queue.Empty:
                return
            if isinstance(delivered, _Ended):
                self._running -= 1
                if delivered.error is not None:
                    raise delivered.error
                continue
            yield delivered

    @property
    def running(self) -> int:
        return self._running

    def close(self, *, abort: bool, interrupt: bool) -> None:
        if abort:  # a thread cannot be interrupted: the batches running finish, then are written
            self._stop.set()
        for thread in self._threads:
            thread.join()

    def _pull(self) -> Iterator[Batch]:
        while not self._held.is_set():
            try:
                yield self.todo.popleft()
            except IndexError:
                return

    def _run(self) -> None:
        budget = self.hooks.budget
        hooks = UnitHooks(self._stopped, self.hooks.on_retry, self.hooks.sleep, self._deliver, budget.spend)
        try:
            run_unit(self.ctx, self.block, self._pull(), hooks)
        except BaseException as exc:
            self._delivered.put(_Ended(exc))
        else:
            self._delivered.put(_Ended())

    def _stopped(self) -> bool:
        return self._stop.is_set() or self.hooks.budget.exceeded

    def _deliver(self, done: list[BatchDone]) -> None:
        if done:
            self._delivered.put(list(done))
