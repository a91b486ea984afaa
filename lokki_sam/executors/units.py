"""A unit of map work: batches run through the whole map body, as a child execution each.

Both executors run units with `run_unit`, threads in the runner's process and processes in
their children, so what a batch computes, how it retries and where its outputs go is the same
code either way: the execution functions of the data protocol (`execution.py`). Outputs are
buffered and written every FLUSH_SECONDS (and at the end): one object per step per flush instead
of one per batch, so trivial items are not dominated by file creation, while a killed worker
loses at most FLUSH_SECONDS of finished work.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lokki_sam import execution
from lokki_sam.batch import local as batch_local
from lokki_sam.errors import LokkiError
from lokki_sam.execution import RunContext
from lokki_sam.ir import MapBlock
from lokki_sam.options import MapOptions
from lokki_sam.protocol import ItemRef
from lokki_sam.retry import call_with_retry

FLUSH_SECONDS = 0.05
STEP_ATTRIBUTE = "__lokki_step__"  # set on a batch's exception: the map body's step that raised it

Batch = list[ItemRef]
# step id, retry number, the exception, seconds before the retry, the batch's first item
RetryHook = Callable[[str, int, BaseException, float, int], None]


@dataclass(frozen=True)
class BatchDone:
    """A batch that ran: its outputs are stored (error None), or it failed with `error`, whose
    user's traceback (`traceback`, formatted where it was raised) the failure record keeps."""

    batch: Batch
    error: BaseException | None = None
    traceback: str = ""

    @property
    def step(self) -> str | None:
        """The map body's step that failed (None: it succeeded, or failed outside a step)."""
        return getattr(self.error, STEP_ATTRIBUTE, None)


class FailureBudget:
    """The failures a map tolerates, spent by the workers of one process as their batches fail:
    once it is exceeded none of them starts another batch. A map stops where the runner learns
    that it fails, not a flush later: on one worker, at exactly the batch that ends it."""

    def __init__(self, options: MapOptions, total: int) -> None:
        self._options, self._total = options, total
        self._failed = 0
        self._lock = threading.Lock()
        self.exceeded = False

    @property
    def total(self) -> int:
        return self._total

    @property
    def failed(self) -> int:
        return self._failed

    def spend(self, items: int) -> None:
        with self._lock:
            self._failed += items
            self.exceeded = not self._options.tolerates(self._failed, self._total)


@dataclass(frozen=True)
class UnitHooks:
    """What a unit reports and asks while it runs; each executor wires these its own way."""

    stopped: Callable[[], bool]  # checked before each batch: stop between batches
    on_retry: RetryHook
    sleep: Callable[[float], None]
    flushed: Callable[[list[BatchDone]], None]  # after each write, with the batches it stored or that failed
    failed: Callable[[int], None]  # a batch of this many items failed (before its flush)
    # Around each batch (its position in the unit): a child process lets Ctrl-C interrupt the
    # step there and notes which batch it runs, in case it dies.
    running: Callable[[int], contextlib.AbstractContextManager[Any]] = lambda position: contextlib.nullcontext()


@dataclass
class Buffer:
    """A map step's finished outputs not written yet: the items and their values."""

    refs: list[ItemRef] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    def add(self, refs: list[ItemRef], outputs: list[Any]) -> None:
        self.refs += refs
        self.outputs += outputs


def run_unit(ctx: RunContext, block: MapBlock, unit: Iterable[Batch], hooks: UnitHooks) -> None:
    """Run `unit`'s batches in order until done or `hooks.stopped()`. Every finished batch is
    written (or its failure reported) through `hooks.flushed`; an interrupt (KeyboardInterrupt,
    a child process's Ctrl-C) writes what finished before it propagates. A lokki-sam error ends
    the unit: it is no item's failure but the run's."""
    buffers = {node.id: Buffer() for node in block.nodes}
    pending: list[BatchDone] = []
    last_flush = time.perf_counter()
    interrupt: KeyboardInterrupt | None = None
    try:
        for position, batch in enumerate(unit):
            if hooks.stopped():
                break
            try:
                with hooks.running(position):
                    _run_batch(ctx, block, batch, buffers, hooks)
            except Exception as exc:
                pending.append(BatchDone(batch, exc, execution.user_traceback(exc)))
                if isinstance(exc, LokkiError):
                    break
                hooks.failed(len(batch))
                failing = True  # the runner hears of a failure at once: it may end the map
            else:
                pending.append(BatchDone(batch))
                failing = False
            if failing or time.perf_counter() - last_flush >= FLUSH_SECONDS:
                _flush(ctx, block, buffers)
                hooks.flushed(pending)
                pending = []
                last_flush = time.perf_counter()
    except KeyboardInterrupt as exc:  # the batch running is not done; those finished before it are written
        interrupt = exc
    _flush(ctx, block, buffers)
    hooks.flushed(pending)
    if interrupt is not None:
        raise interrupt


def _run_batch(ctx: RunContext, block: MapBlock, batch: Batch, buffers: dict[str, Buffer], hooks: UnitHooks) -> None:
    values = execution.read_items(ctx, block, batch)
    computed: list[tuple[str, list[Any]]] = []
    for node in block.nodes:
        try:
            if node.step.options.on_batch:  # its job stores its outputs itself; its Retry runs there
                values = batch_local.compute_batch(ctx, block, node, batch, values)
                continue
            values = call_with_retry(
                functools.partial(execution.compute_batch, ctx, node, values),
                node.step.options.retry,
                on_retry=functools.partial(_report_retry, hooks.on_retry, node.id, batch[0].index),
                sleep=hooks.sleep,
            )
        except Exception as exc:
            setattr(exc, STEP_ATTRIBUTE, node.id)  # named in the failure report
            raise
        computed.append((node.id, values))
    for node_id, outputs in computed:  # only whole successes reach the buffers
        buffers[node_id].add(batch, outputs)


def _report_retry(hook: RetryHook, step: str, item: int, attempt: int, error: BaseException, wait: float) -> None:
    hook(step, attempt, error, wait, item)


def _flush(ctx: RunContext, block: MapBlock, buffers: dict[str, Buffer]) -> None:
    # The last step is written last: its object is what marks items as done.
    for node in block.nodes:
        buffer = buffers[node.id]
        if buffer.refs:  # the items' identities, once per flush (a batch may be a single item)
            ids = execution.item_ids(ctx, block, buffer.refs)[node.id]
            execution.write_batch_output(ctx, node, [r.index for r in buffer.refs], ids, buffer.outputs)
            buffers[node.id] = Buffer()


def split_units(todo: list[Batch], workers: int, per_worker: int) -> list[list[Batch]]:
    """Batches grouped into units, about `per_worker` per worker: thousands of tiny tasks cost
    more than the work, while enough units per worker keep them all busy to the end."""
    size = max(1, len(todo) // (workers * per_worker))
    return [todo[i : i + size] for i in range(0, len(todo), size)]
