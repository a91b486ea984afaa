"""`lokki-sam plan`: what one run of a flow will do and cost in the cloud, before deploying it.

    make_plan(graph, raw_params, items, ...) -> Plan      size the maps, count, check limits
    render.text(plan) / render.as_json(plan)              what the command prints

Steps, in order: resolve the parameters as a run would; size every map, from `--items` or by
running its source steps locally (`sizing.py`), the whole flow with `measure`; count each stage's
invocations, transitions, history events and S3 requests (`model.py`); check the limits
(`limits.py`). Prices and limits are constants (`prices.py`). No AWS call is made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam.config import Config
from lokki_sam.ir import FlowGraph
from lokki_sam.params import resolve_params
from lokki_sam.plan import batch, limits, model, prices, sizing
from lokki_sam.plan.batch import BatchJobs
from lokki_sam.plan.limits import Deployment, Limit
from lokki_sam.plan.model import StageCount
from lokki_sam.plan.sizing import LocalPass, MapSize, PlanError
from lokki_sam.streams import stdout_to_stderr

__all__ = ["Plan", "PlanError", "make_plan", "parse_items"]

# Far beyond the ItemReader's limit (a plan shows by how much a size is over it), small enough
# for every figure to stay a finite float in USD.
MAX_PLANNED_ITEMS = 10**15
ITEMS_HINT = "--items N (every map) or --items MAP=N (one map; map ids as `lokki-sam graph` shows them)"


@dataclass
class Plan:
    graph: FlowGraph
    params: dict[str, Any]
    sizes: dict[str, MapSize]
    stages: list[StageCount]
    limits: list[Limit]
    target: Deployment
    measured: bool
    notes: list[str] = field(default_factory=list)
    batch: list[BatchJobs] = field(default_factory=list)  # the Batch steps' jobs (plan/batch.py)

    @property
    def lambda_invocations(self) -> int:
        return sum(s.invocations for s in self.stages)

    @property
    def state_transitions(self) -> int:
        return sum(s.transitions for s in self.stages)

    @property
    def s3_requests(self) -> int:
        return sum(s.s3_requests for s in self.stages)

    @property
    def history_events(self) -> int:
        return sum(s.history_events for s in self.stages)

    @property
    def usd(self) -> float:
        return sum(s.usd for s in self.stages) + sum(j.usd or 0.0 for j in self.batch)

    @property
    def durations_known(self) -> bool:
        return all(s.durations_known for s in self.stages) and all(j.usd is not None for j in self.batch)

    @property
    def exceeded(self) -> list[Limit]:
        return [limit for limit in self.limits if limit.ok is False]


def parse_items(values: Sequence[str], graph: FlowGraph) -> dict[str, int]:
    """`--items N` (every map) and `--items MAP=N` (one map, which wins) -> {map id: N}."""
    where = f"flow '{graph.name}'"
    maps = [m.id for m in graph.maps]
    if values and not maps:
        raise PlanError("--items was given, but the flow has no .map() to size", where=where, hint="drop --items")
    every: int | None = None
    one: dict[str, int] = {}
    for value in values:
        name, sep, number = value.rpartition("=")
        count = _count(number if sep else value, value, where)
        if not sep:
            if every is not None:
                raise PlanError(f"--items {value}: a size for every map is given twice", where=where, hint=ITEMS_HINT)
            every = count
            continue
        if name not in maps:
            raise PlanError(
                f"--items {value}: the flow has no map '{name}'", where=where, hint=f"its maps: {', '.join(maps)}"
            )
        if name in one:
            raise PlanError(f"--items {value}: map '{name}' is given twice", where=where, hint=ITEMS_HINT)
        one[name] = count
    out = dict.fromkeys(maps, every) if every is not None else {}
    out.update(one)
    return {k: v for k, v in out.items() if v is not None}


def _count(text: str, value: str, where: str) -> int:
    try:
        count = int(text.strip().replace("_", ""))
    except ValueError:
        raise PlanError(f"--items {value!r}: {text!r} is not a whole number", where=where, hint=ITEMS_HINT) from None
    if count < 0:
        raise PlanError(f"--items {value!r}: a map cannot have {count} items", where=where, hint=ITEMS_HINT)
    if count > MAX_PLANNED_ITEMS:
        raise PlanError(
            f"--items {value!r}: more items than any run could have (plan takes up to {MAX_PLANNED_ITEMS:,}; "
            f"a distributed map reads at most {prices.MAX_READER_ITEMS:,})",
            where=where,
            hint=ITEMS_HINT,
        )
    return count


def resolve_deployment(config: Config, stack_name: str | None, config_env: str) -> Deployment:
    """The stack as `invoke` resolves it (cloud/stack.py), without asking AWS; else an assumption."""
    from lokki_sam.cloud.stack import SAMCONFIG, read_samconfig

    if stack_name:
        return Deployment(stack_name, "--stack-name")
    path = Path.cwd() / SAMCONFIG
    sam = read_samconfig(path, config_env)
    if sam.get("stack_name"):
        return Deployment(str(sam["stack_name"]), f"{SAMCONFIG} [{config_env}]")
    if config.get("stack_name"):
        return Deployment(str(config["stack_name"]), "lokki.toml stack_name")
    return Deployment("s" * prices.TYPICAL_STACK_NAME, "assumed")


def make_plan(
    graph: FlowGraph,
    raw_params: Mapping[str, Any],
    items: Sequence[str] = (),
    *,
    config: Config,
    measure: bool = False,
    stack_name: str | None = None,
    config_env: str = "default",
) -> Plan:
    params = resolve_params(graph.params, raw_params, where=f"flow '{graph.name}'")
    given = parse_items(items, graph)
    target = resolve_deployment(config, stack_name, config_env)
    local = LocalPass(graph, params)
    try:
        with stdout_to_stderr():  # a step's output must not mix with the plan (`--json` on stdout)
            sizes = _size(graph, given, local, measure)
        written = local.largest_objects() if measure else None
    finally:
        local.close()
    funcs = model.functions(graph, config)
    seconds = local.measured.seconds if measure else None
    stages = model.count(graph, sizes, funcs, seconds)
    checked = limits.check(graph, stages, sizes, funcs, params, target, written)
    jobs = batch.jobs(graph, sizes, config.values, seconds)
    checked += batch.limits(graph, jobs, params, config.values)
    plan = Plan(graph, dict(params), sizes, stages, checked, target, measure, batch=jobs)
    plan.notes = _notes(plan, written, local.measured.retries)
    return plan


def _size(graph: FlowGraph, given: Mapping[str, int], local: LocalPass, measure: bool) -> dict[str, MapSize]:
    wanted = [m for m in graph.maps if m.id not in given]
    if measure:
        local.run(graph.stages, "for --measure")
    elif wanted:
        local.run(sizing.stages_to_size(graph, wanted), f"to size {', '.join(m.id for m in wanted)}")
    sizes: dict[str, MapSize] = {}
    for block in graph.maps:
        if block.id in given:
            sizes[block.id] = sizing.sized_by_items(given[block.id], block.options.batch_size)
        else:
            sizes[block.id] = local.map_size(block)
    return sizes


def _notes(plan: Plan, written: Mapping[str, int] | None, retries: Mapping[str, int]) -> list[str]:
    notes = [
        "counts are for one run without retries or redrives; each retry adds its invocations and transitions",
        "S3 requests are the Lambda handler's; Step Functions' own (ItemReader GET, ResultWriter PUTs) are "
        "estimated apart and priced in the USD",
    ]
    if retries:
        shown = ", ".join(f"{node} {count}x" for node, count in retries.items())
        notes.append(
            f"the local run retried ({shown}) as the steps' Retry allows: durations are the successful attempts'"
        )
    for map_id, map_size in plan.sizes.items():
        if map_size.estimated:
            notes.append(
                f"{map_id}: {map_size.items} items from --items; its {map_size.chunks} items chunk(s) assume items "
                "under ~1 KiB each (an estimate: larger items make more chunks, one PUT each)"
            )
    if plan.measured:
        notes.append(
            "durations: this machine's local run, one call per invocation (no cold starts; Lambda's CPU "
            "scales with memory); Express children: their Lambda calls in sequence, 64 MB billed"
        )
    else:
        notes.append("durations unknown: GB-seconds and Express duration are not in the USD (add --measure)")
    big = [n for n, b in (written or {}).items() if b > 16 * 1024**2]
    if big:
        notes.append(
            f"objects over 16 MiB ({', '.join(big)}): multipart uploads and ranged GETs add requests beyond "
            "the counts (a lower bound there)"
        )
    if plan.target.stack_source == "assumed":
        notes.append(
            f"no stack name given or configured: names checked with a {prices.TYPICAL_STACK_NAME}-character stack "
            "(pass --stack-name)"
        )
    notes.append("USD: AWS list prices for us-east-1 as of 2026, no free tier; they change, other regions differ")
    return notes
