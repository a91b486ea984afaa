"""How a local run's maps run their batches: in threads of the runner's process, or in worker
processes (`threads.py`, `processes.py`), both through the same unit runner (`units.py`).

`open_executor` picks the one a map asks for; a map that asks for processes but cannot reach
a worker process (its store or parameters do not pickle; under spawn or forkserver, a flow
that a fresh interpreter cannot import) runs in threads, and the runner reports why in one line.
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
from lokki_sam.executors.units import FLUSH_SECONDS, Batch, BatchDone, split_units
from lokki_sam.ir import FlowGraph, MapBlock
from lokki_sam.options import EXECUTORS

if TYPE_CHECKING:
    from lokki_sam.executors.child import ChildSetup

THREADS, PROCESSES = EXECUTORS
THREAD_WORKERS = min(32, (os.cpu_count() or 1) * 4)  # threads mostly wait: several per core
UNITS_PER_WORKER = 16


def default_workers(kind: str) -> int:
    """Workers of a map that does not say (nor does the run): per core, 4 threads or 1 process."""
    if kind == PROCESSES:
        from lokki_sam.executors.processes import default_workers as per_core

        return per_core()
    return THREAD_WORKERS


@dataclass(frozen=True)
class Choice:
    """The executor that runs a map, what its worker processes need, and why it is not the one
    the map asked for (None: it is)."""

    kind: str
    note: str | None = None
    setup: ChildSetup | None = None
    inherited: FlowGraph | None = None  # what a forked worker inherits


def choose(
    kind: str, ctx: RunContext, block: MapBlock, context: DefaultContext, sleep: Callable[[float], None]
) -> Choice:
    if kind != PROCESSES:
        return Choice(THREADS)
    from lokki_sam.executors import processes

    planned = processes.plan(ctx, block, context, real_sleep=sleep is time.sleep)
    if isinstance(planned, str):
        return Choice(THREADS, f"map '{block.id}' runs in threads, not processes: {planned}")
    return Choice(PROCESSES, None, *planned)


def open_executor(
    choice: Choice,
    ctx: RunContext,
    block: MapBlock,
    units: list[list[Batch]],
    workers: int,
    hooks: RunnerHooks,
    context: DefaultContext,
) -> MapExecutor:
    if choice.kind == PROCESSES:
        from lokki_sam.executors.processes import ProcessExecutor

        assert choice.setup is not None
        return ProcessExecutor(block, units, workers, hooks, context, choice.setup, choice.inherited)
    from lokki_sam.executors.threads import ThreadExecutor

    return ThreadExecutor(ctx, block, units, workers, hooks)


__all__ = [
    "EXECUTORS",
    "FLUSH_SECONDS",
    "PROCESSES",
    "THREADS",
    "BatchDone",
    "Choice",
    "MapExecutor",
    "RunnerHooks",
    "choose",
    "default_workers",
    "open_executor",
    "split_units",
]
