"""Run a flow in-process from your own tests and look at every step's output.

    from lokki_sam.testing import run_flow_in_process
    from my_project.flow import birds

    def test_birds():
        run = run_flow_in_process(birds, limit=2)
        assert run.result == "flappy goose, flappy duck"
        assert run.output("get_birds") == ["goose", "duck"]
        assert run.output("flap") == ["flappy goose", "flappy duck"]  # one entry per map item

The flow runs on the local runner over a temporary artifact store (deleted afterwards unless you
pass `store=`), so every output went through the same serialization and key layout as a real run.
`executor="processes"` runs the maps in worker processes, as `lokki-sam run --executor processes`
does (what a step mutates is then not shared between workers, nor with the test).
This module imports neither pytest nor the CLI dependencies: it works in any test framework.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam import execution
from lokki_sam.execution import RunContext
from lokki_sam.ir import FlowGraph, MapBlock, graph_of
from lokki_sam.local import ItemFailure, run_flow
from lokki_sam.store import ArtifactStore, LocalStore

__all__ = ["FlowRun", "run_flow_in_process"]


@dataclass(frozen=True)
class FlowRun:
    """What a finished run produced.

    `outputs` maps every step (node id: the step name, `name-2` for a reused step) to its output,
    and every map (`map-<first step>`) to its list of item results. A step inside a map has the
    list of its per-item outputs, in item order.
    """

    flow: str
    run_id: str
    params: dict[str, Any]
    result: Any
    outputs: dict[str, Any]
    failures: list[ItemFailure] = field(default_factory=list)
    seconds: float = 0.0
    # Steps inside maps: item index -> output (items whose batch failed are absent).
    item_outputs: dict[str, dict[int, Any]] = field(default_factory=dict)

    def outputs_by_item(self, step: str) -> dict[int, Any]:
        """A map step's outputs by item index: with tolerated failures, which item gave what."""
        if step not in self.item_outputs:
            known = ", ".join(self.item_outputs) or "none"
            raise KeyError(f"'{step}' is not a step inside a map of flow '{self.flow}' (those steps: {known})")
        return self.item_outputs[step]

    def output(self, step: str) -> Any:
        """The output of one step or map, by node id (`flap`, `inc-2`, `map-flap`)."""
        if step not in self.outputs:
            known = ", ".join(self.outputs)
            raise KeyError(f"flow '{self.flow}' has no step or map '{step}' (known: {known})")
        return self.outputs[step]


def run_flow_in_process(
    target: Any,
    params: Mapping[str, Any] | None = None,
    /,
    *,
    store: ArtifactStore | str | Path | None = None,
    concurrency: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    executor: str | None = None,
    **kwargs: Any,
) -> FlowRun:
    """Run `target` (a flow, its graph, or a FLOW_REF like "src/pkg/flow.py:birds") with
    parameters given as keywords and/or a mapping (use the mapping for a parameter named like
    an option of this function). Parameters are validated and coerced as by `lokki-sam run`.

    A failing step raises `lokki_sam.errors.StepFailed`; tolerated map failures are listed
    in `FlowRun.failures`. Pass `sleep=lambda s: None` to skip the waits between retries.
    """
    graph = _graph_of(target)
    given = {**(params or {}), **kwargs}
    options = {"concurrency": concurrency, "sleep": sleep, "executor": executor}
    if store is not None:
        return _run(graph, given, _as_store(store), options)
    with tempfile.TemporaryDirectory(prefix="lokki-test-") as tmp:
        return _run(graph, given, LocalStore(tmp), options)


def _run(graph: FlowGraph, given: dict[str, Any], store: ArtifactStore, options: dict[str, Any]) -> FlowRun:
    outcome = run_flow(graph, given, store=store, **options)
    ctx = RunContext(graph, store, outcome.run_id, outcome.params)
    outputs, item_outputs = stage_outputs(ctx)
    return FlowRun(
        flow=graph.name,
        run_id=outcome.run_id,
        params=dict(outcome.params),
        result=outcome.result,
        outputs=outputs,
        failures=list(outcome.failures),
        seconds=outcome.seconds,
        item_outputs=item_outputs,
    )


def stage_outputs(ctx: RunContext) -> tuple[dict[str, Any], dict[str, dict[int, Any]]]:
    """Every stored output of a finished run, by node id and map id, in execution order; and
    the outputs of steps inside maps by item index."""
    outputs: dict[str, Any] = {}
    item_outputs: dict[str, dict[int, Any]] = {}
    for stage in ctx.graph.stages:
        if isinstance(stage, MapBlock):
            for node in stage.nodes:
                item_outputs[node.id] = execution.item_outputs(ctx, stage, node)
                outputs[node.id] = list(item_outputs[node.id].values())
        outputs[stage.id] = execution.read_stage_output(ctx, stage)
    return outputs, item_outputs


def _graph_of(target: Any) -> FlowGraph:
    if isinstance(target, str):
        from lokki_sam.loader import load_flow

        return load_flow(target).graph
    try:
        return graph_of(target)
    except TypeError:
        raise TypeError(f"expected a @flow, a FlowGraph or a FLOW_REF string, got {type(target).__name__}") from None


def _as_store(store: ArtifactStore | str | Path) -> ArtifactStore:
    return LocalStore(store) if isinstance(store, str | Path) else store
