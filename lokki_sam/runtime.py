"""The Lambda handler: one invocation runs one step (or one batch of map items) of a flow.

Every generated function uses `lokki_sam.runtime.handler`; its environment says which flow
module, flow and step it serves and where the artifact store is (see names.py). The
payload, built by the state machine (compile/asl.py), names the node and carries the run id
and the flow params; inputs and outputs are located by key through `lokki_sam.execution`, as
in a local run. The payload shapes are the classes of `lokki_sam.protocol`.

Cold start imports the standard library, lokki_sam's stdlib-only core, the user's module and
(when the first S3 client is made) boto3; module, graph and client are cached while warm.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lokki_sam import __version__, execution, layout, names
from lokki_sam.errors import LokkiError
from lokki_sam.execution import RunContext
from lokki_sam.ir import FlowGraph, Node
from lokki_sam.params import resolve_params
from lokki_sam.protocol import PROTOCOL_VERSION, MapEvent, MapSourceResult, Stamp, TaskEvent
from lokki_sam.store import S3Store, s3_client


class RuntimeConfigError(LokkiError):
    """The function's environment or its event does not fit the flow it serves."""


class FlowMismatch(RuntimeConfigError):
    """The state machine was generated from other flow code (or another lokki-sam) than the function runs."""


@dataclass(frozen=True)
class FunctionEnv:
    module: str
    flow: str
    step: str
    bucket: str
    prefix: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FunctionEnv:
        wanted = (names.ENV_MODULE, names.ENV_FLOW, names.ENV_STEP, names.ENV_BUCKET, names.ENV_PREFIX)
        missing = [name for name in wanted if not env.get(name)]
        if missing:
            raise RuntimeConfigError(
                f"environment variable(s) {', '.join(missing)} not set",
                where="lokki_sam.runtime",
                hint="regenerate the template with `lokki-sam generate`; it sets every LOKKI_* variable",
            )
        prefix = env[names.ENV_PREFIX].strip("/")
        layout.check_key(prefix)
        return cls(env[names.ENV_MODULE], env[names.ENV_FLOW], env[names.ENV_STEP], env[names.ENV_BUCKET], prefix)


_lock = threading.Lock()
_graphs: dict[tuple[str, str], FlowGraph] = {}


def reset_cache() -> None:
    """Forget cached graphs and the S3 client (tests; a new emulator)."""
    with _lock:
        _graphs.clear()
    _s3.cache_clear()


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Lambda entry point (`lokki_sam.runtime.handler`)."""
    return handle(event, os.environ)


def handle(event: Any, env: Mapping[str, str], client: Any = None) -> dict[str, Any]:
    """Run what `event` asks with the function environment `env` (handler() passes os.environ)."""
    settings = FunctionEnv.from_env(env)
    if not isinstance(event, Mapping):
        raise RuntimeConfigError(f"the event must be a JSON object, got {type(event).__name__}")
    check_location(event, settings)
    graph = load_graph(settings.module, settings.flow)
    check_stamp(graph, Stamp.parse(event))
    store = S3Store(settings.bucket, settings.prefix, client if client is not None else _s3())
    if MapEvent.is_map_event(event):
        return _run_map_step(graph, store, event, settings.step)
    task = TaskEvent.parse(event)
    node = resolve_node(graph, task.node, settings.step)
    ctx = _context(graph, store, task.run_id, task.params)
    count = execution.run_task(ctx, node)
    fed = graph.map_fed_by(node.id)
    if fed is None:
        return {"node": node.id}
    manifest = ctx.manifest(fed)
    inline = fed.options.mode == "inline"  # an INLINE map iterates over the state, not an ItemReader
    assert count is not None
    result = MapSourceResult(
        settings.bucket, store.full_key(manifest), count, store.get_json(manifest) if inline else None
    )
    return result.to_payload()


def _run_map_step(graph: FlowGraph, store: S3Store, raw: Mapping[str, Any], step_name: str) -> dict[str, Any]:
    node_id, map_id = MapEvent.target(raw)
    node = resolve_node(graph, node_id, step_name)
    block = next((m for m in graph.maps if m.id == map_id), None)
    if block is None or node not in block.nodes:
        raise RuntimeConfigError(f"step '{node.id}' is not in map '{map_id}' of flow '{graph.name}'")
    event = MapEvent.parse(raw)
    ctx = _context(graph, store, event.run_id, event.params)
    refs = event.items if event.items is not None else execution.read_manifest(ctx, block)
    execution.run_batch(ctx, block, node, refs)
    return {"node": node.id, "items": len(refs)}


# ------------------------------------------------------------------------- input resolution


def _context(graph: FlowGraph, store: S3Store, run_id: Any, params: Any) -> RunContext:
    if not isinstance(run_id, str):
        raise RuntimeConfigError(f"the event's run_id must be a string, got {run_id!r}")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise RuntimeConfigError(
            f"the execution input must be a JSON object of flow parameters, got {type(params).__name__}",
            where=f"flow '{graph.name}'",
            hint='start the execution with input like {"limit": 3} (or {} for the defaults)',
        )
    resolved = resolve_params(graph.params, params, where=f"execution input of flow '{graph.name}'")
    return RunContext(graph, store, layout.check_run_id(run_id), resolved)


def resolve_node(graph: FlowGraph, node_id: str, step_name: str) -> Node:
    """The node the event names; it must be an invocation of this function's step."""
    try:
        node = graph.node(node_id)
    except KeyError as exc:
        raise RuntimeConfigError(str(exc.args[0]), hint="regenerate and redeploy the state machine") from None
    if node.step.name != step_name:
        raise RuntimeConfigError(
            f"node '{node_id}' runs step '{node.step.name}', but this function serves step '{step_name}'",
            where=f"flow '{graph.name}'",
            hint="each state must invoke its own step's function; regenerate the state machine",
        )
    return node


def check_stamp(graph: FlowGraph, stamp: Stamp) -> None:
    """Refuse a payload written for another protocol version or another version of the flow:
    running it would mix artifacts of two codes (never a wrong result: an error instead)."""
    fix = "run `lokki-sam generate`, `sam build` and `sam deploy` so the state machine and the functions match"
    if stamp.protocol is None:
        raise FlowMismatch(
            "the event carries no 'lokki' stamp (protocol version and flow fingerprint): it was not sent by a "
            "state machine of this lokki-sam, or was written by hand",
            where=f"flow '{graph.name}'",
            hint="use the events `lokki-sam generate` writes (events/<flow>/<step>.json); " + fix,
        )
    if stamp.protocol != PROTOCOL_VERSION:
        raise FlowMismatch(
            f"the state machine sends lokki-sam protocol {stamp.protocol!r}; this function's lokki-sam "
            f"{__version__} speaks protocol {PROTOCOL_VERSION}",
            where=f"flow '{graph.name}'",
            hint=fix,
        )
    own = graph.fingerprints.flow
    if stamp.flow != own:
        raise FlowMismatch(
            f"the state machine was generated from another version of flow '{graph.name}' "
            f"(fingerprint {stamp.flow}) than this function's code ({own})",
            where=f"flow '{graph.name}'",
            hint=fix,
        )


def check_location(event: Mapping[str, Any], settings: FunctionEnv) -> None:
    """Refuse any store location in the event outside the function's bucket and prefix.

    The state machine passes none (keys derive from run, node and item), but events written by
    hand (sam local invoke, tests) may state them; a mismatch means a misrouted event.
    """
    bucket = event.get("bucket", settings.bucket)
    if bucket != settings.bucket:
        raise RuntimeConfigError(f"refusing bucket {bucket!r}: this function's store is bucket {settings.bucket!r}")
    for field in ("prefix", "key"):
        value = event.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise RuntimeConfigError(f"the event's {field} must be a string, got {value!r}")
        layout.check_key(value.rstrip("/") or ".")
        inside = value.strip("/") == settings.prefix or value.startswith(settings.prefix + "/")
        if not inside:
            raise RuntimeConfigError(
                f"refusing {field} {value!r}: it is outside this function's prefix {settings.prefix!r}"
            )


# ------------------------------------------------------------------------------ caching


def load_graph(module_name: str, flow_name: str) -> FlowGraph:
    key = (module_name, flow_name)
    with _lock:
        if key not in _graphs:
            _graphs[key] = _find_flow(importlib.import_module(module_name), flow_name)
        return _graphs[key]


def _find_flow(module: Any, flow_name: str) -> FlowGraph:
    for value in vars(module).values():
        graph = getattr(value, "graph", None)
        if isinstance(graph, FlowGraph) and graph.name == flow_name:
            return graph
    raise RuntimeConfigError(
        f"module {module.__name__} has no flow '{flow_name}'",
        hint=f"check {names.ENV_MODULE}/{names.ENV_FLOW}; regenerate the template",
    )


@functools.cache
def _s3() -> Any:
    return s3_client()
