"""`lokki-sam logs RUN_ID`: a deployed run's log records, from every function of its flow."""

from __future__ import annotations

import json
from typing import Any

import click

from lokki_sam.cli.options import aws_options, pop_aws
from lokki_sam.cli.state import CliState, handle_errors, pass_state
from lokki_sam.tracebacks import user_frames

FIGURES = (("bytes_read", "read"), ("bytes_written", "written"))


def render(record: dict[str, Any]) -> str:
    """One readable line (and the traceback of a failure, the user's frames) for a record."""
    items = record.get("items")
    where = str(record.get("node") or record.get("step") or "-")
    if items:
        where += " items " + ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in items)
    text = f"{record.get('timestamp', '')}  {record.get('level', ''):<7} {where}  {record.get('message', '')}"
    if record.get("execution") and record.get("execution") != record.get("run_id"):
        text += f"  [{record['execution']}]"
    if "seconds" in record:
        parts = [f"{record['seconds']:.3f} s", f"{record.get('s3_requests', 0)} S3 requests"]
        parts += [f"{_size(int(record.get(key) or 0))} {label}" for key, label in FIGURES]
        if record.get("peak_memory_mb"):
            scope = "process peak" if record.get("peak_memory_scope") == "process" else "peak"
            parts.append(f"{scope} {record['peak_memory_mb']} MB")
        text += f"  ({', '.join(parts)})"
    if record.get("errorType"):
        text += f"\n    {record['errorType']}: {record.get('errorMessage', '')}"
        frames = [str(frame) for frame in record.get("stackTrace") or ()]
        text += "".join(f"\n    {line.rstrip()}" for frame in user_frames(frames) for line in frame.splitlines())
    return text


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


@click.command("logs")
@click.argument("run_id")
@click.option("--flow", "flow_arg", metavar="FLOW", help="Flow of the run [default: from lokki.toml and the run id].")
@click.option("--step", metavar="STEP", help="Only this step's records (a step name or a node id).")
@click.option("--item", type=click.IntRange(min=0), metavar="N", help="Only the records of map item N.")
@click.option("--json", "as_json", is_flag=True, help="The records as JSON lines, each with its log group.")
@aws_options
@pass_state
@handle_errors
def command(
    state: CliState,
    /,
    run_id: str,
    flow_arg: str | None,
    step: str | None,
    item: int | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """A deployed run's log records, from all its flow's functions.

    Every step's start, end (duration, S3 bytes) and failure (traceback), and the steps' own
    logging, across the run and its resumes."""
    from lokki_sam import layout, names
    from lokki_sam.cloud.flows import flow_for_run
    from lokki_sam.cloud.run_logs import run_records
    from lokki_sam.cloud.stack import deployment

    run_id, _ = names.run_of_execution(layout.check_run_id(run_id))
    aws = pop_aws(kwargs)
    flow_obj = flow_for_run(run_id, flow_arg, state.config)
    dep = deployment(state.config, aws)
    records = run_records(dep, flow_obj.graph, run_id, step=step, item=item)
    for found in records:
        click.echo(json.dumps({**found.record, "log_group": found.group}) if as_json else render(found.record))
    if not records:
        click.echo(
            f"no log records of run {run_id}" + (f" for step '{step}'" if step else "")
            + (f" and item {item}" if item is not None else "")
            + " (CloudWatch Logs shows events a few seconds after they are written)",
            err=True,
        )  # fmt: skip
