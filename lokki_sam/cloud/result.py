"""`lokki-sam result RUN_ID`: a deployed run's result (or one step's output), read from the bucket.

Results are read exactly as the local runner reads them (`lokki_sam.execution`), from the
flow's prefix of the stack's artifact bucket; the run id is the execution name.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import click

from lokki_sam import layout
from lokki_sam.cli import get_config, handle_errors, json_result, print_result
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.flows import flow_for_run
from lokki_sam.cloud.options import aws_options, deployment, pop_aws
from lokki_sam.cloud.stack import Deployment
from lokki_sam.cloud.status import diagnose, execution_arn
from lokki_sam.errors import LokkiError, StoreError
from lokki_sam.execution import RunContext, batch_results, read_stage_output
from lokki_sam.ir import FlowGraph, MapBlock, Node, Stage


class ResultExpired(LokkiError):
    """The run exists but its artifacts are gone (the bucket's lifecycle rule expired them)."""


def read_output(dep: Deployment, graph: FlowGraph, run_id: str, step: str | None = None) -> Any:
    """The run's result, or the output of `step` (a step or map id)."""
    stage = _stage(graph, step)
    store = dep.store(graph.name)
    ctx = RunContext(graph, store, run_id, {})
    what = f"the output of '{stage.id}'" if step else "the result"
    with aws_errors(f"reading {what} of run {run_id}"):
        if not store.exists(_marker(graph, stage, run_id)):
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


def _stage(graph: FlowGraph, step: str | None) -> Stage:
    if step is None:
        return graph.result_stage
    ids = [s.id for s in graph.stages] + [n.id for n in graph.nodes if n.in_map is not None]
    if step not in ids:
        raise LokkiError(f"flow '{graph.name}' has no step '{step}'", hint=f"steps and maps: {', '.join(ids)}")
    return graph.get(step)


def _marker(graph: FlowGraph, stage: Stage, run_id: str) -> str:
    """The object whose presence says the stage's output exists."""
    if isinstance(stage, MapBlock):
        return layout.manifest(run_id, stage.id)
    fed = graph.map_fed_by(stage.id)
    if fed is not None:
        return layout.manifest(run_id, fed.id)
    if stage.in_map is not None:
        return layout.manifest(run_id, stage.in_map)
    return layout.task_output(run_id, stage.id)


def _expired(dep: Deployment, graph: FlowGraph, run_id: str, what: str) -> ResultExpired:
    return ResultExpired(
        f"{what} of run {run_id} is no longer in {dep.store(graph.name).describe(run_id + '/')}",
        hint="run artifacts expire after artifact_expiry_days (the bucket's lifecycle rule); run the flow "
        "again with `lokki-sam invoke`, or raise artifact_expiry_days in lokki.toml and redeploy",
    )


def check_finished(dep: Deployment, graph: FlowGraph, run_id: str) -> dict[str, Any]:
    """DescribeExecution of the run; an unknown run lists how to find the existing ones."""
    import botocore.exceptions

    sfn = dep.client("stepfunctions")
    arn = execution_arn(dep.state_machine_arn(graph.name), run_id)
    with aws_errors(f"run {run_id}"):
        try:
            described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                raise
            described = {}
    if not described:
        raise LokkiError(
            f"no run {run_id} of flow '{graph.name}' in stack '{dep.stack_name}'",
            hint=f"list runs with `lokki-sam runs {graph.name} --stack-name {dep.stack_name}` "
            "(Step Functions forgets executions 90 days after they end)",
        )
    return described


def write_output(value: Any, path: Path) -> None:
    """`.pkl` -> pickle (any value); `.json` -> JSON; else the same text `result` prints."""
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(value, protocol=5))
    elif path.suffix == ".json":
        path.write_text(json.dumps(json_result(value), indent=2, ensure_ascii=False) + "\n")
    else:
        path.write_text(value if isinstance(value, str) else json.dumps(json_result(value), indent=2) + "\n")


@click.command()
@click.argument("run_id")
@click.option("--flow", "flow_arg", metavar="FLOW", help="Flow of the run [default: from lokki.toml and the run id].")
@click.option("--step", metavar="STEP", help="Print this step's (or map's) output instead of the result.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE (.pkl, .json).")
@aws_options
@handle_errors
def result(run_id: str, flow_arg: str | None, step: str | None, output: Path | None, **kwargs: Any) -> None:
    """Fetch a deployed run's result, or one step's output (--step)."""
    from lokki_sam.cloud.invoke import failure_error

    layout.check_run_id(run_id)
    aws = pop_aws(kwargs)
    config = get_config()
    flow_obj = flow_for_run(run_id, flow_arg, config)
    dep = deployment(config, aws)
    described = check_finished(dep, flow_obj.graph, run_id)
    status = str(described.get("status"))
    if step is None and status == "RUNNING":
        raise LokkiError(f"run {run_id} is still running", hint="wait, or follow it with `lokki-sam runs`")
    if step is None and status != "SUCCEEDED":
        failure = diagnose(dep.client("stepfunctions"), described["executionArn"], status)
        raise failure_error(dep, flow_obj.graph, run_id, failure, described["executionArn"])
    value = read_output(dep, flow_obj.graph, run_id, step)
    if output is not None:
        write_output(value, output)
        click.echo(f"wrote {output}", err=True)
    else:
        print_result(value)
