"""`lokki-sam result RUN_ID`: a deployed run's result, or one step's output."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import click

from lokki_sam.cli.options import aws_options, pop_aws
from lokki_sam.cli.output import json_result, print_json, print_result
from lokki_sam.cli.state import CliState, handle_errors, pass_state


def write_output(value: Any, path: Path) -> None:
    """`.pkl` -> pickle (any value); `.json` -> JSON; else the same text `result` prints."""
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(value, protocol=5))
    elif path.suffix == ".json":
        path.write_text(json.dumps(json_result(value), indent=2, ensure_ascii=False) + "\n")
    else:
        path.write_text(value if isinstance(value, str) else json.dumps(json_result(value), indent=2) + "\n")


@click.command("result")
@click.argument("run_id")
@click.option("--flow", "flow_arg", metavar="FLOW", help="Flow of the run [default: from lokki.toml and the run id].")
@click.option("--step", metavar="STEP", help="Print this step's (or map's) output instead of the result.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE (.pkl, .json).")
@click.option("--json", "as_json", is_flag=True, help="A JSON document on stdout: flow, run_id, step, result.")
@aws_options
@pass_state
@handle_errors
def command(
    state: CliState,
    /,
    run_id: str,
    flow_arg: str | None,
    step: str | None,
    output: Path | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Fetch a deployed run's result, or one step's output (--step)."""
    from lokki_sam import layout
    from lokki_sam.cloud.failure import failure_error
    from lokki_sam.cloud.flows import flow_for_run
    from lokki_sam.cloud.result import check_finished, read_output, version_of_run
    from lokki_sam.cloud.stack import deployment
    from lokki_sam.cloud.status import diagnose
    from lokki_sam.errors import LokkiError

    layout.check_run_id(run_id)
    aws = pop_aws(kwargs)
    flow_obj = flow_for_run(run_id, flow_arg, state.config)
    dep = deployment(state.config, aws)
    described = check_finished(dep, flow_obj.graph, run_id)
    status = str(described.get("status"))
    if step is None and status == "RUNNING":
        raise LokkiError(f"run {run_id} is still running", hint="wait, or follow it with `lokki-sam runs`")
    if step is None and status != "SUCCEEDED":
        failure = diagnose(dep.client("stepfunctions"), described["executionArn"], status)
        raise failure_error(dep, flow_obj.graph, run_id, failure, described["executionArn"])
    made_by = version_of_run(dep, flow_obj.graph, described["executionArn"])
    if made_by is not None:
        click.echo(
            f"note: run {run_id} was made by the deployed version of flow '{flow_obj.graph.name}', "
            f"not by the file's ({made_by.changes}): read as that version stored it",
            err=True,
        )
    value = read_output(dep, flow_obj.graph, run_id, step, made_by)
    if output is not None:
        write_output(value, output)
        click.echo(f"wrote {output}", err=True)
    if as_json:
        print_json({"flow": flow_obj.graph.name, "run_id": run_id, "step": step, "result": json_result(value)})
    elif output is None:
        print_result(value)
