"""How a local run's maps run their batches: in threads of the runner's process, in worker
processes, or (the default, "auto") on one thread first and then in whichever suits the map
(`threads.py`, `processes.py`, `auto.py`), all through the same unit runner (`units.py`).

A map that asks for processes but cannot reach a worker process (its store or parameters do not
pickle; under spawn or forkserver, a flow a fresh interpreter cannot import) runs in threads,
and the runner says why in one line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import DefaultContext
from typing import TYPE_CHECKING

from lokki_sam.execution import RunContext
from lokki_sam.executors.base import MapExecutor, RunnerHooks
from lokki_sam.executors.units import FLUSH_SECONDS, Batch, BatchDone, FailureBudget
from lokki_sam.ir import FlowGraph, MapBlock
from lokki_sam.options import EXECUTORS

if TYPE_CHECKING:
    from lokki_sam.executors.child import ChildSetup

AUTO, THREADS, PROCESSES = EXECUTORS
THREAD_WORKERS = min(32, (os.cpu_count() or 1) * 4)  # threads mostly wait: several per core


def process_workers() -> int:
    """One worker per CPU this process may use: more processes than cores only add switching."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


@dataclass(frozen=True)
class Choice:
    """How a map runs: the executor, and for processes (or auto) what their workers need, or
    why none can run (`note`)."""

    kind: str
    note: str | None = None
    setup: ChildSetup | None = None
    inherited: FlowGraph | None = None  # what a forked worker inherits


def choose(
    kind: str, ctx: RunContext, block: MapBlock, context: DefaultContext, sleep: Callable[[float], None]
) -> Choice:
    """`kind` as it can run here: processes that cannot run are threads, with a note."""
    if kind == THREADS:
        return Choice(THREADS)
    from lokki_sam.executors import processes

    planned = processes.plan(ctx, block, context, real_sleep=sleep is time.sleep)
    if isinstance(planned, str):
        if kind == AUTO:
            return Choice(AUTO, planned)  # said only if the map turns out to need processes
        return Choice(THREADS, f"map '{block.id}' runs in threads, not processes: {planned}")
    return Choice(kind, None, *planned)


def open_executor(
    choice: Choice,
    ctx: RunContext,
    block: MapBlock,
    batches: list[Batch],
    concurrency: int | None,
    hooks: RunnerHooks,
    context: DefaultContext,
    note: Callable[[str, bool], None],
) -> MapExecutor:
    """The executor for `choice`, with `concurrency` workers (None: each kind's default)."""
    threads = concurrency or THREAD_WORKERS
    processes = concurrency or process_workers()
    if choice.kind == AUTO:
        from lokki_sam.executors.auto import AutoExecutor

        planned = choice.note if choice.setup is None else (choice.setup, choice.inherited)
        assert planned is not None
        # Auto moves only CPU-bound maps to processes: more of them than cores would only take turns.
        cores = min(processes, process_workers())
        return AutoExecutor(ctx, block, batches, hooks, context, (threads, cores), planned, note)
    if choice.kind == PROCESSES:
        from lokki_sam.executors.processes import ProcessExecutor

        assert choice.setup is not None
        executor = ProcessExecutor(block, min(processes, len(batches)), hooks, context, choice.setup, choice.inherited)
        executor.assign(batches)
        return executor
    from lokki_sam.executors.threads import ThreadExecutor

    return ThreadExecutor(ctx, block, batches, threads, hooks)


__all__ = [
    "AUTO",
    "EXECUTORS",
    "FLUSH_SECONDS",
    "PROCESSES",
    "THREADS",
    "BatchDone",
    "Choice",
    "FailureBudget",
    "MapExecutor",
    "RunnerHooks",
    "choose",
    "open_executor",
    "process_workers",
]
