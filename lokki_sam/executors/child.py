"""A worker process of the process executor: it runs units of map batches with the same code as
a thread (`units.run_unit`) and tells its parent what happened over a pipe.

How the run's graph reaches it depends on the start method. Under fork the child inherits the
parent's memory, the graph included. Under spawn and forkserver it starts from a fresh
interpreter: it imports the flow's module from the file the parent imported (by the same module
name, from the same folder, with the parent's import path) and takes the flow of that name, as
a Lambda function does; the flow must then have the fingerprint the parent's has, else the file
changed since the run started and the child would run other code.

Signals: the child dies with its parent (Linux: PR_SET_PDEATHSIG; elsewhere a watchdog thread).
Ctrl-C or SIGTERM interrupts the batch running (its step sees KeyboardInterrupt; the batch is
not done), never a write: the batches finished before it are written, then the child reports
that it was interrupted and exits.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lokki_sam.errors import LokkiError
from lokki_sam.execution import RunContext
from lokki_sam.executors.portable import PortableError
from lokki_sam.executors.units import Batch, BatchDone, UnitHooks, run_unit
from lokki_sam.ir import FlowGraph, MapBlock
from lokki_sam.store import ArtifactStore

# The array the runner shares with its workers (no lock: each entry has one writer, but STOP).
STOP = 0  # shared[STOP] != 0: stop between batches
TOTAL = 1  # the map's items, its failure budget's base
EARLIER = 2  # items that failed before the workers started (in the auto executor's threads)
IDLE = -1  # a worker's position when it runs no batch


def shared_size(workers: int) -> int:
    return 3 + 2 * workers


def position_slot(slot: int) -> int:
    """Where worker `slot` notes the position (in its unit) of the batch it runs."""
    return 3 + 2 * slot


def failed_slot(slot: int) -> int:
    """Where worker `slot` counts the items that failed in it."""
    return 4 + 2 * slot


@dataclass(frozen=True)
class FlowAddress:
    """Where a fresh interpreter finds the run's flow: its module (name, file, the folder the name
    resolves in) and the flow's name and fingerprint."""

    module: str
    file: str
    root: str | None
    flow: str
    fingerprint: str

    @classmethod
    def of(cls, graph: FlowGraph) -> FlowAddress | str:
        """The flow's address, or why a fresh interpreter could not find it."""
        from lokki_sam.loader import flows_in

        module = sys.modules.get(graph.module)
        file = getattr(module, "__file__", None)
        if graph.module == "__main__":
            return "the flow is defined in the script being run (__main__), which a new interpreter does not import"
        if module is None or not file:
            return f"its module '{graph.module}' has no file to import"
        found = flows_in(module).get(graph.name)
        if found is None or (found.graph is not graph and found.graph.fingerprints.flow != graph.fingerprints.flow):
            return f"flow '{graph.name}' is not defined at the top level of {file} (a flow made inside a function?)"
        return cls(
            graph.module,
            str(Path(file).resolve()),
            _import_root(graph.module, Path(file).resolve()),
            graph.name,
            graph.fingerprints.flow,
        )

    def load(self) -> FlowGraph:
        from lokki_sam.loader import flows_in

        where = f"flow '{self.flow}' in {self.file}"
        if self.root is not None and (not sys.path or sys.path[0] != self.root):
            sys.path.insert(0, self.root)  # the folder the parent imported the module from wins
        try:
            module = importlib.import_module(self.module)
        except Exception as exc:
            raise LokkiError(
                f"a worker process could not import module '{self.module}': {type(exc).__name__}: {exc}",
                where=where,
                hint="run the map in threads (--executor threads), or make the module importable",
            ) from None
        file = getattr(module, "__file__", None)
        found = flows_in(module).get(self.flow) if file and Path(file).resolve() == Path(self.file) else None
        if found is None or found.graph.fingerprints.flow != self.fingerprint:
            raise LokkiError(
                "the flow's module changed since the run started: a worker process would run other code",
                where=where,
                hint="resume the run (--resume RUN_ID): it recomputes what the change affects",
            )
        return found.graph


def _import_root(module: str, file: Path) -> str | None:
    """The folder from which `module` (dotted) resolves to `file`; None if its path does not
    spell its name (a module an import hook maps there: the import path finds it)."""
    parts = module.split(".")
    base = file.parent if file.name == "__init__.py" else file.with_suffix("")
    spelled = [p.name for p in [base, *base.parents][: len(parts)]][::-1]
    return str(base.parents[len(parts) - 1]) if spelled == parts else None


@dataclass(frozen=True)
class ChildSetup:
    """What a worker needs besides the graph; pickled to spawn and forkserver children."""

    address: FlowAddress | None  # None: the graph is inherited (fork)
    block_id: str
    store: ArtifactStore
    run_id: str
    params: Mapping[str, Any]
    execution: str
    reruns: Mapping[str, int]
    fingerprints: Mapping[str, str] | None
    runner_pid: int  # the child does not outlive it
    runner_is_parent: bool  # fork and spawn; under forkserver the fork server is the parent
    real_sleep: bool  # retry waits are slept here; else the parent spends them (a test's recorder)
    stdout_to_stderr: bool  # the runner points standard output at standard error: so does the child
    # The runner's environment variables (None under fork: inherited). A forkserver worker would
    # otherwise see the fork server's, from whenever it started.
    environ: Mapping[str, str] | None = None

    def open(self, inherited: FlowGraph | None) -> tuple[RunContext, MapBlock]:
        if self.environ is not None:
            os.environ.clear()
            os.environ.update(self.environ)
        graph = inherited if inherited is not None else self._address().load()
        block = graph.get(self.block_id)
        assert isinstance(block, MapBlock)
        ctx = RunContext(
            graph,
            self.store,
            self.run_id,
            self.params,
            execution=self.execution,
            reruns=self.reruns,
            fingerprints=self.fingerprints,
        )
        return ctx, block

    def _address(self) -> FlowAddress:
        assert self.address is not None, "a spawned worker needs the flow's address"
        return self.address


class Interrupts:
    """Ctrl-C and SIGTERM in a worker: they interrupt the batch running (`running`), and otherwise
    only make the worker stop at the next batch, so no write and no message is ever cut."""

    def __init__(self) -> None:
        self.interrupted = False
        self._interruptible = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._received)

    def _received(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if self._interruptible:
            self._interruptible = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        self._interruptible = not self.interrupted
        try:
            if self.interrupted:
                raise KeyboardInterrupt
            yield
        finally:
            self._interruptible = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A message to the parent is sent whole, even from inside a batch (a retry)."""
        was, self._interruptible = self._interruptible, False
        try:
            yield
        finally:
            self._interruptible = was and not self.interrupted
            if was and self.interrupted:
                raise KeyboardInterrupt


def main(setup: ChildSetup, inherited: FlowGraph | None, conn: Connection, shared: Any, slot: int) -> None:
    """The worker's life: open the run, then run the units the parent sends until it sends None."""
    _die_with(setup.runner_pid, setup.runner_is_parent)
    interrupts = Interrupts()
    interrupts.install()
    if setup.stdout_to_stderr:
        os.dup2(2, 1)
    try:
        ctx, block = setup.open(inherited)
    except BaseException as exc:
        conn.send(("fatal", PortableError.of(exc)))
        return
    interrupts.install()  # again: importing the flow's module may have set handlers of its own
    conn.send(("ready",))
    worker = _Worker(ctx, block, conn, shared, slot, interrupts, setup.real_sleep)
    while not interrupts.interrupted:
        try:
            unit = conn.recv()
        except EOFError:
            return
        if unit is None:
            return
        if not worker.run(unit):
            return
    conn.send(("interrupted",))


class _Worker:
    def __init__(
        self,
        ctx: RunContext,
        block: MapBlock,
        conn: Connection,
        shared: Any,
        slot: int,
        interrupts: Interrupts,
        real_sleep: bool,
    ) -> None:
        self.ctx, self.block, self.conn, self.shared, self.slot = ctx, block, conn, shared, slot
        self.interrupts = interrupts
        self.sleep = time.sleep if real_sleep else _no_wait
        self.positions: dict[int, int] = {}

    def run(self, unit: list[Batch]) -> bool:
        """Run one unit; False when the worker must end (interrupted, or an error it reported)."""
        self.positions = {id(batch): position for position, batch in enumerate(unit)}
        hooks = UnitHooks(self._stopped, self._retry, self.sleep, self._flushed, self._failed, self._running)
        try:
            run_unit(self.ctx, self.block, unit, hooks)
        except KeyboardInterrupt:
            self._send(("interrupted",))
            return False
        except BaseException as exc:  # a lokki-sam error outside any batch (a write): the run's
            self._send(("raised", PortableError.of(exc)))
            return False
        if self.interrupts.interrupted:
            self._send(("interrupted",))
            return False
        self._send(("done",))
        return True

    def _stopped(self) -> bool:
        return bool(self.shared[STOP]) or self.interrupts.interrupted

    def _failed(self, items: int) -> None:
        """Spend the map's failure budget; once it is exceeded, every worker stops between batches
        (as the runner would make them when it reads the failures, a little later)."""
        shared = self.shared
        shared[failed_slot(self.slot)] += items
        workers = (len(shared) - shared_size(0)) // 2
        failed = shared[EARLIER] + sum(shared[failed_slot(slot)] for slot in range(workers))
        if not self.block.options.tolerates(failed, shared[TOTAL]):
            shared[STOP] = 1

    @contextlib.contextmanager
    def _running(self, position: int) -> Iterator[None]:
        self.shared[position_slot(self.slot)] = position
        try:
            with self.interrupts.interruptible():
                yield
        finally:
            self.shared[position_slot(self.slot)] = IDLE

    def _retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int) -> None:
        self._send(("retry", step, attempt, PortableError.of(error), wait, item))

    def _flushed(self, done: list[BatchDone]) -> None:
        if done:
            report = [
                (self.positions[id(d.batch)], None if d.error is None else PortableError.of(d.error), d.traceback)
                for d in done
            ]
            self._send(("flushed", report))

    def _send(self, message: tuple[Any, ...]) -> None:
        with self.interrupts.held():
            self.conn.send(message)


def _no_wait(seconds: float) -> None:
    """The parent spends the wait (with the runner's own sleep) when it reports the retry."""


def _die_with(runner: int, is_parent: bool) -> None:
    """End this process when the runner's ends, however it ends (SIGKILL included).

    A worker forked or spawned by the runner has the kernel kill it when its parent dies
    (Linux: PR_SET_PDEATHSIG). A forkserver worker's parent is the fork server, which outlives
    the runner while workers hold its pipe: such a worker, and any worker elsewhere, watches
    the runner's pid from a thread instead."""
    if is_parent and sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != runner:  # it ended before the line above took effect
            os._exit(1)
        return
    threading.Thread(target=_watch, args=(runner,), name="lokki-runner-watch", daemon=True).start()


def _watch(pid: int) -> None:
    """Exit as soon as process `pid` has ended."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)
        except OSError:
            fd = None
        if fd is not None:
            select.select([fd], [], [])  # readable once the process has ended
            os._exit(1)
    while True:  # no pidfd (not Linux, or an old kernel): look every second
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass
        time.sleep(1.0)
