"""`lokki-sam plan`: what one run of a flow will do and cost in the cloud, before deploying it."""

from __future__ import annotations

import sys

import click

from lokki_sam.cli.options import param_option
from lokki_sam.cli.output import error_document, print_json
from lokki_sam.cli.state import CliState, handle_errors, pass_state


@click.command("plan")
@click.argument("flow_ref", required=False)
@param_option
@click.option(
    "--items",
    "items",
    multiple=True,
    metavar="N|MAP=N",
    help="Map sizes instead of running the map sources locally: N for every map, MAP=N for one (repeatable).",
)
@click.option("--measure", is_flag=True, help="Run the flow locally once; use its step durations for GB-seconds.")
@click.option("--stack-name", help="Stack to check names for [default: samconfig.toml, then lokki.toml stack_name].")
@click.option("--config-env", default="default", show_default=True, help="samconfig.toml environment to read.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@pass_state
@handle_errors
def command(
    state: CliState,
    flow_ref: str | None,
    params: tuple[str, ...],
    items: tuple[str, ...],
    measure: bool,
    stack_name: str | None,
    config_env: str,
    as_json: bool,
) -> None:
    """Before deploying: what one run costs and which service limits it would hit.

    Per stage, for a run with these parameters: Lambda invocations, state transitions, S3
    requests, GB-seconds (--measure) and list-price USD (us-east-1). Map sizes come from running
    the steps before each map locally, or from --items. Exits 1 when a limit is exceeded, 2 on
    bad input."""
    from lokki_sam.loader import load_flow
    from lokki_sam.params import parse_assignments
    from lokki_sam.plan import make_plan, render

    flow_obj = load_flow(state.flow_ref(flow_ref, "plan"))
    raw = parse_assignments(params, where=f"flow '{flow_obj.name}'")
    plan = make_plan(
        flow_obj.graph,
        raw,
        items,
        config=state.config,
        measure=measure,
        stack_name=stack_name,
        config_env=config_env,
    )
    over = None
    if plan.exceeded:
        shown = ", ".join(f"{limit.check} [{limit.where}]" for limit in plan.exceeded)
        over = f"over a service limit: {shown}"
    if as_json:
        document = render.as_json(plan)
        if over:  # the plan, and the error its exit code 1 stands for
            hint = "see each limit's fix in `limits`"
            document |= error_document(over, kind="LimitExceeded", exit_code=1, hint=hint)
        print_json(document)
    else:
        click.echo(render.text(plan))
    if over:
        click.echo(f"error: {over}", err=True)
        sys.exit(1)
