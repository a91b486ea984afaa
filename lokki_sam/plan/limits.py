"""The service limits one run could hit, each with the planned value, the limit and what to do.

Sizes are computed from the payloads the definition builds (compile/asl.py, protocol.py) as
compact JSON: Step Functions measures UTF-8 bytes of its JSON, whose spacing may differ slightly.
Names and environments are those `generate` writes (compile/sam.py); where the deployed value is
not known yet (the bucket's name, the stack when none is given) the longest or a typical one is
assumed and the row says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lokki_sam import __version__, layout, names
from lokki_sam.compile import asl
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.plan import prices
from lokki_sam.plan.model import Function, StageCount
from lokki_sam.plan.sizing import MapSize
from lokki_sam.protocol import MapSourceResult
from lokki_sam.serialization import DIGEST_LENGTH

KIB = 1024
MB = 1024**2

PLACEHOLDER_ID = "0" * DIGEST_LENGTH  # an identity or digest as long as the real ones


@dataclass(frozen=True)
class Limit:
    check: str
    where: str
    value: float | None  # None: not known without --measure
    limit: float
    unit: str
    ok: bool | None
    fix: str
    note: str = ""


@dataclass(frozen=True)
class Deployment:
    """What the checks assume about the deployed stack."""

    stack: str
    stack_source: str  # "--stack-name", "samconfig.toml [default]", ... or "assumed"
    bucket: str = "b" * prices.MAX_BUCKET_NAME


def size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def check(
    graph: FlowGraph,
    stages: Sequence[StageCount],
    sizes: Mapping[str, MapSize],
    funcs: Mapping[str, Function],
    params: Mapping[str, Any],
    target: Deployment,
    written: Mapping[str, int] | None,
) -> list[Limit]:
    run_id = layout.new_run_id(graph.name)  # what `invoke` names the execution
    maps = {m.id: m for m in graph.maps}
    out = [_input(params)]
    for stage in stages:
        if stage.id in maps:
            block = maps[stage.id]
            out.extend(_map_limits(graph, block, stage, sizes[block.id], funcs, params, target, run_id))
    out.append(_history(stages))
    out.extend(_function_limits(graph, funcs, target, written))
    out.extend(_names(graph, target, run_id))
    return out


def _input(params: Mapping[str, Any]) -> Limit:
    n = size(dict(params))
    return Limit(
        "execution input (the parameters)",
        "StartExecution",
        n,
        prices.MAX_PAYLOAD_BYTES,
        "bytes",
        n <= prices.MAX_PAYLOAD_BYTES,
        "pass large inputs by reference: a parameter naming an S3 key or a file the first step reads",
    )


def _history(stages: Sequence[StageCount]) -> Limit:
    events = sum(s.history_events for s in stages)
    return Limit(
        "parent execution history",
        "Standard workflow",
        events,
        prices.MAX_HISTORY_EVENTS,
        "events",
        events <= prices.MAX_HISTORY_EVENTS,
        "use mode='distributed' for large maps: an INLINE map writes every item's events into the parent's history",
    )


# ------------------------------------------------------------------------------------- maps


def _map_limits(
    graph: FlowGraph,
    block: MapBlock,
    stage: StageCount,
    map_size: MapSize,
    funcs: Mapping[str, Function],
    params: Mapping[str, Any],
    target: Deployment,
    run_id: str,
) -> list[Limit]:
    if block.options.mode == "inline":
        return [_inline_state(graph, block, map_size, params, target, run_id)]
    out = [_child_input(graph, block, map_size, params, run_id)]
    out.append(
        Limit(
            "ItemReader items",
            block.id,
            map_size.items,
            prices.MAX_READER_ITEMS,
            "items",
            map_size.items <= prices.MAX_READER_ITEMS,
            "split the source's list over several runs or maps",
        )
    )
    out.append(
        Limit(
            "ItemReader manifest object",
            block.id,
            map_size.manifest_bytes,
            prices.MAX_READER_BYTES,
            "bytes",
            map_size.manifest_bytes <= prices.MAX_READER_BYTES,
            "split the source's list over several runs or maps",
            "the size commonly given for a JSON item source; the AWS documentation does not state it",
        )
    )
    if block.options.execution_type == "EXPRESS":
        out.append(_express_duration(block, stage, funcs))
    return out


def _inline_state(
    graph: FlowGraph, block: MapBlock, map_size: MapSize, params: Mapping[str, Any], target: Deployment, run_id: str
) -> Limit:
    """The state after the source: the params plus {Bucket, Key, count, Items}, Items being the manifest."""
    manifest = layout.manifest(run_id, block.source, PLACEHOLDER_ID)
    key = names.flow_prefix(target.stack, graph.name) + "/" + manifest
    empty = MapSourceResult(target.bucket, key, map_size.items, PLACEHOLDER_ID, []).to_payload()
    # {"params": ..., "items": ...} as asl.PARAMS / asl.ITEMS place them; "[]" replaced by the manifest
    n = size({"params": dict(params), "items": empty}) - 2 + map_size.manifest_bytes
    return Limit(
        "INLINE map state (the manifest in the state)",
        block.id,
        n,
        prices.MAX_PAYLOAD_BYTES,
        "bytes",
        n <= prices.MAX_PAYLOAD_BYTES,
        "use mode='distributed' (the default): its state holds only the manifest's location",
    )


def _child_input(graph: FlowGraph, block: MapBlock, map_size: MapSize, params: Mapping[str, Any], run_id: str) -> Limit:
    """The largest Lambda payload of a child: its item (or batch) with the run id and params."""
    last = max(map_size.items - 1, 0)
    chunk = layout.chunk_start(last, block.options.batch_size)
    context = {"run_id": run_id, "params": dict(params), "source": PLACEHOLDER_ID}
    item = {"i": last, "c": chunk, "d": PLACEHOLDER_ID, **context}
    batch = block.options.batch_size
    payload: Any = item
    more = 0  # the batch's other items, each as long as the first, and a comma
    if batch > 1:
        payload = {"Items": [item], "BatchInput": context}
        more = (max(1, min(batch, map_size.items)) - 1) * (size(item) + 1)
    node = max(block.nodes, key=lambda n: len(n.id))
    event = {"node": node.id, "map": block.id, "input": payload, "lokki": asl.stamp(graph, node).to_json()}
    n = size(event) + more
    return Limit(
        "map child input (one batch, as the Lambda payload)",
        block.id,
        n,
        prices.MAX_PAYLOAD_BYTES,
        "bytes",
        n <= prices.MAX_PAYLOAD_BYTES,
        "lower batch_size, or pass large parameters by reference (every item carries the parameters)",
    )


def _express_duration(block: MapBlock, stage: StageCount, funcs: Mapping[str, Function]) -> Limit:
    bound = sum(funcs[n.step.name].timeout for n in block.nodes)
    fix = "use execution_type='STANDARD', or a smaller batch_size"
    what = "EXPRESS child duration"
    if stage.longest_child_seconds is not None:
        seconds = stage.longest_child_seconds
        return Limit(
            what, block.id, seconds, prices.MAX_EXPRESS_SECONDS, "s", seconds <= prices.MAX_EXPRESS_SECONDS, fix
        )
    if bound <= prices.MAX_EXPRESS_SECONDS:
        return Limit(
            what, block.id, bound, prices.MAX_EXPRESS_SECONDS, "s", True, fix, "bounded by the body steps' timeouts"
        )
    return Limit(what, block.id, None, prices.MAX_EXPRESS_SECONDS, "s", None, "measure it: lokki-sam plan --measure")


# -------------------------------------------------------------------------------- functions


def environment(graph: FlowGraph, step: str, target: Deployment) -> dict[str, str]:
    """A function's environment as compile/sam.py writes it, with the deployed values filled in."""
    options = next(s.options for s in graph.steps if s.name == step)
    variables = dict(options.environment)
    variables.update(
        {
            names.ENV_MODULE: graph.module,
            names.ENV_FLOW: graph.name,
            names.ENV_STEP: step,
            names.ENV_BUCKET: target.bucket,
            names.ENV_PREFIX: names.flow_prefix(target.stack, graph.name),
            names.ENV_VERSION: __version__,
            names.ENV_ENDPOINT_URL: "",
        }
    )
    return variables


def _worst(values: Mapping[str, float]) -> tuple[str, float]:
    name = max(values, key=lambda k: values[k])
    return name, values[name]


def _function_limits(
    graph: FlowGraph, funcs: Mapping[str, Function], target: Deployment, written: Mapping[str, int] | None
) -> list[Limit]:
    def label(step: str) -> str:
        return names.function_id(graph.name, step)

    out: list[Limit] = []
    if not funcs:  # every step a Batch job: no function
        return out
    bad_memory = [f for f in funcs.values() if not prices.LAMBDA_MIN_MEMORY <= f.memory <= prices.LAMBDA_MAX_MEMORY]
    shown = bad_memory[0] if bad_memory else max(funcs.values(), key=lambda f: f.memory)
    out.append(
        Limit(
            "Lambda memory",
            label(shown.step),
            shown.memory,
            prices.LAMBDA_MAX_MEMORY,
            "MB",
            not bad_memory,
            f"memory between {prices.LAMBDA_MIN_MEMORY} and {prices.LAMBDA_MAX_MEMORY} MB (@step(memory=...) "
            "or config 'memory')",
        )
    )
    step, timeout = _worst({f.step: f.timeout for f in funcs.values()})
    out.append(
        Limit(
            "Lambda timeout",
            label(step),
            timeout,
            prices.LAMBDA_MAX_TIMEOUT,
            "s",
            timeout <= prices.LAMBDA_MAX_TIMEOUT,
            "split the step in two, or give a map a smaller batch_size",
        )
    )
    step, env = _worst({s: size(environment(graph, s, target)) for s in funcs})
    out.append(
        Limit(
            "Lambda environment variables",
            label(step),
            env,
            prices.LAMBDA_MAX_ENVIRONMENT_BYTES,
            "bytes",
            env <= prices.LAMBDA_MAX_ENVIRONMENT_BYTES,
            "keep configuration in SSM parameters and put their names in @step(environment=...)",
        )
    )
    out.append(_tmp(graph, target, written, label))
    return out


def inputs_of(graph: FlowGraph, node: Node) -> list[str]:
    """The nodes whose stored objects `node` reads."""
    if node.in_map is not None:
        block = graph.get(node.in_map)
        assert isinstance(block, MapBlock)
        position = block.nodes.index(node)
        return [block.source if position == 0 else block.nodes[position - 1].id]
    if node.input_from is None:
        return []
    upstream = graph.get(node.input_from)
    return [upstream.last.id if isinstance(upstream, MapBlock) else upstream.id]


def _tmp(graph: FlowGraph, target: Deployment, written: Mapping[str, int] | None, label: Any) -> Limit:
    what = "Lambda /tmp (artifacts over 16 MiB pass through it)"
    fix = "add EphemeralStorage (up to 10240 MB) to the function in template.yaml"
    if written is None:
        return Limit(
            what, "every function", None, prices.LAMBDA_DEFAULT_TMP_BYTES, "bytes", None, "measure it: --measure"
        )
    by_step: dict[str, float] = {}
    for node in graph.nodes:
        touched = max([written.get(node.id, 0), *(written.get(i, 0) for i in inputs_of(graph, node))])
        by_step[node.step.name] = max(by_step.get(node.step.name, 0.0), float(touched))
    step, biggest = _worst(by_step)
    return Limit(
        what,
        label(step),
        biggest,
        prices.LAMBDA_DEFAULT_TMP_BYTES,
        "bytes",
        biggest <= prices.LAMBDA_DEFAULT_TMP_BYTES,
        fix,
        "local sizes, uncompressed: an upper bound",
    )


# ------------------------------------------------------------------------------------ names


def _names(graph: FlowGraph, target: Deployment, run_id: str) -> list[Limit]:
    assumed = f" (stack name assumed: {len(target.stack)} characters)" if target.stack_source == "assumed" else ""
    machine = f"{target.stack}-{graph.name}"
    out = [
        Limit(
            "state machine name <stack>-<flow>",
            machine,
            len(machine),
            prices.MAX_STATE_MACHINE_NAME,
            "characters",
            len(machine) <= prices.MAX_STATE_MACHINE_NAME,
            "a shorter stack name or @flow(name=...)",
            assumed.strip(" ()"),
        ),
        Limit(
            "execution name (the run id)",
            run_id,
            len(run_id),
            prices.MAX_EXECUTION_NAME,
            "characters",
            len(run_id) <= prices.MAX_EXECUTION_NAME,
            "a shorter flow name: @flow(name=...)",
        ),
    ]
    functions = [names.function_id(graph.name, s.name) for s in graph.steps if not s.options.on_batch]
    if not functions:  # every step a Batch job
        return out
    longest = max(functions, key=len)
    generated = len(target.stack) + 1 + len(longest) + 1 + prices.GENERATED_SUFFIX
    out.append(
        Limit(
            "function name <stack>-<LogicalId>-<suffix>",
            longest,
            generated,
            prices.LAMBDA_MAX_FUNCTION_NAME,
            "characters",
            True,
            "",
            "CloudFormation generates it and shortens longer names: the function's name will be cut"
            if generated > prices.LAMBDA_MAX_FUNCTION_NAME
            else assumed.strip(" ()"),
        )
    )
    return out
