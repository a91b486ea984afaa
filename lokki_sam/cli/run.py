"""`lokki-sam run`: run a flow locally."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from lokki_sam.cli.options import param_option, run_options
from lokki_sam.cli.output import json_result, print_json, print_result
from lokki_sam.cli.state import CliState, handle_errors, pass_state
from lokki_sam.dsl import Flow
from lokki_sam.errors import LokkiError
from lokki_sam.streams import stdout_to_stderr

if TYPE_CHECKING:
    from lokki_sam.local import ItemFailure
    from lokki_sam.progress import Reporter


def run_reporter(state: CliState, *, as_json: bool, quiet: bool, verbose: bool) -> Reporter:
    """The reporter the options and the config ask for. Flags win: --json (JSON lines, and -q is
    ignored as before), -q (nothing), -v (DEBUG); then main(flow)'s --log-level/--log-format; then
    the config's log_level, log_format, progress_interval and show_timestamps."""
    from lokki_sam.progress import DEBUG, LEVELS, QUIET, make_reporter

    if quiet and verbose:
        raise LokkiError("-q (print only the result) and -v (report more) contradict each other", hint="give one")
    config = state.config
    level = LEVELS[state.log_level or config["log_level"]]
    if verbose:
        level = DEBUG
    elif quiet and not as_json:
        level = QUIET
    log_format = "json" if as_json else state.log_format or config["log_format"]
    reporter = make_reporter(
        log_format, level, progress_interval=config["progress_interval"], timestamps=config["show_timestamps"]
    )
    for warning in state.held_warnings():
        reporter.config_warning(warning)
    return reporter


def execute_run(
    state: CliState,
    flow_obj: Flow,
    raw_params: dict[str, Any],
    resume: str | None,
    store: str | None,
    as_json: bool,
    quiet: bool = False,
    verbose: bool = False,
    rerun: tuple[str, ...] = (),
    executor: str | None = None,
) -> None:
    """Run `flow_obj` with the reporter the options ask for and print its result. Stdout holds
    the result alone: what the steps print goes to stderr. A failure of a run that started names
    its run (`--json`: `flow` and `run_id` beside the error)."""
    from lokki_sam import layout
    from lokki_sam.local import MapFailed, run_flow, sigterm_interrupts

    config = state.config
    reporter = run_reporter(state, as_json=as_json, quiet=quiet, verbose=verbose)
    root = store or config["store"]
    run_id = resume or layout.new_run_id(flow_obj.name)
    try:
        with sigterm_interrupts(), stdout_to_stderr():
            outcome = run_flow(
                flow_obj,
                raw_params,
                store=root,
                run_id=None if resume else run_id,
                resume=resume,
                rerun=rerun,
                reporter=reporter,
                concurrency=config.get("concurrency"),
                executor=executor or config.get("executor"),
            )
    except LokkiError as exc:
        if _run_exists(root, run_id):
            exc.details.update(flow=flow_obj.name, run_id=run_id)
        if isinstance(exc, MapFailed):
            exc.details["failed_items"] = failed_items(exc.failures)
        raise
    finally:
        reporter.close()
    if as_json:
        payload = {
            "flow": flow_obj.name,
            "run_id": outcome.run_id,
            "params": json_result(outcome.params),
            "result": json_result(outcome.result),
            "failed_items": failed_items(outcome.failures),
        }
        print_json(payload)
    else:
        print_result(outcome.result)


def _run_exists(store: str, run_id: str) -> bool:
    """Whether the run started (it has a record): only then does a failure name it."""
    from lokki_sam import layout
    from lokki_sam.store import LocalStore

    try:
        return LocalStore(store).exists(layout.run_record(layout.check_run_id(run_id)))
    except LokkiError:  # an invalid run id (the error being reported says so)
        return False


def failed_items(failures: Sequence[ItemFailure]) -> list[dict[str, Any]]:
    return [f.__dict__ | {"indexes": list(f.indexes)} for f in failures]


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
    rerun: tuple[str, ...],
    store: str | None,
    executor: str | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Run a flow locally. FLOW_REF is path/to/file.py[:flow] or package.module[:flow]."""
    from lokki_sam.loader import load_flow
    from lokki_sam.params import parse_assignments

    state.hold_warnings()  # config warnings go through the run's reporter
    flow_obj = load_flow(state.flow_ref(flow_ref, "run"))
    raw = parse_assignments(params, where=f"flow '{flow_obj.name}'")
    execute_run(state, flow_obj, raw, resume, store, as_json, quiet, verbose, rerun, executor)
