"""A deployed run's log records, gathered from its flow's function (and Batch job) log groups.

The runtime's records (lokki_sam/runlog.py) and the user's `logging` records made during a step
are JSON objects carrying `run_id`; CloudWatch Logs' filter narrows each group to events that
mention the run id within the run's time span, and the records are then matched exactly here (a
text filter alone would also find a run whose id merely contains this one). Lines that are not
such records (the platform's START/END/REPORT lines, `print` output) are not part of a run's log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.resume import attempts
from lokki_sam.cloud.stack import Deployment
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph
from lokki_sam.runlog import read_record

MARGIN_MS = 60_000  # clocks of Lambda and Step Functions differ slightly; log events may lag the execution


@dataclass(frozen=True)
class LogRecord:
    timestamp_ms: int
    group: str
    record: dict[str, Any]


def run_records(
    dep: Deployment, graph: FlowGraph, run_id: str, *, step: str | None = None, item: int | None = None
) -> list[LogRecord]:
    """The run's records (all its executions: the run and its resumes), oldest first; only `step`'s
    (a step name or node id), only those of map item `item`, when given."""
    steps = _steps(graph, step)
    tried = attempts(dep, graph, run_id)
    if not tried:
        raise LokkiError(
            f"no run {run_id} of flow '{graph.name}' in stack '{dep.stack_name}'",
            hint=f"list runs with `lokki-sam runs {graph.name}`",
        )
    start = _ms(tried[0].described.get("startDate")) - MARGIN_MS
    stop = _ms(tried[-1].described.get("stopDate") or dt.datetime.now(dt.UTC)) + MARGIN_MS
    found: dict[str, LogRecord] = {}
    for step_name in steps:
        for group in _groups(dep, graph, step_name):
            for event in _events(dep, group, run_id, start, stop):
                record = read_record(event.get("message", ""))
                if record is not None and _wanted(record, run_id, step, item):
                    # Keyed by the text: a platform writing to both groups (LocalStack) shows each once.
                    found.setdefault(event["message"], LogRecord(int(event.get("timestamp", 0)), group, record))
    return sorted(found.values(), key=lambda r: r.timestamp_ms)


def _groups(dep: Deployment, graph: FlowGraph, step_name: str) -> list[str]:
    """Where a step's records are: its Batch jobs' log group, or its function's LoggingConfig.LogGroup
    and Lambda's default group (where some emulators write regardless)."""
    if any(s.name == step_name and s.options.on_batch for s in graph.steps):
        return [dep.job_log_group(graph.name, step_name)]
    function = dep.function_name(graph.name, step_name)
    if function is None:
        return []
    return list(dict.fromkeys((dep.log_group(function), f"/aws/lambda/{function}")))


def _steps(graph: FlowGraph, step: str | None) -> list[str]:
    if step is None:
        return [s.name for s in graph.steps]
    by_node = {n.id: n.step.name for n in graph.nodes}
    if step in by_node:
        return [by_node[step]]
    if step in {s.name for s in graph.steps}:
        return [step]
    raise LokkiError(
        f"flow '{graph.name}' has no step '{step}'",
        hint=f"steps: {', '.join(s.name for s in graph.steps)}",
    )


def _events(dep: Deployment, group: str, run_id: str, start: int, stop: int) -> Iterable[dict[str, Any]]:
    import botocore.exceptions

    logs = dep.client("logs")
    with aws_errors(f"reading log group {group}"):
        try:
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=group, filterPattern=f'"{run_id}"', startTime=start, endTime=stop
            )
            for page in pages:
                yield from page.get("events", ())
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise  # a group nothing was logged to yet does not exist


def _wanted(record: dict[str, Any], run_id: str, step: str | None, item: int | None) -> bool:
    if record.get("run_id") != run_id:
        return False
    if step is not None and step not in (record.get("step"), record.get("node")):
        return False
    if item is not None:
        ranges = record.get("items") or ()
        return any(isinstance(r, list) and len(r) == 2 and r[0] <= item <= r[1] for r in ranges)
    return True


def _ms(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return 0
