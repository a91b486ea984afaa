"""`lokki-sam graph`: a picture of a flow as Mermaid (for a README), Graphviz dot, or text."""

from __future__ import annotations

import re

from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.params import as_text

FORMATS = ("mermaid", "dot", "text")


def _ident(stage_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", stage_id)


def _map_label(block: MapBlock) -> str:
    opts = block.options
    parts = [opts.mode]
    if opts.batch_size > 1:
        parts.append(f"batch {opts.batch_size}")
    if opts.concurrency is not None:
        parts.append(f"concurrency {opts.concurrency}")
    if opts.tolerated_failure is not None:
        parts.append(f"tolerates {opts.tolerated_failure:g}%")
    if opts.tolerated_failure_count is not None:
        parts.append(f"tolerates {opts.tolerated_failure_count} failures")
    return f"for each item ({', '.join(parts)})"


def _node_label(node: Node) -> str:
    extras = []
    if node.step.options.retry is not None:
        extras.append(f"retry {node.step.options.retry.retries}")
    return node.id + (f" [{', '.join(extras)}]" if extras else "")


def _signature(graph: FlowGraph) -> str:
    params = []
    for p in graph.params:
        params.append(
            p.name
            + (f": {p.type_name}" if p.effective_type is not None else "")
            + ("" if p.required else f" = {as_text(p.default)}")
        )
    return f"{graph.name}({', '.join(params)})"


def _edges(graph: FlowGraph) -> list[tuple[str, str]]:
    """(from, to) between drawable ids: nodes, and map blocks entered at their first node."""
    edges = []
    previous: str | None = None
    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            first = stage.nodes[0].id
            if previous is not None:
                edges.append((previous, first))
            edges.extend((a.id, b.id) for a, b in zip(stage.nodes, stage.nodes[1:], strict=False))
            previous = stage.last.id
        else:
            if previous is not None:
                edges.append((previous, stage.id))
            previous = stage.id
    return edges


def to_mermaid(graph: FlowGraph) -> str:
    lines = ["flowchart TD", f"  %% flow {_signature(graph)}"]
    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            lines.append(f'  subgraph {_ident(stage.id)}["{_map_label(stage)}"]')
            lines.extend(f'    {_ident(n.id)}["{_node_label(n)}"]' for n in stage.nodes)
            lines.append("  end")
        else:
            lines.append(f'  {_ident(stage.id)}["{_node_label(stage)}"]')
    for a, b in _edges(graph):
        # An edge into or out of a map fans out / in: draw it thick.
        arrow = "==>" if graph.get(a).in_map != graph.get(b).in_map else "-->"  # type: ignore[union-attr]
        lines.append(f"  {_ident(a)} {arrow} {_ident(b)}")
    if graph.schedule:
        lines.append(f'  schedule(("{graph.schedule}")) -.-> {_ident(graph.nodes[0].id)}')
    return "\n".join(lines) + "\n"


def to_dot(graph: FlowGraph) -> str:
    lines = [f'digraph "{graph.name}" {{', f'  label="{_signature(graph)}";', "  node [shape=box];"]
    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            lines.append(f"  subgraph cluster_{_ident(stage.id)} {{")
            lines.append(f'    label="{_map_label(stage)}";')
            lines.extend(f'    "{n.id}" [label="{_node_label(n)}"];' for n in stage.nodes)
            lines.append("  }")
        else:
            lines.append(f'  "{stage.id}" [label="{_node_label(stage)}"];')
    for a, b in _edges(graph):
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_text(graph: FlowGraph) -> str:
    lines = [f"flow {_signature(graph)}" + (f"  schedule {graph.schedule}" if graph.schedule else "")]
    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            lines.append(f"  {_map_label(stage)} of {stage.source}:")
            lines.extend(f"    -> {_node_label(n)}" for n in stage.nodes)
        elif stage.input_from is not None and isinstance(graph.get(stage.input_from), MapBlock):
            lines.append(f"  -> {_node_label(stage)}  (gets the list of item results)")
        else:
            lines.append(f"  -> {_node_label(stage)}")
    return "\n".join(lines) + "\n"


RENDERERS = {"mermaid": to_mermaid, "dot": to_dot, "text": to_text}
