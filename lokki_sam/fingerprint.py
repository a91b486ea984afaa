"""Flow identity: deterministic fingerprints of what determines a flow's results.

A node's fingerprint covers what its output is computed from, besides its input and the values
of the flow parameters it receives (the resume protocol adds those): its step's code and what
that code reaches (`describe.py`: the syntax of the code, not its text; project code it calls;
module-level statements binding what it reads; imports inside it; closure cells, defaults and a
bound instance by value), the constants bound at its call site (by value, functions by their
code), the declarations of the flow parameters it receives, how it receives its input, whether a
map fans out over its output, and the step options that can change a result (`RESULT_OPTIONS`:
an allow-list, so an option added later counts only once someone says it can). It does not cover
the node upstream: the input's identity does that.

Where something a step holds cannot be described (a lock, a socket, an open file...),
`Fingerprints.opaque` says so per node: such a node is never reused. Its fingerprint holds a
marker of the type there, so the generator and the Lambda still agree.

The flow's fingerprint adds the graph's structure, the parameter declarations, each map's
`mode` and failure tolerance, and the schedule: it is what the state machine sends in every
payload and what the runtime compares with its own code. Sizing and placement (memory, timeout,
architecture, package, retry, permissions, concurrency, batch size, execution type) change no
result and count in neither: raising a step's memory after an out-of-memory failure keeps the
flow the same flow.

Everything is computed from syntax trees and from values that are the same wherever the code
runs (never bytecode, module names or paths), so the generator (Python 3.11 to 3.13, any folder
layout) and every Lambda runtime agree. Not covered: libraries (the standard library, installed
distributions, lokki-sam), and what code reads at run time (files, services, the clock, the
environment).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lokki_sam.describe import Describer, Opaque, canonical_json
from lokki_sam.ir import Const, FlowGraph, MapBlock, Nested, Node, ParamRef
from lokki_sam.project_code import ModuleClosures

LENGTH = 16  # hex characters kept: 64 bits, short in keys and payloads, collision-free in practice

# The step options that can change what a step computes: its packages, and the environment it
# reads. Every other option (memory, timeout, architecture, package, retry, permissions, and
# whatever is added later) sizes or places the step and is left out.
RESULT_OPTIONS = ("requirements", "environment")
# The map options the flow's result depends on: how failures are tolerated (what the next step
# receives), and whether the map is inline or distributed (how its items are stored).
RESULT_MAP_OPTIONS = ("mode", "tolerated_failure", "tolerated_failure_count")


@dataclass(frozen=True)
class Fingerprints:
    """The flow's fingerprint, each node's own, and why a node cannot be described (if so)."""

    flow: str
    nodes: Mapping[str, str]
    # node id -> why the node cannot be described deterministically; such a node is never reused
    opaque: Mapping[str, str] = field(default_factory=dict)

    def changes(self, recorded: Mapping[str, str]) -> dict[str, str]:
        """How the nodes differ from `recorded` (node id -> fingerprint): id -> new/changed/removed."""
        out: dict[str, str] = {}
        for node_id, fp in self.nodes.items():
            if node_id not in recorded:
                out[node_id] = "new"
            elif recorded[node_id] != fp:
                out[node_id] = "changed"
        out.update({node_id: "removed" for node_id in recorded if node_id not in self.nodes})
        return out


def describe_changes(changes: Mapping[str, str]) -> str:
    """`step 'add_title' is new; step 'flap' changed` (in the order given)."""
    return "; ".join(f"step '{node}' {'is new' if what == 'new' else what}" for node, what in changes.items())


def compute(graph: FlowGraph) -> Fingerprints:
    """The flow's fingerprint and each node's own (`FlowGraph.fingerprints` caches it)."""
    params = {p.name: p for p in graph.params}
    modules = ModuleClosures()
    codes: dict[int, tuple[str, list[Opaque]]] = {}  # by step object: two steps may share a name
    nodes: dict[str, str] = {}
    opaque: dict[str, str] = {}

    def code(node: Node) -> tuple[str, list[Opaque]]:
        key = id(node.step)
        if key not in codes:
            describer = Describer(modules, params)
            codes[key] = (_hash(["code", describer.step(node.step.func)]), describer.opaque)
        return codes[key]

    def node_fp(node: Node, input_kind: str) -> None:
        described, found = code(node)
        describer = Describer(modules, params)
        bindings = [[key, _binding(describer, key, value)] for key, value in node.bindings]
        options = [[name, describer.value(getattr(node.step.options, name, None))] for name in RESULT_OPTIONS]
        # Whether a map fans out over the output decides how it is stored (items, or one object).
        feeds_map = graph.map_fed_by(node.id) is not None
        nodes[node.id] = _hash(["node", described, bindings, input_kind, feeds_map, options])
        if found or describer.opaque:
            opaque[node.id] = _reason(node, [*found, *describer.opaque])

    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            for position, node in enumerate(stage.nodes):
                node_fp(node, "map item" if position == 0 else "next")
        else:
            fed_by_map = stage.input_from is not None and isinstance(graph.get(stage.input_from), MapBlock)
            node_fp(stage, "first" if stage.input_from is None else ("map results" if fed_by_map else "next"))
    describer = Describer(modules, params)
    structure = [
        [stage.id, [n.id for n in stage.nodes], stage.source, _map_options(describer, stage)]
        if isinstance(stage, MapBlock)
        else [stage.id, stage.input_from]
        for stage in graph.stages
    ]
    declarations = [describer.param(p.name) for p in graph.params]
    flow = _hash(["flow", graph.name, declarations, structure, nodes, graph.schedule])
    return Fingerprints(flow, nodes, opaque)


def code_fingerprint(func: Callable[..., Any]) -> str:
    """The fingerprint of a step's callable alone: its code and what it reaches."""
    return _hash(["code", Describer().step(func)])


def value_fingerprint(value: Any) -> tuple[str | None, str | None]:
    """(digest, None) for a value that can be described deterministically (a parameter value, a
    bound constant), else (None, why not)."""
    describer = Describer()
    described = describer.value_at(value, "the value")
    if describer.opaque:
        return None, f"{_listed(describer.opaque)} cannot be described"
    return _hash(["value", described]), None


def _reason(node: Node, found: list[Opaque]) -> str:
    return (
        f"step '{node.name}' uses {_listed(found)}: it cannot be described, so resume always recomputes "
        "this step; pass plain values or create it inside the step"
    )


def _listed(found: list[Opaque]) -> str:
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return "; ".join(o.text() for o in found[:3]) + more


def _binding(describer: Describer, key: str, binding: Any) -> Any:
    if isinstance(binding, ParamRef):
        return ["param", describer.param(binding.name)]
    if isinstance(binding, Const):
        return ["const", describer.value_at(binding.value, f"argument `{key}`")]
    if isinstance(binding, Nested):
        return ["nested", describer.value_at(binding.value, f"argument `{key}`")]
    return ["binding", describer.value_at(binding, f"argument `{key}`")]


def _map_options(describer: Describer, block: MapBlock) -> Any:
    return [[name, describer.value(getattr(block.options, name))] for name in RESULT_MAP_OPTIONS]


def _hash(parts: Any) -> str:
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:LENGTH]
