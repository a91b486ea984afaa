"""What one run of a flow does in the cloud, stage by stage, for a run without retries.

Read from the definition `compile/asl.py` writes and the requests `execution.py` makes through
`store.py`/`transfer.py` (an object under 16 MiB is one PutObject or one ranged GetObject):

- Lambda invocations: one per task; per map body step, one per child (a batch of `batch_size`
  items) of a distributed map, one per item of an INLINE map.
- State transitions, as Standard workflows bill them (every state entered): the `Start flow` Pass,
  each Task, each Map state; an INLINE map's body states per item; per distributed-map child, the
  one transition AWS bills for starting it ("one state transition for each child workflow execution
  that the Distributed Map state starts", concepts-transitions.html) plus, for STANDARD children,
  the body states it enters. EXPRESS children bill requests and duration instead.
- Parent history events, as Step Functions writes them: ExecutionStarted/Succeeded; Pass entered
  and exited; per Task entered, scheduled, started, succeeded, exited; per distributed Map
  entered, started, MapRunStarted, MapRunSucceeded, succeeded, exited; an INLINE Map the same
  without the map run events, plus per item MapIterationStarted/Succeeded around its Tasks' events.
- S3 requests the handler makes: a task PUTs its output (a map source: one PUT per items chunk and
  the manifest; for an INLINE map one GET of the manifest it returns into the state); reads its
  input with one GET (after a map: a LIST of the body's last step's outputs, one GET per output
  object and one of the manifest); a map body call GETs its input (the items chunk, or the previous
  body step's output for the same items) and PUTs its output. Step Functions' own requests (the
  ItemReader's GET, the ResultWriter's PUTs) are counted apart, as an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lokki_sam.config import Config
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.names import START_STATE
from lokki_sam.plan import prices
from lokki_sam.plan.sizing import MapSize

LIST_PAGE = 1000  # ListObjectsV2 returns at most 1,000 keys a request
TASK_EVENTS = 5  # TaskStateEntered, TaskScheduled, TaskStarted, TaskSucceeded, TaskStateExited
DISTRIBUTED_MAP_EVENTS = 6  # MapStateEntered/Started, MapRunStarted/Succeeded, MapStateSucceeded/Exited
INLINE_MAP_EVENTS = 4  # MapStateEntered, MapStateStarted, MapStateSucceeded, MapStateExited
ITERATION_EVENTS = 2  # MapIterationStarted, MapIterationSucceeded
EXECUTION_EVENTS = 2  # ExecutionStarted, ExecutionSucceeded
PASS_EVENTS = 2  # PassStateEntered, PassStateExited
# Estimated: the ItemReader reads the manifest once; the ResultWriter writes manifest.json and a
# results file (nothing reads them).
ITEM_READER_GETS = 1
RESULT_WRITER_PUTS = 2


@dataclass(frozen=True)
class Function:
    """A step's Lambda function as `generate` writes it (step options, else config defaults)."""

    step: str
    memory: int
    timeout: int
    architecture: str


def functions(graph: FlowGraph, config: Config) -> dict[str, Function]:
    """The Lambda steps' functions (a Batch step's jobs: plan/batch.py)."""
    out = {}
    for step in graph.steps:
        opts = step.options
        if opts.on_batch:
            continue
        out[step.name] = Function(
            step.name,
            opts.memory if opts.memory is not None else int(config.get("memory", 512)),
            opts.timeout if opts.timeout is not None else int(config.get("timeout", 300)),
            opts.architecture or str(config.get("architecture", "arm64")),
        )
    return out


@dataclass
class StageCount:
    """One state of the parent state machine and everything it causes."""

    id: str
    kind: str
    invocations: int = 0
    transitions: int = 0
    history_events: int = 0
    puts: int = 0  # PutObject by the handler
    gets: int = 0  # GetObject by the handler
    lists: int = 0  # ListObjectsV2 by the handler
    items: int | None = None
    children: int | None = None
    execution_type: str | None = None
    gb_seconds: float | None = 0.0  # Lambda; None when durations are unknown
    lambda_duration_usd: float | None = 0.0
    express_requests: int = 0
    express_gb_seconds: float | None = 0.0  # what this run bills (EXPRESS children only)
    children_gb_seconds: float | None = None  # the children's Express duration, whatever their type
    longest_child_seconds: float | None = None
    sfn_gets: int = 0  # by Step Functions itself (estimated)
    sfn_puts: int = 0
    body_states: int = 0

    @property
    def s3_requests(self) -> int:
        return self.puts + self.gets + self.lists

    @property
    def standard_usd(self) -> float:
        return self.transitions * prices.STANDARD_TRANSITION_USD

    def children_usd(self, execution_type: str) -> float | None:
        """A distributed map's children with either child type (None: Express duration unknown).
        Both pay the transition that starts each child; STANDARD ones their body states too."""
        if self.children is None:
            return None
        started = self.children * prices.STANDARD_TRANSITION_USD
        if execution_type == "STANDARD":
            return started + self.children * self.body_states * prices.STANDARD_TRANSITION_USD
        if self.children_gb_seconds is None:
            return None
        requests = self.children * prices.EXPRESS_REQUEST_USD
        return started + requests + self.children_gb_seconds * prices.EXPRESS_GB_SECOND_USD

    @property
    def s3_usd(self) -> float:
        puts = self.puts + self.lists + self.sfn_puts
        return puts * prices.S3_PUT_USD + (self.gets + self.sfn_gets) * prices.S3_GET_USD

    @property
    def usd(self) -> float:
        """What is known: transitions, requests, and durations where measured."""
        total = self.standard_usd + self.invocations * prices.LAMBDA_REQUEST_USD + self.s3_usd
        total += self.lambda_duration_usd or 0.0
        total += self.express_requests * prices.EXPRESS_REQUEST_USD
        total += (self.express_gb_seconds or 0.0) * prices.EXPRESS_GB_SECOND_USD
        return total

    @property
    def durations_known(self) -> bool:
        return self.gb_seconds is not None and self.express_gb_seconds is not None


def count(
    graph: FlowGraph,
    sizes: Mapping[str, MapSize],
    funcs: Mapping[str, Function],
    seconds: Mapping[str, Sequence[float]] | None,
) -> list[StageCount]:
    """Every stage of one run: the Pass state, then the flow's stages in order."""
    start = StageCount(START_STATE, "Pass", transitions=1, history_events=EXECUTION_EVENTS + PASS_EVENTS)
    out = [start]
    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            out.append(_map(stage, sizes[stage.id], funcs, seconds))
        else:
            out.append(_task(graph, stage, sizes, funcs, seconds))
    return out


def _task(
    graph: FlowGraph,
    node: Node,
    sizes: Mapping[str, MapSize],
    funcs: Mapping[str, Function],
    seconds: Mapping[str, Sequence[float]] | None,
) -> StageCount:
    fed = graph.map_fed_by(node.id)
    kind = f"task -> {fed.id}" if fed else "task"
    stage = StageCount(node.id, kind, invocations=1, transitions=1, history_events=TASK_EVENTS)
    if node.step.options.on_batch:  # a job, not an invocation (plan/batch.py counts it)
        stage.kind = f"Batch {kind}"
        stage.invocations = 0
        if fed is not None:  # the job's result is read back by one more Task (S3 GetObject)
            stage.transitions, stage.history_events, stage.sfn_gets, stage.puts = 2, 2 * TASK_EVENTS, 1, 1
    if node.input_from is not None:  # execution.input_of
        upstream = graph.get(node.input_from)
        if isinstance(upstream, MapBlock):
            # gather: GET the source's pointer and manifest, LIST the last body step's outputs, GET each
            objects = _calls(upstream, sizes[upstream.id].items)
            stage.lists = max(1, -(-objects // LIST_PAGE))
            stage.gets = objects + 2
        else:  # GET the step's pointer, then its output
            stage.gets = 2
    stage.puts += 1  # the step's pointer (execution.write_pointer), after its output
    if fed is None:
        stage.puts += 1
    else:  # the items chunks, then the manifest; an INLINE map's manifest is also returned into the state
        stage.puts += sizes[fed.id].chunks + 1
        if fed.options.mode == "inline":
            stage.gets += 1
    _lambda_durations(stage, [node], 1, funcs, seconds)
    return stage


def _calls(block: MapBlock, items: int) -> int:
    """Invocations per body step: one per child (batch) of a distributed map, one per INLINE item."""
    if block.options.mode == "inline":
        return items
    return -(-items // block.options.batch_size)


def _map(
    block: MapBlock,
    size: MapSize,
    funcs: Mapping[str, Function],
    seconds: Mapping[str, Sequence[float]] | None,
) -> StageCount:
    calls = _calls(block, size.items)
    body = len(block.nodes)
    stage = StageCount(block.id, "", items=size.items, body_states=body)
    stage.gets = stage.puts = calls * body
    stage.invocations = calls * sum(not n.step.options.on_batch for n in block.nodes)  # Batch: jobs instead
    if block.options.mode == "inline":
        stage.kind = "map (INLINE)"
        stage.transitions = 1 + size.items * body
        stage.history_events = INLINE_MAP_EVENTS + size.items * (ITERATION_EVENTS + TASK_EVENTS * body)
    else:
        express = block.options.execution_type == "EXPRESS"
        stage.kind = f"map ({block.options.execution_type} children)"
        stage.children = calls
        stage.execution_type = block.options.execution_type
        stage.transitions = 1 + calls + (0 if express else calls * body)
        stage.history_events = DISTRIBUTED_MAP_EVENTS
        stage.sfn_gets, stage.sfn_puts = ITEM_READER_GETS, RESULT_WRITER_PUTS
        if express:
            stage.express_requests = calls
    _lambda_durations(stage, list(block.nodes), calls, funcs, seconds)
    if stage.children is not None:
        _child_durations(stage, block, calls, seconds)
    return stage


def per_call(measured: Sequence[float] | None, calls: int) -> tuple[Sequence[float], int] | None:
    """The measured durations as (values, repeat): the calls themselves when the local run made
    exactly `calls`, else their mean `calls` times (map sizes given by --items)."""
    if not measured:
        return None if calls else ((), 0)
    if len(measured) == calls:
        return measured, 1
    return [sum(measured) / len(measured)], calls


def _lambda_durations(
    stage: StageCount,
    nodes: Sequence[Node],
    calls: int,
    funcs: Mapping[str, Function],
    seconds: Mapping[str, Sequence[float]] | None,
) -> None:
    gb_seconds = usd = 0.0
    for node in (n for n in nodes if not n.step.options.on_batch):  # Batch jobs bill Fargate (plan/batch.py)
        found = per_call(seconds.get(node.id) if seconds else None, calls)
        if found is None:
            stage.gb_seconds = stage.lambda_duration_usd = None
            return
        values, repeat = found
        function = funcs[node.step.name]
        billed = sum(math.ceil(v * 1000) for v in values) * repeat / 1000  # Lambda bills whole ms
        node_gb_seconds = billed * function.memory / 1024
        gb_seconds += node_gb_seconds
        usd += node_gb_seconds * prices.LAMBDA_GB_SECOND_USD[function.architecture]
    stage.gb_seconds, stage.lambda_duration_usd = gb_seconds, usd


def _child_durations(
    stage: StageCount, block: MapBlock, calls: int, seconds: Mapping[str, Sequence[float]] | None
) -> None:
    """A child's duration is its body's calls in sequence (the orchestration between them is not
    measured): the longest for the 5-minute Express limit, their sum billed as Express duration."""
    found = [per_call(seconds.get(n.id) if seconds else None, calls) for n in block.nodes]
    if calls == 0:
        stage.longest_child_seconds = stage.children_gb_seconds = 0.0
        return
    if any(f is None for f in found):
        if stage.express_requests:
            stage.express_gb_seconds = None
        return
    parts = [f for f in found if f is not None]
    if all(repeat == 1 for _, repeat in parts):
        children = [sum(values) for values in zip(*(v for v, _ in parts), strict=True)]
        repeat = 1
    else:
        children, repeat = [sum(sum(v) / len(v) for v, _ in parts)], calls
    stage.longest_child_seconds = max(children)
    step = prices.EXPRESS_BILLING_MS
    billed_ms = sum(math.ceil(c * 1000 / step) * step for c in children) * repeat
    stage.children_gb_seconds = billed_ms / 1000 * prices.EXPRESS_MEMORY_MB / 1024
    if stage.express_requests:
        stage.express_gb_seconds = stage.children_gb_seconds
