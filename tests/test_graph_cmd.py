"""`lokki-sam graph`: Mermaid, dot and text pictures of every shape and example."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from lokki_sam.cli import cli
from lokki_sam.visualize import to_dot, to_mermaid, to_text
from tests.flows.shapes import SHAPES
from tests.support.sam import EXAMPLES

BIRDS = str(next(p for p in EXAMPLES if p.stem == "birds"))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["graph", *args])
    return result.exit_code, result.stdout, result.stderr


def test_mermaid_of_birds() -> None:
    code, out, _ = run(BIRDS, "--format", "mermaid")
    assert code == 0
    assert out == (
        "flowchart TD\n"
        "  %% flow birds(limit: int = 3)\n"
        '  get_birds["get_birds"]\n'
        '  subgraph map_flap["for each item (distributed)"]\n'
        '    flap["flap"]\n'
        "  end\n"
        '  join["join"]\n'
        "  get_birds ==> flap\n"
        "  flap ==> join\n"
    )


def test_text_is_the_default() -> None:
    code, out, _ = run(BIRDS)
    assert code == 0
    assert out.splitlines() == [
        "flow birds(limit: int = 3)",
        "  -> get_birds",
        "  for each item (distributed) of get_birds:",
        "    -> flap",
        "  -> join  (gets the list of item results)",
    ]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_renders_every_node_and_edge(shape: str) -> None:
    graph = SHAPES[shape][0].graph
    mermaid, dot, text = to_mermaid(graph), to_dot(graph), to_text(graph)
    for node in graph.nodes:
        ident = re.sub(r"[^A-Za-z0-9_]", "_", node.id)
        assert f'{ident}["{node.id}' in mermaid
        assert f'"{node.id}" [label=' in dot
        assert f"-> {node.id}" in text
    edges = len(graph.nodes) - 1
    assert len(re.findall(r" (==>|-->) ", mermaid)) == edges
    assert dot.count(" -> ") == edges
    assert mermaid.count("subgraph ") == len(graph.maps) == dot.count("subgraph cluster_")


def test_reused_step_and_batch_options_are_shown() -> None:
    text = to_text(SHAPES["reused_step"][0].graph)
    assert "-> inc-2" in text and "-> inc-3" in text
    assert "batch 20, concurrency 8" in to_mermaid(SHAPES["batched"][0].graph)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_dot_parses_as_graphviz(name: str) -> None:
    """pydot's DOT grammar (no Graphviz binary needed) accepts the output, with every node and edge."""
    import pydot

    graph = SHAPES[name][0].graph
    parsed = pydot.graph_from_dot_data(to_dot(graph))
    assert parsed is not None and len(parsed) == 1
    dot = parsed[0]
    clusters = dot.get_subgraph_list()
    nodes = {n.get_name().strip('"') for n in dot.get_node_list()}
    nodes |= {n.get_name().strip('"') for c in clusters for n in c.get_node_list()}
    assert {n.id for n in graph.nodes} <= nodes
    assert len(dot.get_edge_list()) + sum(len(c.get_edge_list()) for c in clusters) == len(graph.nodes) - 1


def test_bad_input() -> None:
    code, _, err = run(BIRDS, "--format", "png")
    assert code == 2 and "Invalid value for '--format'" in err
    code, _, err = run("missing.py")
    assert code == 2 and "file not found" in err and "Traceback" not in err
