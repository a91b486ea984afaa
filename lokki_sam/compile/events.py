"""Sample events for `sam local invoke <Function> -e events/<flow>/<node>.json`.

Each event is the payload the state machine sends that step's function (a Batch step has none: its
job runs `lokki-sam run`'s way), computed from the
compiled definition itself (its `Payload` templates resolved against a sample execution), so
the events always match what `lokki_sam.compile.asl` generates:

- a step outside maps gets `{"node", "run_id", "params", "lokki"}` (`events/<flow>/<node>.json`);
- a step inside a map gets `{"node", "map", "input", "lokki"}`:
  - `events/<flow>/<node>.json`: `input` asks for every item of the sample run at once
    (`{"AllItems": true, ...}`, a shape only sample events use), so invoking every step's
    `<node>.json` in flow order runs the whole flow;
  - `<node>.item.json`: exactly what the state machine sends for one item;
  - `<node>.batch.json` (maps with `batch_size > 1`): exactly what it sends for a batch.

All events of a flow share the run id `sample-run`: invoke the steps in flow order against a
real (or emulated) bucket and each one finds what the previous one stored. Parameters take their
defaults, except secret-looking ones and required ones, which hold a placeholder to replace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lokki_sam import names
from lokki_sam.compile import asl
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.params import MISSING, same_value
from lokki_sam.protocol import ALL_ITEMS, CHUNK, DIGEST, INDEX, SOURCE
from lokki_sam.secret_check import name_looks_secret, value_looks_secret

SAMPLE_RUN_ID = "sample-run"
# events/env.json, for `sam local invoke --env-vars`: a bucket in a local S3 on the machine, at the
# port of `lokki-sam emulator start`, and the prefix of stack "local" (SAM's AWS::StackName under
# sam local). The function runs in a container: host.docker.internal is the machine (Docker Desktop
# defines it; elsewhere `--add-host host.docker.internal:host-gateway`, as SAM does for its own emulators).
ENV_FILE = "env.json"
LOCAL_BUCKET = "lokki-sam-local"
LOCAL_ENDPOINT = "http://host.docker.internal:4566"
LOCAL_STACK = "local"
PLACEHOLDER = "<required: set a value>"
SECRET_PLACEHOLDER = "<secret: set it here, never in a committed file>"


def sample_params(graph: FlowGraph) -> dict[str, Any]:
    """The execution input of a sample run: every parameter's default where JSON holds it and it
    does not look like a secret (those get a placeholder: generated files never carry secrets).
    A default JSON cannot hold exactly (a date, a tuple, nan) is left out: the runtime applies it."""
    params: dict[str, Any] = {}
    for p in graph.params:
        value = PLACEHOLDER if p.default is MISSING else p.default
        if p.default is not MISSING and (name_looks_secret(p.name) or value_looks_secret(p.default)):
            value = SECRET_PLACEHOLDER
        try:
            exact = same_value(json.loads(json.dumps(value, allow_nan=False)), value)
        except (TypeError, ValueError):
            exact = False
        if exact:
            params[p.name] = value
    return params


def flow_events(graph: FlowGraph) -> dict[str, dict[str, Any]]:
    """File name (relative to events/<flow>/) -> event, for every node of the flow."""
    definition = asl.compile_flow(graph)
    states = definition["States"]
    params = sample_params(graph)
    context = {"Execution": {"Name": SAMPLE_RUN_ID}}
    top_input: dict[str, Any] = {"params": params}
    out: dict[str, dict[str, Any]] = {}
    for stage in graph.stages:
        if isinstance(stage, Node):
            if not stage.step.options.on_batch:  # a Batch step has no function to invoke
                out[f"{stage.id}.json"] = _payload(states[stage.id], top_input, context)
            continue
        out.update(_map_events(stage, states[stage.id], top_input, context))
    return out


def _map_events(
    block: MapBlock, state: dict[str, Any], top_input: dict[str, Any], context: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    body = state["ItemProcessor"]["States"]
    selector = state.get("ItemSelector", {})

    # What only a run knows (the item's content digest, the source output's identity) is left out:
    # the runtime then reads it from the run's manifest and pointer (protocol.ItemRef).
    unknown = {"d": None}
    sample_selector = {k: v for k, v in selector.items() if k != f"{SOURCE}.$"}

    def item(index: int) -> Any:
        value = {"i": index, "c": 0, **unknown}
        item_context = {**context, "Map": {"Item": {"Index": index, "Value": value}}}
        resolved = resolve(sample_selector, top_input, item_context)
        return {k: v for k, v in resolved.items() if v is not None}

    out: dict[str, dict[str, Any]] = {}
    batcher = state.get("ItemBatcher")
    # Every item of the sample run in one invocation: invoking the steps in flow order completes the map.
    every_item = {k: v for k, v in item(0).items() if k not in (INDEX, CHUNK, DIGEST)} | {ALL_ITEMS: True}
    for node in block.nodes:
        if node.step.options.on_batch:
            continue
        out[f"{node.id}.json"] = _payload(body[node.id], every_item, context)
        out[f"{node.id}.item.json"] = _payload(body[node.id], item(0), context)
        if batcher:
            batch = {
                "Items": [item(i) for i in range(min(2, int(batcher.get("MaxItemsPerBatch", 2))))],
                "BatchInput": resolve(
                    {k: v for k, v in batcher.get("BatchInput", {}).items() if k != f"{SOURCE}.$"}, top_input, context
                ),
            }
            out[f"{node.id}.batch.json"] = _payload(body[node.id], batch, context)
    return out


def _payload(task: dict[str, Any], state_input: Any, context: dict[str, Any]) -> dict[str, Any]:
    payload = resolve(task["Parameters"]["Payload"], state_input, context)
    assert isinstance(payload, dict)
    return payload


def resolve(template: Any, state_input: Any, context: dict[str, Any]) -> Any:
    """Evaluate an ASL payload template (`"key.$": "$.path"` / `"$$.path"`) on a sample input."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                out[key[:-2]] = _path(value, state_input, context)
            else:
                out[key] = resolve(value, state_input, context)
        return out
    if isinstance(template, list):
        return [resolve(v, state_input, context) for v in template]
    return template


def _path(path: str, state_input: Any, context: dict[str, Any]) -> Any:
    if path.startswith("$$"):
        node: Any = context
        rest = path[2:]
    elif path.startswith("$"):
        node = state_input
        rest = path[1:]
    else:
        raise ValueError(f"unsupported path {path!r} in a payload template")
    for part in filter(None, rest.split(".")):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"sample events cannot resolve {path!r}")
        node = node[part]
    return node


def render_event(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2, sort_keys=True) + "\n"


def local_env(graphs: Sequence[FlowGraph]) -> dict[str, dict[str, str]]:
    """events/env.json: per function, what `sam local invoke` cannot know (it resolves the bucket to
    the literal logical ID `ArtifactBucket`, and Lambda's S3 is not a local one). SAM's --env-vars
    overrides only variables the template declares: every function declares these three."""
    out: dict[str, dict[str, str]] = {}
    for graph in graphs:
        for step in (s for s in graph.steps if not s.options.on_batch):
            out[names.function_id(graph.name, step.name)] = {
                names.ENV_BUCKET: LOCAL_BUCKET,
                names.ENV_ENDPOINT_URL: LOCAL_ENDPOINT,
                names.ENV_PREFIX: names.flow_prefix(LOCAL_STACK, graph.name),
            }
    return dict(sorted(out.items()))
