"""A deployed run's result (or one step's output), read from the bucket.

Results are read exactly as the local runner reads them (`lokki_sam.execution`), from the
flow's prefix of the stack's artifact bucket; the run id is the execution name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.stack import Deployment
from lokki_sam.errors import LokkiError, StoreError
from lokki_sam.execution import RunContext, batch_results, read_stage_output
from lokki_sam.ir import FlowGraph, MapBlock, Node, Stage


class ResultExpired(LokkiError):
    """The run exists but its artifacts are gone (the bucket's lifecycle rule expired them)."""


def read_output(
    dep: Deployment, graph: FlowGraph, run_id: str, step: str | None = None, made_by: RunVersion | None = None
) -> Any:
    """The run's result, or the output of `step` (a step or map id). `made_by` (`version_of_run`)
    reads a run made by another version of the flow, under that version's fingerprints."""
    stage = _stage(graph, step)
    store = dep.store(graph.name)
    ctx = RunContext(graph, store, run_id, {}, fingerprints=made_by.nodes if made_by else None)
    what = f"the output of '{stage.id}'" if step else "the result"
    with aws_errors(f"reading {what} of run {run_id}"):
        if not store.exists(_marker(ctx, stage)):
            raise _expired(dep, graph, run_id, what)
        try:
            if isinstance(stage, Node) and stage.in_map is not None:  # a step inside a map: its item outputs
                block = graph.get(stage.in_map)
                assert isinstance(block, MapBlock)
                outputs = batch_results(ctx, block, stage)
                return [outputs[i] for i in sorted(outputs)]
            return read_stage_output(ctx, stage)
        except StoreError as exc:
            if "not found" in exc.message:
                raise _expired(dep, graph, run_id, what) from None
            raise


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
    local = graph.chained_fingerprints
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


def _marker(ctx: RunContext, stage: Stage) -> str:
    """The object whose presence says the stage's output exists."""
    graph = ctx.graph
    if isinstance(stage, MapBlock):
        return ctx.manifest(stage)
    fed = graph.map_fed_by(stage.id)
    if fed is not None:
        return ctx.manifest(fed)
    if stage.in_map is not None:
        block = graph.get(stage.in_map)
        assert isinstance(block, MapBlock)
        return ctx.manifest(block)
    return ctx.task_output(stage.id)


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
