"""`lokki-sam run`: run a flow locally."""

from __future__ import annotations

import json
from typing import Any

import click

from lokki_sam.cli.options import param_option, run_options
from lokki_sam.cli.output import json_result, print_result
from lokki_sam.cli.state import CliState, handle_errors, pass_state
from lokki_sam.dsl import Flow


def execute_run(
    state: CliState,
    flow_obj: Flow,
    raw_params: dict[str, Any],
    resume: str | None,
    store: str | None,
    as_json: bool,
    quiet: bool = False,
) -> None:
    """Run `flow_obj` with the reporter the options ask for and print its result."""
    from lokki_sam.local import run_flow, sigterm_interrupts
    from lokki_sam.progress import JsonReporter, Reporter, RichReporter

    config = state.config
    reporter: Reporter = JsonReporter() if as_json else (Reporter() if quiet else RichReporter())
    try:
        with sigterm_interrupts():
            outcome = run_flow(
                flow_obj,
                raw_params,
                store=store or config["store"],
                resume=resume,
                reporter=reporter,
                concurrency=config.get("concurrency"),
            )
    finally:
        reporter.close()
    if as_json:
        failures = [f.__dict__ | {"indexes": list(f.indexes)} for f in outcome.failures]
        payload = {
            "flow": flow_obj.name,
            "run_id": outcome.run_id,
            "params": json_result(outcome.params),
            "result": json_result(outcome.result),
            "failed_items": failures,
        }
        click.echo(json.dumps(payload, indent=2))
    else:
        print_result(outcome.result)


@click.command("run")
@click.argument("flow_ref", required=False)
@param_option
@run_options
@pass_state
@handle_errors
def command(
    state: CliState,
    flow_ref: str | None,
    params: tuple[str, ...],
    resume: str | None,
    store: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run a flow locally. FLOW_REF is path/to/file.py[:flow] or package.module[:flow]."""
    from lokki_sam.loader import load_flow
    from lokki_sam.params import parse_assignments

    flow_obj = load_flow(state.flow_ref(flow_ref, "run"))
    raw = parse_assignments(params, where=f"flow '{flow_obj.name}'")
    execute_run(state, flow_obj, raw, resume, store, as_json, quiet)
