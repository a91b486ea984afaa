"""The default executor: a map starts on one thread, and moves to worker processes only if
that probe shows it needs them.

Threads suit steps that wait (a service, a file, a subprocess): many run at once on one core.
Processes suit steps that compute in Python: the GIL lets one thread at a time run Python code,
so a CPU-bound map gets one core from threads, every core from processes, at the price of
starting them. Which one a map is cannot be known before it runs, so a map first runs on one
thread for PROBE_SECONDS. If by then it has finished, or kept the CPU less than CPU_BOUND busy,
or what is left is less than WORTH_SECONDS of one core's work, it goes on in threads (all of
them); else the batches no thread has started run in worker processes, while the probe thread
finishes the batch it runs.

Under the fork start method the workers are forked before the probe thread starts (a fork
while another thread runs user code can copy a lock that thread holds); a map that stays in
threads lets them go. Spawn and forkserver workers start when needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from multiprocessing.context import DefaultContext

from lokki_sam.execution import RunContext
from lokki_sam.executors.base import MapExecutor, RunnerHooks
from lokki_sam.executors.child import ChildSetup
from lokki_sam.executors.processes import ProcessExecutor
from lokki_sam.executors.threads import ThreadExecutor
from lokki_sam.executors.units import Batch, BatchDone
from lokki_sam.ir import FlowGraph, MapBlock

PROBE_SECONDS = 0.2
CPU_BOUND = 0.5  # the probe kept the CPU at least this busy: Python code, which threads serialise
WORTH_SECONDS = 1.0  # one core's work left, at least, to be worth starting processes


class AutoExecutor(MapExecutor):
    def __init__(
        self,
        ctx: RunContext,
        block: MapBlock,
        batches: list[Batch],
        hooks: RunnerHooks,
        context: DefaultContext,
        workers: tuple[int, int],  # (threads, processes)
        processes: tuple[ChildSetup, FlowGraph | None] | str,  # what workers need, or why none can run
        note: Callable[[str, bool], None],  # a line for the user (True: a warning)
    ) -> None:
        self.block, self.hooks, self.context, self.note = block, hooks, context, note
        self.total = len(batches)
        self.threads = ThreadExecutor(ctx, block, batches, workers[0], hooks)
        self.process_workers = min(workers[1], self.total)
        self.planned = processes
        self.processes: ProcessExecutor | None = None
        self.began = self.cpu = 0.0
        self.finished = 0  # batches the probe finished

    def start(self) -> None:
        if self.context.get_start_method() == "fork" and self._may_switch():
            self.processes = self._processes()
            self.processes.start()
        self.began, self.cpu = time.perf_counter(), time.process_time()
        self.threads.start(threads=1)

    def results(self) -> Iterator[list[BatchDone]]:
        for done in self.threads.results(until=self.began + PROBE_SECONDS):
            self.finished += len(done)
            yield done
        if not self.threads.running:
            return  # the probe thread ran the whole map
        if not self._switch():
            self._let_processes_go()
            self.threads.add(self.threads.workers)
            yield from self.threads.results()
            return
        rest = self.threads.hold()
        if self.processes is None:
            self.processes = self._processes()
            self.processes.start()
        self.processes.assign(rest)
        yield from self.processes.results()
        yield from self.threads.results()  # the probe's last batch

    def close(self, *, abort: bool, interrupt: bool) -> None:
        try:
            if self.processes is not None:
                self.processes.close(abort=abort, interrupt=interrupt)
        finally:
            self.threads.close(abort=abort, interrupt=interrupt)

    def _may_switch(self) -> bool:
        return self.process_workers >= 2 and not isinstance(self.planned, str)

    def _processes(self) -> ProcessExecutor:
        assert not isinstance(self.planned, str)
        setup, inherited = self.planned
        return ProcessExecutor(self.block, self.process_workers, self.hooks, self.context, setup, inherited)

    def _let_processes_go(self) -> None:
        if self.processes is not None:
            self.processes.assign([])
            self.processes.close(abort=False, interrupt=False)
            self.processes = None

    def _switch(self) -> bool:
        """Whether the rest of the map runs in processes (and say so, or why it cannot)."""
        elapsed = time.perf_counter() - self.began
        busy = (time.process_time() - self.cpu) / elapsed
        left = len(self.threads.todo)
        if not needs_processes(busy, elapsed, self.finished, left, self.process_workers):
            return False
        probe = f"map '{self.block.id}' kept a core {min(busy, 1.0):.0%} busy on one thread for {elapsed:.1f} s"
        if isinstance(self.planned, str):
            self.note(f"{probe}, but stays in threads: {self.planned}", True)
            return False
        self.note(f"{probe}: its {left} other batch(es) run in {self.process_workers} worker processes", False)
        return True


def needs_processes(busy: float, elapsed: float, finished: int, left: int, workers: int) -> bool:
    """After a probe of `elapsed` seconds on one thread, `busy` the CPU time it used per second,
    `finished` batches done and `left` not started: whether processes would finish the map sooner."""
    per_batch = elapsed / max(1, finished)  # a floor while none has finished
    return workers >= 2 and busy >= CPU_BOUND and left * per_batch >= WORTH_SECONDS
