"""Map batches in threads of the runner's process: cheap to start, shared memory, one core for
Python code at a time (the GIL), which suits steps that wait on I/O."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from lokki_sam.execution import RunContext
from lokki_sam.executors.base import MapExecutor, RunnerHooks
from lokki_sam.executors.units import Batch, BatchDone, UnitHooks, run_unit
from lokki_sam.ir import MapBlock


class ThreadExecutor(MapExecutor):
    def __init__(
        self, ctx: RunContext, block: MapBlock, units: list[list[Batch]], workers: int, hooks: RunnerHooks
    ) -> None:
        super().__init__(units, workers)
        self.ctx, self.block, self.hooks = ctx, block, hooks
        self._stop = threading.Event()  # workers stop between batches
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[list[BatchDone]]] = []

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"lokki-{self.block.id}")
        self._pending = [self._pool.submit(self._run, unit) for unit in self.units]

    def results(self) -> Iterator[list[BatchDone]]:
        for future in as_completed(self._pending):
            yield future.result()

    def close(self, *, abort: bool, interrupt: bool) -> None:
        if abort:  # a thread cannot be interrupted: the batches running finish, then are written
            self._stop.set()
            for future in self._pending:
                future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _run(self, unit: list[Batch]) -> list[BatchDone]:
        done: list[BatchDone] = []
        hooks = UnitHooks(self._stop.is_set, self.hooks.on_retry, self.hooks.sleep, done.extend)
        run_unit(self.ctx, self.block, unit, hooks)
        return done
