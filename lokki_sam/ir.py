"""The flow graph: plain, immutable data that every engine and renderer reads.

A `FlowGraph` is a sequence of stages: a `Node` (one invocation site of a step) or a `MapBlock`
(a fan-out whose body is a chain of nodes). The decorators in `dsl.py` build it once, when a
flow is decorated; the local runner, the Lambda runtime and the compilers consume it and never
touch decorator objects beyond a node's step name, function and options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lokki_sam.options import MapOptions
from lokki_sam.params import Param

if TYPE_CHECKING:
    from lokki_sam.dsl import Step
    from lokki_sam.fingerprint import Fingerprints


@dataclass(frozen=True)
class ParamRef:
    """A flow parameter bound to a step argument; its value comes from the run's parameters."""

    name: str

    def __repr__(self) -> str:
        return f"<flow parameter {self.name}>"


@dataclass(frozen=True)
class Const:
    """A literal step argument given at the call site."""

    value: Any


@dataclass(frozen=True)
class Nested:
    """Lists, tuples, sets and dicts with flow parameters inside (`route=(origin, destination)`)."""

    value: Any


Binding = Const | ParamRef | Nested


def fill(value: Any, params: Mapping[str, Any]) -> Any:
    """`value` with every ParamRef inside replaced by the run's parameter value."""
    if isinstance(value, ParamRef):
        return params[value.name]
    if isinstance(value, dict):
        return {k: fill(v, params) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(fill(v, params) for v in value)
    return value


@dataclass(frozen=True)
class Node:
    """One invocation site of a step. `id` is unique in the flow (`name`, `name-2`, ...).

    `input_from` says where the data argument comes from: None (first step), the id of the
    previous node, or the id of the map whose item results an agg receives.
    """

    id: str
    step: Step
    bindings: tuple[tuple[str, Binding], ...]
    input_from: str | None
    in_map: str | None = None

    @property
    def name(self) -> str:
        return self.step.name

    def kwargs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for one call, given the run's resolved flow parameters."""
        result: dict[str, Any] = {}
        for key, binding in self.bindings:
            if isinstance(binding, ParamRef):
                result[key] = params[binding.name]
            elif isinstance(binding, Nested):
                result[key] = fill(binding.value, params)
            else:
                result[key] = binding.value
        return result


@dataclass(frozen=True)
class MapBlock:
    """A fan-out over the list produced by `source`; `nodes` run on every item in order."""

    id: str
    source: str
    nodes: tuple[Node, ...]
    options: MapOptions

    @property
    def last(self) -> Node:
        return self.nodes[-1]


Stage = Node | MapBlock


@dataclass(frozen=True)
class FlowGraph:
    """A flow. Its module identity is taken from the flow function when it is decorated, so no
    reader has to find the module again by name (two files named flow.py share a name, not a module):
    `module` is the name it was imported under (for messages and records), `source_file` the
    absolute path of its file (None for code without one), `module_object` the module itself
    (None for code executed outside a module, e.g. `exec` in a bare namespace)."""

    name: str
    module: str
    params: tuple[Param, ...]
    stages: tuple[Stage, ...]
    schedule: str | None = None
    description: str = ""
    package: str | None = None  # the flow's default packaging for its steps (@flow(package=...))
    source_file: str | None = None
    module_object: ModuleType | None = field(default=None, compare=False, repr=False)

    @cached_property
    def _index(self) -> dict[str, Stage]:
        index: dict[str, Stage] = {}
        for stage in self.stages:
            index[stage.id] = stage
            if isinstance(stage, MapBlock):
                index.update((node.id, node) for node in stage.nodes)
        return index

    @cached_property
    def fingerprints(self) -> Fingerprints:
        """The flow's and every node's fingerprint (computed on first use: it reads step sources)."""
        from lokki_sam.fingerprint import compute

        return compute(self)

    def fingerprint(self, node_id: str) -> str:
        """A node's own code fingerprint (what its outputs' identities start from: lineage.py)."""
        return self.fingerprints.nodes[node_id]

    def get(self, stage_id: str) -> Stage:
        try:
            return self._index[stage_id]
        except KeyError:
            raise KeyError(f"flow '{self.name}' has no step or map '{stage_id}'") from None

    def node(self, node_id: str) -> Node:
        stage = self.get(node_id)
        if not isinstance(stage, Node):
            raise KeyError(f"'{node_id}' is a map, not a step")
        return stage

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every node in execution order, map bodies included."""
        out: list[Node] = []
        for stage in self.stages:
            out.extend(stage.nodes if isinstance(stage, MapBlock) else (stage,))
        return tuple(out)

    @property
    def steps(self) -> tuple[Step, ...]:
        """Distinct step objects in first-use order (one Lambda function each). Their names are
        distinct too: the builder refuses two step objects with one name in a flow."""
        return tuple(dict.fromkeys(node.step for node in self.nodes))

    @property
    def maps(self) -> tuple[MapBlock, ...]:
        return tuple(s for s in self.stages if isinstance(s, MapBlock))

    def map_fed_by(self, node_id: str) -> MapBlock | None:
        """The map that fans out over `node_id`'s output, if any."""
        for stage in self.stages:
            if isinstance(stage, MapBlock) and stage.source == node_id:
                return stage
        return None

    @property
    def result_stage(self) -> Stage:
        return self.stages[-1]


def graph_of(target: Any) -> FlowGraph:
    """The graph of a `@flow` (its `.graph`) or a FlowGraph itself."""
    graph = target if isinstance(target, FlowGraph) else getattr(target, "graph", None)
    if not isinstance(graph, FlowGraph):
        raise TypeError(f"expected a @flow or a FlowGraph, got {type(target).__name__}")
    return graph
