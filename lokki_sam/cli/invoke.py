"""`lokki-sam invoke`: run a deployed flow and print its result."""

from __future__ import annotations

import time
from typing import Any

import click

from lokki_sam.cli.options import aws_options, param_option, pop_aws
from lokki_sam.cli.output import json_result, print_json, print_result
from lokki_sam.cli.state import CliState, handle_errors, pass_state
from lokki_sam.errors import LokkiError


def source_of(flow_obj: Any) -> str:
    """The file a flow comes from, for messages (its module name if it has none)."""
    import inspect
    from pathlib import Path

    try:
        file = inspect.getsourcefile(flow_obj.func)
    except TypeError:
        file = None
    if not file:
        return str(flow_obj.graph.module)
    path = Path(file).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


@click.command("invoke")
@click.argument("flow_arg", metavar="[FLOW]", required=False)
@param_option
@click.option(
    "--resume", metavar="RUN_ID", help="Continue a failed deployed run: recompute only what did not complete."
)
@click.option(
    "--rerun",
    metavar="STEP",
    multiple=True,
    help="With --resume: compute STEP and every step after it again, whatever they were computed from (repeatable).",
)
@click.option("--no-wait", is_flag=True, help="Start the run, print its id and return.")
@click.option("--json", "as_json", is_flag=True, help="JSON progress lines on stderr and a JSON result on stdout.")
@aws_options
@pass_state
@handle_errors
def command(
    state: CliState,
    /,
    flow_arg: str | None,
    params: tuple[str, ...],
    resume: str | None,
    rerun: tuple[str, ...],
    no_wait: bool,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Run a deployed flow and print its result.

    FLOW is path/to/file.py[:flow], package.module[:flow], or the name of a flow in the module
    set as `flow` in lokki.toml (default: that flow). --resume RUN_ID continues a failed run with
    its own parameters, recomputing only what did not complete or was computed from other code,
    parameters or inputs (as `lokki-sam run --resume`), and says what it reused.
    """
    from lokki_sam import layout, lineage, names
    from lokki_sam.cli.view import ExecutionView
    from lokki_sam.cloud import resume as resuming
    from lokki_sam.cloud.failure import failure_error
    from lokki_sam.cloud.flows import resolve_flow
    from lokki_sam.cloud.identity import check_deployed
    from lokki_sam.cloud.invoke import execution_input, start_run, wait
    from lokki_sam.cloud.map_totals import map_totals
    from lokki_sam.cloud.push import check_images
    from lokki_sam.cloud.result import read_output
    from lokki_sam.cloud.stack import deployment
    from lokki_sam.cloud.status import diagnose
    from lokki_sam.errors import LokkiError, ParamError
    from lokki_sam.params import parse_assignments, resolve_params

    aws = pop_aws(kwargs)
    flow_obj = resolve_flow(flow_arg, state.config)
    graph = flow_obj.graph
    where = f"flow '{graph.name}'"
    if resume is not None and params:
        raise ParamError(
            "a resumed run keeps the parameters it was started with", where=f"run {resume}", hint="drop -p"
        )
    if rerun and resume is None:
        raise LokkiError("--rerun goes with --resume RUN_ID", hint="a new run computes every step anyway")
    forced = lineage.rerun_nodes(graph, rerun)  # refuse unknown steps before touching AWS
    resumed_name: str | None = None
    if resume is None:
        raw = parse_assignments(params, where=where)
        resolved = resolve_params(graph.params, raw, where=where)  # refuse bad input before touching AWS
        given = execution_input(raw, resolved)
    dep = deployment(state.config, aws)
    check_deployed(dep, graph, source_of(flow_obj))
    check_images(dep, graph)  # a Batch step's image pushed (`lokki-sam push`)
    if resume is not None:
        run_id, _ = names.run_of_execution(layout.check_run_id(resume))  # a resume's name means its run
        resumed_name, given = resuming.prepare(dep, graph, run_id, forced)
        own = {k: v for k, v in given.items() if k != names.RERUN_INPUT_KEY}
        resolved = resolve_params(graph.params, own, where=f"run {run_id}")
        arn = resuming.start(dep, graph, resumed_name, given)
    else:
        run_id, arn = start_run(dep, graph, given)
    if no_wait:
        if as_json:
            print_json({"flow": graph.name, "run_id": run_id, "execution_arn": arn, "status": "running"})
        else:
            click.echo(run_id)
        return
    sfn = dep.client("stepfunctions")
    view = ExecutionView(
        as_json, totals=lambda: map_totals(sfn, arn, graph), progress_interval=state.config["progress_interval"]
    )
    view.started(graph.name, run_id, arn, {k: v for k, v in given.items() if k != names.RERUN_INPUT_KEY})
    began = time.monotonic()
    try:
        snap = wait(dep, arn, view.update)
        view.finished(run_id, snap.status, time.monotonic() - began, snap.maps)
        if resumed_name is not None:
            report_decisions(dep, graph, run_id, resumed_name)
        if snap.status != "SUCCEEDED":
            raise failure_error(dep, graph, run_id, diagnose(sfn, arn, snap.status), arn)
        value = read_output(dep, graph, run_id)
    except KeyboardInterrupt:
        view.stop()
        stopped = StoppedFollowing(
            f"stopped following run {run_id}; it goes on in the cloud",
            hint=f"lokki-sam result {run_id} (or lokki-sam runs {graph.name})",
        )
        stopped.details.update(flow=graph.name, run_id=run_id, execution_arn=arn)
        raise stopped from None
    except LokkiError as exc:
        exc.details.update(flow=graph.name, run_id=run_id, execution_arn=arn)
        raise
    if as_json:
        payload = {
            "flow": graph.name,
            "run_id": run_id,
            "params": json_result(resolved),
            "result": json_result(value),
            "failed_items": [{"map": m.label, "count": m.failed} for m in snap.maps if m.failed],
            "execution_arn": arn,
        }
        print_json(payload)
    else:
        print_result(value)


def report_decisions(dep: Any, graph: Any, run_id: str, execution_name: str) -> None:
    """What the resumed execution reused and recomputed, per step and map, as its steps recorded it."""
    from lokki_sam.cloud.result import check_finished, run_context
    from lokki_sam.execution import read_decisions

    ctx = run_context(graph, dep.store(graph.name), run_id, check_finished(dep, graph, run_id), None)
    for decision in read_decisions(ctx, execution_name):
        click.echo(f"  {decision.describe(run_id)}", err=True)


class StoppedFollowing(LokkiError):
    """Ctrl-C while `invoke` follows a run: the run goes on in the cloud (exit code 130)."""

    exit_code = 130
