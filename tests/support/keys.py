"""Store keys and Lambda events of a test flow, computed the way the engines compute them.

Keys carry the identity of what each output was computed from (read from the run's pointers) and
deployed prefixes carry the stack, so tests never spell a key by hand:
`Keys(flow, run, store).task_output("add")`, `stamped(flow, event)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lokki_sam import __version__, layout, names
from lokki_sam.compile import asl
from lokki_sam.ir import FlowGraph, MapBlock, graph_of
from lokki_sam.store import ArtifactStore

STACK = "teststack"  # the stack name test harnesses deploy under (part of every flow prefix)


def prefix(flow: Any, stack: str = STACK) -> str:
    return names.flow_prefix(stack, graph_of(flow).name)


def stamped(flow: Any, event: dict[str, Any]) -> dict[str, Any]:
    """`event` with the stamp the state machine adds (protocol version and fingerprints)."""
    graph = graph_of(flow)
    if "lokki" in event:
        return event
    node = event.get("node")
    if isinstance(node, str) and node in graph.fingerprints.nodes:
        stamp = asl.stamp(graph, graph.node(node)).to_json()
    else:  # an unknown node: the runtime must get as far as refusing it
        stamp = {"protocol": asl.PROTOCOL_VERSION, "flow": graph.fingerprints.flow, "step": None}
    return {**event, "lokki": stamp}


@dataclass(frozen=True)
class Keys:
    """Keys of a run's outputs as the store's pointers name them (each output's identity)."""

    flow: Any
    run: str
    store: ArtifactStore

    @property
    def graph(self) -> FlowGraph:
        return graph_of(self.flow)

    def identity(self, node: str) -> str:
        found = self.store.get_json(layout.pointer(self.run, node))
        return str(found["id"])

    def task_output(self, node: str) -> str:
        return layout.task_output(self.run, node, self.identity(node))

    def _source(self, map_id: str) -> str:
        block = self.graph.get(map_id)
        assert isinstance(block, MapBlock)
        return block.source

    def manifest(self, map_id: str) -> str:
        source = self._source(map_id)
        return layout.manifest(self.run, source, self.identity(source))

    def items_chunk(self, map_id: str, first: int) -> str:
        source = self._source(map_id)
        return layout.items_chunk(self.run, source, self.identity(source), first)

    def outputs(self, node: str) -> str:
        """The directory of a node's outputs (map steps: one object per run of items)."""
        return layout.node_dir(self.run, node)


def function_env(flow: Any, step: str, bucket: str, module: str | None = None, **overrides: str) -> dict[str, str]:
    """The environment `lokki-sam generate` gives a step's function (stack: STACK)."""
    graph = graph_of(flow)
    env = {
        names.ENV_MODULE: module or graph.module,
        names.ENV_FLOW: graph.name,
        names.ENV_STEP: step,
        names.ENV_BUCKET: bucket,
        names.ENV_PREFIX: prefix(graph),
        names.ENV_VERSION: __version__,
    }
    env.update(overrides)
    return env
