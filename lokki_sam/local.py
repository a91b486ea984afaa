"""The local runner: executes a flow graph in-process on the shared data protocol.

Maps run their batches in a thread pool of `concurrency` workers (default LOCAL_CONCURRENCY);
each batch runs the whole map body, like a child execution in Step Functions. Everything is
persisted under the run's directory, each output under the identity of what it was computed from
(`lineage.py`), so `resume` recomputes exactly what did not complete or was computed from other
code, parameters or inputs, and says so per step and per map.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam import __version__, execution, layout, lineage, names
from lokki_sam.batch import local as batch_local
from lokki_sam.config import MAX_LOCAL_CONCURRENCY
from lokki_sam.errors import LokkiError, ParamError, StepFailed, StoreError
from lokki_sam.execution import RunContext
from lokki_sam.installed import check_installed
from lokki_sam.ir import FlowGraph, MapBlock, Node, graph_of
from lokki_sam.params import as_text, from_record, resolve_params, same_value, to_record
from lokki_sam.progress import Reporter, item_span
from lokki_sam.protocol import ItemRef
from lokki_sam.retry import call_with_retry
from lokki_sam.runlock import RunLock
from lokki_sam.store import ArtifactStore, LocalStore

DEFAULT_STORE = Path(".lokki") / "runs"
LOCAL_CONCURRENCY = min(32, (os.cpu_count() or 1) * 4)
UNITS_PER_WORKER = 16
FLUSH_SECONDS = 0.05


@dataclass(frozen=True)
class ItemFailure:
    map_id: str
    step: str
    indexes: tuple[int, ...]
    error_type: str
    message: str


@dataclass
class RunOutcome:
    run_id: str
    result: Any
    params: dict[str, Any]
    failures: list[ItemFailure] = field(default_factory=list)
    seconds: float = 0.0


class MapFailed(StepFailed):
    """More map items failed than the map tolerates."""

    def __init__(self, message: str, failures: list[ItemFailure], **kwargs: Any) -> None:
        self.failures = failures
        super().__init__(message, **kwargs)


class RunInterrupted(LokkiError):
    """Ctrl-C during a local run: what finished is stored, the run can be resumed."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler or `kill`), raised in the main thread: handled like Ctrl-C."""


class RunTerminated(RunInterrupted):
    exit_code = 143  # 128 + SIGTERM, as shells report it


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the body runs, SIGTERM stops the run the way Ctrl-C does (work saved, resume hint)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_flow(
    target: Any,
    params: Mapping[str, Any] | None = None,
    *,
    store: ArtifactStore | str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    resume: str | None = None,
    rerun: Sequence[str] = (),
    reporter: Reporter | None = None,
    concurrency: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RunOutcome:
    """Run a flow locally and return its result. `params` are raw values (CLI strings or
    Python/JSON values), validated and coerced like every other entry point. `concurrency`
    is the default number of map workers (a map's own `concurrency` wins).

    `resume` continues a run: with no `params`, or with exactly the values it was started with;
    `rerun` (step names, node or map ids) forces those steps and every step after them to be
    computed again in the resumed run, whatever they were computed from."""
    graph = graph_of(target)
    if rerun and resume is None:
        raise LokkiError("--rerun goes with --resume RUN_ID", hint="a new run computes every step anyway")
    forced = lineage.rerun_nodes(graph, rerun)  # unknown names are refused before anything is read or written
    check_installed(graph)  # a step's missing requirement fails now, not after a whole map
    if store is None or isinstance(store, str | os.PathLike):
        store = LocalStore(store if store is not None else DEFAULT_STORE)
    runner = LocalRunner(graph, store, reporter or Reporter(), sleep, concurrency or LOCAL_CONCURRENCY)
    if resume is not None:
        return runner.resume(resume, dict(params or {}), forced)
    return runner.start(dict(params or {}), run_id or layout.new_run_id(graph.name))


class LocalRunner:
    def __init__(
        self,
        graph: FlowGraph,
        store: ArtifactStore,
        reporter: Reporter,
        sleep: Callable[[float], None] = time.sleep,
        concurrency: int = LOCAL_CONCURRENCY,
    ) -> None:
        self.graph = graph
        self.store = store
        self.reporter = reporter
        self.sleep = sleep
        self.concurrency = concurrency
        self.resuming = False
        self._stop = threading.Event()  # set on Ctrl-C or a fatal error: workers stop between batches

    # ---------------------------------------------------------------- entry points

    def start(self, raw_params: dict[str, Any], run_id: str) -> RunOutcome:
        layout.check_run_id(run_id)
        where = f"flow '{self.graph.name}'"
        params = resolve_params(self.graph.params, raw_params, where=where)
        recorded = to_record(params, where=where)  # refuse values run.json cannot hold before anything runs
        with self._lock(run_id):
            if self.store.exists(layout.run_record(run_id)):
                raise LokkiError(f"run {run_id} already exists", where=where, hint=f"resume it with --resume {run_id}")
            record = {
                "flow": self.graph.name,
                "module": self.graph.module,
                "run_id": run_id,
                "params": recorded,
                "status": "running",
                "lokki_sam": __version__,
                "started": time.time(),
                "attempt": 0,
                "reruns": {},
            }
            return self._execute(RunContext(self.graph, self.store, run_id, params), record, resumed=False)

    def resume(self, run_id: str, raw_params: Mapping[str, Any] | None = None, rerun: Sequence[str] = ()) -> RunOutcome:
        """Continue a run as a new attempt (`<run>.resume-<n>`): outputs stored under the identity
        they would be computed from now are kept; `rerun` nodes are computed again, for good."""
        layout.check_run_id(run_id)
        self._read_record(run_id)  # refuse an unknown or foreign run before touching its directory
        with self._lock(run_id):
            record = self._read_record(run_id)
            params = self._resumed_params(run_id, record, raw_params or {})
            attempt = int(record.get("attempt") or 0) + 1
            reruns = {str(k): int(v) for k, v in (record.get("reruns") or {}).items()}
            reruns.update(dict.fromkeys(rerun, attempt))
            record.update(status="running", attempt=attempt, reruns=reruns)
            self.resuming = True
            ctx = RunContext(
                self.graph,
                self.store,
                run_id,
                params,
                execution=names.resume_execution_name(run_id, attempt),
                reruns=reruns,
            )
            return self._execute(ctx, record, resumed=True)

    def _lock(self, run_id: str) -> contextlib.AbstractContextManager[Any]:
        if isinstance(self.store, LocalStore):
            return RunLock(self.store.root / layout.run_lock(run_id), run_id)
        return contextlib.nullcontext()  # other stores: the caller keeps runs apart

    def _read_record(self, run_id: str) -> dict[str, Any]:
        try:
            record = self.store.get_json(layout.run_record(run_id))
        except StoreError:
            if self.store.exists(layout.run_record(run_id)):
                raise  # the record is there but damaged: say so, not "no run"
            raise LokkiError(
                f"no run {run_id} (no {self.store.describe(layout.run_record(run_id))})",
                hint="check the run id and --store",
            ) from None
        if not isinstance(record, dict) or not isinstance(record.get("params", {}), dict):
            raise StoreError("not a run record (expected a JSON object)", where=self.store.describe(run_id))
        if record.get("flow") != self.graph.name:
            raise LokkiError(
                f"run {run_id} belongs to flow '{record.get('flow')}', not '{self.graph.name}'",
                hint="pick the matching flow in FLOW_REF",
            )
        return record

    def _resumed_params(self, run_id: str, record: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
        """The run's own parameters; -p values are accepted only when they are exactly those."""
        where = f"run {run_id}"
        recorded = from_record(record.get("params", {}))
        try:
            params = resolve_params(self.graph.params, recorded, where=where)
        except ParamError as exc:
            raise ParamError(
                f"the flow's parameters changed since the run started ({exc.message})",
                where=where,
                hint="start a new run (a resume keeps the parameters the run started with)",
            ) from None
        if given:
            wanted = resolve_params(self.graph.params, {**recorded, **given}, where=where)
            differ = [name for name in given if not same_value(wanted.get(name), params.get(name))]
            if differ:
                shown = ", ".join(f"{n}={as_text(params[n])} (given {as_text(wanted[n])})" for n in differ)
                raise ParamError(
                    f"a resume keeps the run's parameters: {shown}",
                    where=where,
                    hint="resume without -p (or with the same values), or start a new run",
                )
        return params

    # ---------------------------------------------------------------- orchestration

    def _execute(self, ctx: RunContext, record: dict[str, Any], resumed: bool) -> RunOutcome:
        started = time.perf_counter()
        record.update(fingerprint=self.graph.fingerprints.flow, nodes=dict(self.graph.fingerprints.nodes))
        self.store.put_json(layout.run_record(ctx.run_id), record)
        self.reporter.run_started(self.graph.name, ctx.run_id, dict(ctx.params), resumed)
        batch_local.announce(self.graph, self.reporter.config_warning)  # Batch steps: sizes, checked
        failures: list[ItemFailure] = []
        status = "failed"
        try:
            for stage in self.graph.stages:
                if isinstance(stage, MapBlock):
                    failures.extend(self._run_map(ctx, stage))
                else:
                    self._run_task(ctx, stage)
            result = execution.read_result(ctx)
            status = "succeeded"
        except KeyboardInterrupt as exc:
            status = "interrupted"
            error = RunTerminated if isinstance(exc, Terminated) else RunInterrupted
            raise error(
                f"{'terminated (SIGTERM)' if isinstance(exc, Terminated) else 'interrupted'}; finished work is saved",
                where=f"flow '{self.graph.name}', run {ctx.run_id}",
                hint=f"continue with: --resume {ctx.run_id}",
            ) from None
        finally:
            seconds = time.perf_counter() - started
            record.update(status=status, finished=time.time())
            self.store.put_json(layout.run_record(ctx.run_id), record)
            self.reporter.run_finished(ctx.run_id, status, seconds)
        return RunOutcome(ctx.run_id, result, dict(ctx.params), failures, seconds)

    def _run_task(self, ctx: RunContext, node: Node) -> None:
        plan = execution.plan_task(ctx, node, reuse=self.resuming)  # a new run has nothing stored yet
        if self.resuming:
            self.reporter.stage_resumed(plan.decision, ctx.run_id)
        if plan.reused:
            return
        self.reporter.step_started(node.id)
        began = time.perf_counter()
        try:
            if node.step.options.on_batch:  # in a subprocess, as its job; the step's Retry runs there
                batch_local.run_task(ctx, node)
            else:
                call_with_retry(
                    lambda: execution.compute_task(ctx, plan),
                    node.step.options.retry,
                    on_retry=lambda n, exc, w: self.reporter.step_retry(node.id, n, exc, w, None),
                    sleep=self.sleep,
                )
        except LokkiError:
            raise
        except Exception as exc:
            raise StepFailed(
                f"step '{node.id}' failed: {type(exc).__name__}: {exc}\n{execution.user_traceback(exc)}",
                where=f"flow '{self.graph.name}', run {ctx.run_id}",
                hint=f"fix it, then resume with: --resume {ctx.run_id}",
            ) from exc
        self.reporter.step_finished(node.id, time.perf_counter() - began)

    def _run_map(self, ctx: RunContext, block: MapBlock) -> list[ItemFailure]:
        refs = execution.read_manifest(ctx, block)
        total = len(refs)
        done = execution.done_items(ctx, block, refs) if self.resuming else set()
        if self.resuming:
            self.reporter.stage_resumed(execution.map_decision(ctx, block, refs, done), ctx.run_id)
        batch_size = block.options.batch_size
        batches = [refs[i : i + batch_size] for i in range(0, total, batch_size)]
        # An item is done when the map body's last step stored its output; others run again whole.
        todo = [[r for r in batch if r.index not in done] for batch in batches]
        todo = [batch for batch in todo if batch]
        if not todo and self.resuming:
            return []  # reported as reused above
        self.reporter.map_started(block.id, total, len(batches), len(done))
        began = time.perf_counter()
        failures: list[ItemFailure] = []
        tally = {"failed": 0, "succeeded": 0}
        # A map's concurrency is the cloud's MaxConcurrency; here threads, so bounded by the machine's cap.
        workers = min(block.options.concurrency or self.concurrency, max(1, len(todo)), MAX_LOCAL_CONCURRENCY)
        # Each task gives a worker several batches: thousands of tiny futures cost more than the work.
        per_unit = max(1, len(todo) // (workers * UNITS_PER_WORKER))
        units = [todo[i : i + per_unit] for i in range(0, len(todo), per_unit)]
        with ThreadPoolExecutor(workers, thread_name_prefix=f"lokki-{block.id}") as pool:
            pending = [pool.submit(self._run_unit, ctx, block, unit) for unit in units]
            try:
                for future in as_completed(pending):
                    for batch, error in future.result():
                        if error is None:
                            tally["succeeded"] += len(batch)
                            self.reporter.map_advanced(block.id, len(batch), failed=False)
                            continue
                        if isinstance(error, LokkiError):
                            raise error
                        failures.append(self._record_failure(ctx, block, batch, error))
                        tally["failed"] += len(batch)
                        self.reporter.item_failed(block.id, list(failures[-1].indexes), error)
                        self.reporter.map_advanced(block.id, len(batch), failed=True)
                    if not block.options.tolerates(tally["failed"], total):
                        unattempted = total - len(done) - tally["succeeded"] - tally["failed"]
                        raise self._map_failed(ctx, block, failures, tally["failed"], total, unattempted)
            except BaseException:  # Ctrl-C, or an error escaping a unit: stop the other units first
                self._stop.set()
                _cancel(pending)
                raise
        self.reporter.map_finished(block.id, total - tally["failed"], tally["failed"])
        self.reporter.step_finished(block.id, time.perf_counter() - began)
        return failures

    def _run_unit(
        self, ctx: RunContext, block: MapBlock, unit: list[list[ItemRef]]
    ) -> list[tuple[list[ItemRef], BaseException | None]]:
        """Run batches through the whole map body, like a child execution each. Outputs are
        buffered and written every FLUSH_SECONDS (and at the end): one object per step per flush
        instead of one per batch, so trivial items are not dominated by file creation, while a
        killed run loses at most FLUSH_SECONDS of finished work per worker."""
        results: list[tuple[list[ItemRef], BaseException | None]] = []
        buffers: dict[str, Buffer] = {node.id: Buffer() for node in block.nodes}
        last_flush = time.perf_counter()
        for batch in unit:
            if self._stop.is_set():
                break
            try:
                self._run_batch(ctx, block, batch, buffers)
            except Exception as exc:
                results.append((batch, exc))
                if isinstance(exc, LokkiError):
                    break
            else:
                results.append((batch, None))
            if time.perf_counter() - last_flush >= FLUSH_SECONDS:
                self._flush(ctx, block, buffers)
                last_flush = time.perf_counter()
        self._flush(ctx, block, buffers)
        return results

    def _run_batch(self, ctx: RunContext, block: MapBlock, batch: list[ItemRef], buffers: dict[str, Buffer]) -> None:
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
                    on_retry=functools.partial(self._report_retry, node.id, batch[0].index),
                    sleep=self.sleep,
                )
            except Exception as exc:
                exc.__lokki_step__ = node.id  # type: ignore[attr-defined]  # named in the failure report
                raise
            computed.append((node.id, values))
        for node_id, outputs in computed:  # only whole successes reach the buffers
            buffers[node_id].add(batch, outputs)

    def _flush(self, ctx: RunContext, block: MapBlock, buffers: dict[str, Buffer]) -> None:
        # The last step is written last: its object is what marks items as done.
        for node in block.nodes:
            buffer = buffers[node.id]
            if buffer.refs:  # the items' identities, once per flush (a batch may be a single item)
                ids = execution.item_ids(ctx, block, buffer.refs)[node.id]
                execution.write_batch_output(ctx, node, [r.index for r in buffer.refs], ids, buffer.outputs)
                buffers[node.id] = Buffer()

    def _report_retry(self, step: str, item: int, attempt: int, error: BaseException, wait: float) -> None:
        self.reporter.step_retry(step, attempt, error, wait, item)

    def _record_failure(
        self, ctx: RunContext, block: MapBlock, batch: list[ItemRef], error: BaseException
    ) -> ItemFailure:
        node = ctx.graph.node(getattr(error, "__lokki_step__", block.nodes[0].id))
        failure = ItemFailure(block.id, node.id, tuple(r.index for r in batch), type(error).__name__, str(error))
        execution.record_failure(ctx, block, node, batch, error)
        return failure

    def _map_failed(
        self, ctx: RunContext, block: MapBlock, failures: list[ItemFailure], failed: int, total: int, unattempted: int
    ) -> MapFailed:
        lines = [f"  item {item_span(f.indexes)}: {f.error_type}: {f.message} (step '{f.step}')" for f in failures[:20]]
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        tolerance = _describe_tolerance(block)
        stopped = f"; the map stopped there, {unattempted} item(s) were not attempted" if unattempted else ""
        return MapFailed(
            f"map '{block.id}' failed: {failed} of {total} item(s) failed, {tolerance}{stopped}\n"
            + "\n".join(lines)
            + more,
            failures,
            where=f"flow '{self.graph.name}', run {ctx.run_id}",
            hint=f"fix the step, then resume with: --resume {ctx.run_id}",
        )


@dataclass
class Buffer:
    """A map step's finished outputs not written yet: the items and their values."""

    refs: list[ItemRef] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    def add(self, refs: list[ItemRef], outputs: list[Any]) -> None:
        self.refs += refs
        self.outputs += outputs


def _describe_tolerance(block: MapBlock) -> str:
    opts = block.options
    parts = []
    if opts.tolerated_failure is not None:
        parts.append(f"{opts.tolerated_failure}%")
    if opts.tolerated_failure_count is not None:
        parts.append(f"{opts.tolerated_failure_count} item(s)")
    return "tolerated: " + " and ".join(parts) if parts else "no failures tolerated"


def _cancel(pending: list[Future[Any]]) -> None:
    for future in pending:
        future.cancel()
