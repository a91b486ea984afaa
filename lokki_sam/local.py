"""The local runner: executes a flow graph on the shared data protocol.

Steps outside maps run in this process. Maps run their batches on `concurrency` workers, threads
or processes (`executors/`: a map's own `executor`, else the run's); each batch runs the whole
map body, like a child execution in Step Functions. Everything is
persisted under the run's directory, each output under the identity of what it was computed from
(`lineage.py`), so `resume` recomputes exactly what did not complete or was computed from other
code, parameters or inputs, and says so per step and per map.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam import __version__, execution, executors, layout, lineage, names
from lokki_sam.batch import local as batch_local
from lokki_sam.config import MAX_LOCAL_CONCURRENCY
from lokki_sam.errors import LokkiError, ParamError, StepFailed, StoreError
from lokki_sam.execution import RunContext
from lokki_sam.executors import FLUSH_SECONDS, BatchDone, FailureBudget, RunnerHooks
from lokki_sam.installed import check_installed
from lokki_sam.ir import FlowGraph, MapBlock, Node, graph_of
from lokki_sam.params import as_text, from_record, resolve_params, same_value, to_record
from lokki_sam.progress import Reporter, item_span
from lokki_sam.retry import call_with_retry
from lokki_sam.runlock import RunLock
from lokki_sam.store import ArtifactStore, LocalStore

DEFAULT_STORE = Path(".lokki") / "runs"
LOCAL_CONCURRENCY = executors.THREAD_WORKERS  # threads per map when neither the map nor the run says
DEFAULT_EXECUTOR = executors.AUTO
__all__ = ["FLUSH_SECONDS", "LOCAL_CONCURRENCY", "MapFailed", "RunOutcome", "run_flow"]


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
    executor: str | None = None,
) -> RunOutcome:
    """Run a flow locally and return its result. `params` are raw values (CLI strings or
    Python/JSON values), validated and coerced like every other entry point. `concurrency`
    is the default number of map workers (a map's own `concurrency` wins), `executor` what runs
    maps: "auto" (the default: one thread first, then threads or worker processes as the map
    needs), "threads" or "processes" (a map's own `executor` wins; processes use Python's
    multiprocessing start method). In processes, a `sleep` other than time.sleep is called here
    when a worker reports a retry, and the worker does not wait.

    `resume` continues a run: with no `params`, or with exactly the values it was started with;
    `rerun` (step names, node or map ids) forces those steps and every step after them to be
    computed again in the resumed run, whatever they were computed from."""
    graph = graph_of(target)
    if rerun and resume is None:
        raise LokkiError("--rerun goes with --resume RUN_ID", hint="a new run computes every step anyway")
    forced = lineage.rerun_nodes(graph, rerun)  # unknown names are refused before anything is read or written
    check_installed(graph)  # a step's missing requirement fails now, not after a whole map
    kind = check_executor(executor or DEFAULT_EXECUTOR, where="run_flow(executor=...)")
    if store is None or isinstance(store, str | os.PathLike):
        store = LocalStore(store if store is not None else DEFAULT_STORE)
    runner = LocalRunner(graph, store, reporter or Reporter(), sleep, concurrency, kind)
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
        concurrency: int | None = None,
        executor: str = DEFAULT_EXECUTOR,
    ) -> None:
        self.graph = graph
        self.store = store
        self.reporter = reporter
        self.sleep = sleep
        self.concurrency = concurrency  # None: the executor's own default
        self.executor = executor
        self.resuming = False

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
        failures: list[ItemFailure] = []
        tally = {"failed": 0, "succeeded": 0}
        context = multiprocessing.get_context()  # Python's start method, as the user set it
        choice = executors.choose(block.options.executor or self.executor, ctx, block, context, self.sleep)
        if choice.note is not None and choice.kind != executors.AUTO:  # auto says it only if it matters
            self.reporter.executor_note(block.id, choice.note)
        # A map's concurrency is the cloud's MaxConcurrency; here workers, bounded by the machine's cap.
        concurrency = block.options.concurrency or self.concurrency
        workers = min(concurrency, MAX_LOCAL_CONCURRENCY) if concurrency else None
        hooks = RunnerHooks(self._report_retry, self.sleep, FailureBudget(block.options, total))
        note = functools.partial(self.reporter.executor_note, block.id)
        began = time.perf_counter()
        executor = executors.open_executor(choice, ctx, block, todo, workers, hooks, context, note)
        # Workers start before the map is reported: a progress bar's thread is not running when
        # the fork start method copies this process.
        with executor:
            self.reporter.map_started(block.id, total, len(batches), len(done))
            for finished in executor.results():
                for batch in finished:
                    if batch.error is None:
                        tally["succeeded"] += len(batch.batch)
                        self.reporter.map_advanced(block.id, len(batch.batch), failed=False)
                        continue
                    if isinstance(batch.error, LokkiError):
                        raise batch.error
                    failures.append(self._record_failure(ctx, block, batch))
                    tally["failed"] += len(batch.batch)
                    self.reporter.item_failed(block.id, list(failures[-1].indexes), batch.error)
                    self.reporter.map_advanced(block.id, len(batch.batch), failed=True)
                if not block.options.tolerates(tally["failed"], total):
                    unattempted = total - len(done) - tally["succeeded"] - tally["failed"]
                    raise self._map_failed(ctx, block, failures, tally["failed"], total, unattempted)
        self.reporter.map_finished(block.id, total - tally["failed"], tally["failed"])
        self.reporter.step_finished(block.id, time.perf_counter() - began)
        return failures

    def _report_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int) -> None:
        self.reporter.step_retry(step, attempt, error, wait, item)

    def _record_failure(self, ctx: RunContext, block: MapBlock, done: BatchDone) -> ItemFailure:
        batch, error = done.batch, done.error
        assert error is not None
        node = ctx.graph.node(done.step or block.nodes[0].id)
        failure = ItemFailure(block.id, node.id, tuple(r.index for r in batch), type(error).__name__, str(error))
        execution.record_failure(ctx, block, node, batch, error, done.traceback)
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


def _describe_tolerance(block: MapBlock) -> str:
    opts = block.options
    parts = []
    if opts.tolerated_failure is not None:
        parts.append(f"{opts.tolerated_failure}%")
    if opts.tolerated_failure_count is not None:
        parts.append(f"{opts.tolerated_failure_count} item(s)")
    return "tolerated: " + " and ".join(parts) if parts else "no failures tolerated"


def check_executor(kind: str, where: str) -> str:
    if kind not in executors.EXECUTORS:
        raise LokkiError(
            f"executor must be one of {', '.join(executors.EXECUTORS)}, got {kind!r}",
            where=where,
            hint="threads suit steps that wait (I/O); processes use every core for Python code",
        )
    return kind
