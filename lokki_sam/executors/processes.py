"""Map batches in worker processes: every core runs Python code, and items share no memory (as
in the cloud, where each batch is its own Lambda invocation or Batch job).

A small pool on `multiprocessing`'s processes and pipes rather than `ProcessPoolExecutor`: a
worker here streams what it stores and its retries as they happen, a Ctrl-C interrupts the step
it runs without a traceback, and a worker that dies (out of memory, `os._exit`, a crash in C)
fails only the batch it was running: its other batches go to a new worker, where
ProcessPoolExecutor breaks the whole pool.

Each worker takes a unit of batches at a time; the parent reports progress, retries and
failures exactly as for threads, and writes the failure records.
"""

from __future__ import annotations

import contextlib
import multiprocessing.sharedctypes  # noqa: F401  (RawArray's module, loaded once with this one)
import os
import pickle
import signal
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import connection
from multiprocessing.context import DefaultContext
from multiprocessing.process import BaseProcess
from typing import Any

from lokki_sam.errors import LokkiError
from lokki_sam.execution import RunContext
from lokki_sam.executors import child
from lokki_sam.executors.base import MapExecutor, RunnerHooks
from lokki_sam.executors.portable import PortableError
from lokki_sam.executors.units import Batch, BatchDone, split_units
from lokki_sam.ir import FlowGraph, MapBlock

UNITS_PER_WORKER = 16  # units a worker takes in turn: few messages, and every worker busy to the end
MAX_DEATHS_OUTSIDE_BATCHES = 3


class WorkerDied(Exception):
    """The process running a batch ended without finishing it (killed, out of memory, crashed)."""


def plan(
    ctx: RunContext, block: MapBlock, context: DefaultContext, real_sleep: bool
) -> tuple[child.ChildSetup, FlowGraph | None] | str:
    """What the workers of `block` need (the setup, and the graph a forked child inherits), or
    why the map cannot run in worker processes."""
    inherits = context.get_start_method() == "fork"
    address: child.FlowAddress | None = None
    if not inherits:
        found = child.FlowAddress.of(ctx.graph)
        if isinstance(found, str):
            return f"{found}; the {context.get_start_method()} start method needs it (fork does not)"
        address = found
    try:
        pickle.dumps(ctx.store)
    except Exception:
        where = ctx.store.describe(ctx.run_id)
        return f"its store ({where}) cannot be opened by another process; use a local directory"
    setup = child.ChildSetup(
        address,
        block.id,
        ctx.store,
        ctx.run_id,
        dict(ctx.params),
        ctx.execution,
        dict(ctx.reruns),
        dict(ctx.fingerprints) if ctx.fingerprints is not None else None,
        os.getpid(),
        context.get_start_method() != "forkserver",
        real_sleep,
        _same_file(1, 2),
        None if inherits else dict(os.environ),
    )
    if not inherits:
        try:
            pickle.dumps(setup)
        except Exception as exc:
            return f"the run's parameters cannot be sent to another process ({type(exc).__name__}: {exc})"
    return setup, ctx.graph if inherits else None


def _same_file(a: int, b: int) -> bool:
    try:
        one, two = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


@dataclass
class _Worker:
    process: BaseProcess
    conn: connection.Connection
    slot: int
    ready: bool = False
    unit: int | None = None  # the index of the unit it runs
    reported: set[int] = field(default_factory=set)  # positions of that unit's batches reported


class ProcessExecutor(MapExecutor):
    """`workers` worker processes; the batches are given with `assign` (before or after `start`:
    the auto executor starts its workers before it knows which batches they will run)."""

    def __init__(
        self,
        block: MapBlock,
        workers: int,
        hooks: RunnerHooks,
        context: DefaultContext,
        setup: child.ChildSetup,
        inherited: FlowGraph | None,
    ) -> None:
        self.block, self.workers, self.hooks, self.context = block, workers, hooks, context
        self.setup, self.inherited = setup, inherited
        self.units: list[list[Batch]] = []  # a dead worker's unfinished batches become a new unit
        self.queue: deque[int] = deque()
        self.open_units = 0
        self.assigned = False
        self.live: dict[int, _Worker] = {}  # by slot
        self.retired: list[_Worker] = []
        self.stopping = False
        self.deaths = 0  # workers that died outside a batch: their batches are given again
        self.shared: Any = context.RawArray("q", child.shared_size(max(1, workers)))
        self.shared[child.TOTAL] = hooks.budget.total

    def assign(self, batches: list[Batch]) -> None:
        """The batches to run, in units of several: each worker takes one unit at a time."""
        self.shared[child.EARLIER] = self.hooks.budget.failed  # failures in the auto executor's threads
        self.units = split_units(batches, max(1, self.workers), UNITS_PER_WORKER)
        self.queue = deque(range(len(self.units)))
        self.open_units = len(self.units)
        self.assigned = True
        for worker in list(self.live.values()):
            if worker.ready and worker.unit is None:  # ready before there was work for it
                self._next(worker)

    def start(self) -> None:
        for slot in range(self.workers):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        self.shared[child.position_slot(slot)] = child.IDLE
        mine, theirs = self.context.Pipe()
        process = self.context.Process(
            target=child.main,
            args=(self.setup, self.inherited, theirs, self.shared, slot),
            name=f"lokki-{self.block.id}-{slot}",
        )
        process.start()
        theirs.close()  # the child's end lives in the child only: its death reads as end of file here
        self.live[slot] = _Worker(process, mine, slot)

    def close(self, *, abort: bool, interrupt: bool) -> None:
        """Tell every worker to finish; on abort, to stop between batches; on an interrupt, to
        stop the batch it runs. Its last writes are waited for; a second Ctrl-C kills them."""
        self.stopping = True
        if abort:
            self.shared[child.STOP] = 1
        for worker in self.live.values():
            if interrupt:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(_pid(worker), signal.SIGINT)
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        try:
            self._drain()
        except BaseException:
            for worker in self.live.values():
                worker.process.kill()
            self._drain()
            raise
        finally:
            for worker in [*self.retired, *self.live.values()]:
                worker.process.join()
                worker.conn.close()

    def _drain(self) -> None:
        """Wait for the live workers to end, reading (and dropping) what they still send."""
        while self.live:
            for worker, ended in self._ready():
                if not ended:
                    with contextlib.suppress(EOFError, OSError):
                        worker.conn.recv()
                elif self.live.get(worker.slot) is worker:
                    self.retired.append(self.live.pop(worker.slot))

    def _ready(self) -> list[tuple[_Worker, bool]]:
        """Live workers with something to read (False) or that ended (True), in the order seen."""
        by_conn = {w.conn: w for w in self.live.values()}
        by_sentinel = {w.process.sentinel: w for w in self.live.values()}
        out = []
        for ready in connection.wait([*by_conn, *by_sentinel]):
            if isinstance(ready, int):
                out.append((by_sentinel[ready], True))
            else:
                assert isinstance(ready, connection.Connection)
                out.append((by_conn[ready], False))
        return out

    # ------------------------------------------------------------------ results

    def results(self) -> Iterator[list[BatchDone]]:
        assert self.assigned, "assign the batches first"
        while self.open_units:
            for worker, ended in self._ready():
                if self.live.get(worker.slot) is not worker:
                    continue  # let go, or ended, while this round was handled
                if not ended:
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        continue  # it ended: its sentinel says so
                    yield from self._received(worker, message)
                else:
                    yield from self._ended(worker)

    def _received(self, worker: _Worker, message: tuple[Any, ...]) -> Iterator[list[BatchDone]]:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            if self.assigned:
                self._next(worker)
        elif kind == "flushed":
            assert worker.unit is not None
            unit = self.units[worker.unit]
            done = []
            for position, error, user_tb in message[1]:
                worker.reported.add(position)
                done.append(BatchDone(unit[position], None if error is None else error.rebuild(), user_tb))
            yield done
        elif kind == "retry":
            _, step, attempt, error, wait, item = message
            self.hooks.on_retry(step, attempt, error.rebuild(), wait, item)
            if not self.setup.real_sleep:
                self.hooks.sleep(wait)
        elif kind == "done":
            self.open_units -= 1
            self._next(worker)
        elif kind == "interrupted":
            raise KeyboardInterrupt  # a Ctrl-C reached the worker: the run stops, as with threads
        elif kind in ("fatal", "raised"):
            error = message[1]
            assert isinstance(error, PortableError)
            raise error.rebuild()

    def _next(self, worker: _Worker) -> None:
        """Give an idle worker the next unit, or let it go."""
        worker.unit, worker.reported = None, set()
        if self.queue and not self.stopping:
            worker.unit = self.queue.popleft()
            worker.conn.send(self.units[worker.unit])
        else:
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.send(None)
        self.retired.append(self.live.pop(worker.slot))

    def _ended(self, worker: _Worker) -> Iterator[list[BatchDone]]:
        """A worker ended while it had work: read what it sent before, fail the batch it was
        running, give its other unfinished batches to a new worker."""
        while worker.conn.poll():
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            yield from self._received(worker, message)
        if self.live.get(worker.slot) is not worker:
            return  # it was let go and ended normally
        self.retired.append(self.live.pop(worker.slot))
        worker.process.join()
        how = _how_it_ended(worker.process.exitcode)
        if not worker.ready:
            raise LokkiError(
                f"a worker process of map '{self.block.id}' {how} before it could start",
                hint="its own error is printed above; a script that runs flows in processes under the spawn or "
                'forkserver start method needs `if __name__ == "__main__":`; or use --executor threads',
            )
        if worker.unit is None:
            return
        unit = self.units[worker.unit]
        running = self.shared[child.position_slot(worker.slot)]
        rest = [p for p in range(len(unit)) if p not in worker.reported]
        if running in rest:
            rest.remove(running)
            died = WorkerDied(f"the process running it {how}")
            yield [BatchDone(unit[running], died)]
        else:  # it died between batches (writing, say): nothing to blame, but no endless retries
            self.deaths += 1
            if self.deaths > MAX_DEATHS_OUTSIDE_BATCHES:
                raise LokkiError(
                    f"the worker processes of map '{self.block.id}' keep dying outside any batch (last: {how})",
                    hint="run the map in threads (--executor threads) to see the error in this process",
                )
        self.open_units -= 1
        if rest:
            self.units.append([unit[p] for p in rest])
            self.queue.append(len(self.units) - 1)
            self.open_units += 1
        if self.queue:
            self._spawn(worker.slot)


def _pid(worker: _Worker) -> int:
    pid = worker.process.pid
    assert pid is not None
    return pid


def _how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        cause = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{cause}"
    return f"exited with code {code}"
