"""A deployed run's result (or one step's output), read from the bucket.

Results are read exactly as the local runner reads them (`lokki_sam.execution`), from the
flow's prefix of the stack's artifact bucket; the run id is the execution name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.stack import Deployment
from lokki_sam.errors import LokkiError
from lokki_sam.execution import MissingOutput, RunContext, item_outputs, read_pointer, read_stage_output
from lokki_sam.ir import FlowGraph, MapBlock, Node, Stage
from lokki_sam.names import RERUN_INPUT_KEY
from lokki_sam.params import resolve_params
from lokki_sam.store import ArtifactStore


class ResultExpired(LokkiError):
    """The run exists but its artifacts are gone (the bucket's lifecycle rule expired them)."""


def read_output(
    dep: Deployment,
    graph: FlowGraph,
    run_id: str,
    step: str | None = None,
    made_by: RunVersion | None = None,
    attempt: Mapping[str, Any] | None = None,
) -> Any:
    """The run's result, or the output of `step` (a step or map id), as the run's latest execution
    (`attempt`: its DescribeExecution; looked up when not given) left it. `made_by`
    (`version_of_run`) reads a run made by another version of the flow, under that version's
    fingerprints."""
    stage = _stage(graph, step)
    store = dep.store(graph.name)
    attempt = attempt if attempt is not None else check_finished(dep, graph, run_id)
    ctx = run_context(graph, store, run_id, attempt, made_by)
    what = f"the output of '{stage.id}'" if step else "the result"
    with aws_errors(f"reading {what} of run {run_id}"):
        if read_pointer(ctx, _writer(graph, stage)) is None:
            raise _expired(dep, graph, run_id, what)
        try:
            if isinstance(stage, Node) and stage.in_map is not None:  # a step inside a map: its item outputs
                block = graph.get(stage.in_map)
                assert isinstance(block, MapBlock)
                return list(item_outputs(ctx, block, stage).values())
            return read_stage_output(ctx, stage)
        except MissingOutput:
            raise _expired(dep, graph, run_id, what) from None


def run_context(
    graph: FlowGraph, store: ArtifactStore, run_id: str, attempt: Mapping[str, Any], made_by: RunVersion | None
) -> RunContext:
    """The context the execution `attempt` ran in: its parameters, its --rerun steps and its name
    (what the identities of its outputs derive from)."""
    from lokki_sam.runtime import parse_reruns

    try:
        given = json.loads(str(attempt.get("input") or "{}"))
    except json.JSONDecodeError:
        given = {}
    given = given if isinstance(given, dict) else {}
    reruns = parse_reruns(graph, given.pop(RERUN_INPUT_KEY, None))
    params = resolve_params(graph.params, given, where=f"run {run_id}")
    name = str(attempt.get("name") or run_id)
    fingerprints = made_by.nodes if made_by else None
    return RunContext(graph, store, run_id, params, execution=name, reruns=reruns, fingerprints=fingerprints)


@dataclass(frozen=True)
class RunVersion:
    """The version of a flow a run was made by, when it is not the file's: its node fingerprints,
    and how the file differs (`step 'shout' changed`)."""

    nodes: dict[str, str]
    changes: str


def version_of_run(dep: Deployment, graph: FlowGraph, execution_arn: str) -> RunVersion | None:
    """The flow version the execution ran, when it is not the file's (None: it is, or the
    definition carries no fingerprints). A file whose flow has other steps cannot read the run:
    outputs are found by fingerprint, and that version's steps are not this file's."""
    from lokki_sam.cloud.identity import DeployedFlowDiffers, definition_fingerprints, how_it_differs

    sfn = dep.client("stepfunctions")
    with aws_errors(f"reading the definition execution {execution_arn} ran"):
        try:
            definition = sfn.describe_state_machine_for_execution(executionArn=execution_arn).get("definition")
        except sfn.exceptions.ClientError:  # an emulator without it: the deployed definition
            definition = sfn.describe_state_machine(stateMachineArn=dep.state_machine_arn(graph.name))["definition"]
    ran = definition_fingerprints(definition)
    local = graph.fingerprints
    if ran is None or ran.flow == local.flow:
        return None
    what = how_it_differs(local, ran)
    if set(ran.nodes) != set(local.nodes):
        raise DeployedFlowDiffers(
            f"run of flow '{graph.name}' made by a version with other steps than the file's ({what}): "
            "its outputs cannot be read through this file",
            where=f"stack '{dep.stack_name}'",
            hint="read it with the version of the flow file that was deployed when the run started "
            "(e.g. from version control), or pass --flow that file",
        )
    return RunVersion(dict(ran.nodes), what)


def _stage(graph: FlowGraph, step: str | None) -> Stage:
    if step is None:
        return graph.result_stage
    ids = [s.id for s in graph.stages] + [n.id for n in graph.nodes if n.in_map is not None]
    if step not in ids:
        raise LokkiError(f"flow '{graph.name}' has no step '{step}'", hint=f"steps and maps: {', '.join(ids)}")
    return graph.get(step)


def _writer(graph: FlowGraph, stage: Stage) -> str:
    """The step whose pointer says whether the stage's output exists: the stage, or its map's source."""
    if isinstance(stage, MapBlock):
        return stage.source
    if stage.in_map is not None:
        block = graph.get(stage.in_map)
        assert isinstance(block, MapBlock)
        return block.source
    return stage.id


def _expired(dep: Deployment, graph: FlowGraph, run_id: str, what: str) -> ResultExpired:
    return ResultExpired(
        f"{what} of run {run_id} is no longer in {dep.store(graph.name).describe(run_id + '/')}",
        hint="run artifacts expire after artifact_expiry_days (the bucket's lifecycle rule); run the flow "
        "again with `lokki-sam invoke`, or raise artifact_expiry_days in lokki.toml and redeploy",
    )


def check_finished(dep: Deployment, graph: FlowGraph, run_id: str) -> dict[str, Any]:
    """DescribeExecution of the run's latest attempt (the run, or its last resume); an unknown
    run lists how to find the existing ones."""
    from lokki_sam.cloud.resume import attempts

    tried = attempts(dep, graph, run_id)
    if not tried:
        raise LokkiError(
            f"no run {run_id} of flow '{graph.name}' in stack '{dep.stack_name}'",
            hint=f"list runs with `lokki-sam runs {graph.name} --stack-name {dep.stack_name}` "
            "(Step Functions forgets executions 90 days after they end)",
        )
    return tried[-1].described
