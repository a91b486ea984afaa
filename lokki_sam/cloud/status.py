"""What a Step Functions execution is doing (states done, map items) and, when it failed, why.

Read from the execution history and DescribeMapRun; a failing map item is found in its child
execution (ListExecutions by map run), whose history names the step, the error and the cause.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lokki_sam.cloud.aws import aws_errors

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
FAILURE_EVENTS = ("Failed", "TimedOut", "Aborted")
MAP_ERRORS = ("States.ExceedToleratedFailureThreshold", "States.ItemReaderFailed")


@dataclass(frozen=True)
class MapProgress:
    label: str
    status: str
    total: int
    succeeded: int
    failed: int
    running: int

    @property
    def done(self) -> int:
        return self.succeeded + self.failed


@dataclass
class Snapshot:
    status: str
    states_done: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    maps: list[MapProgress] = field(default_factory=list)


@dataclass(frozen=True)
class Failure:
    """Why an execution failed: the state (= node id) that failed, its error and message."""

    status: str
    state: str | None
    error: str
    message: str
    item: str | None = None  # the map item(s) (child execution input) that failed: "17" or "0..19"
    map_label: str | None = None  # the map (its Label: the map id) whose item failed


def execution_arn(state_machine_arn: str, run_id: str) -> str:
    """arn:...:stateMachine:NAME -> arn:...:execution:NAME:RUN_ID (the execution name is the run id)."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{run_id}"


def history(sfn: Any, arn: str) -> Iterator[dict[str, Any]]:
    with aws_errors("execution history"):
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn, includeExecutionData=False):
            yield from page.get("events", ())


def snapshot(sfn: Any, arn: str, status: str) -> Snapshot:
    snap = Snapshot(status)
    entered: dict[str, int] = {}
    for event in history(sfn, arn):
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entered[name] = entered.get(name, 0) + 1
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            snap.states_done.append(name)
            entered[name] = entered.get(name, 1) - 1
    snap.running = [name for name, open_ in entered.items() if open_ > 0]
    snap.maps = map_progress(sfn, arn)
    return snap


def map_runs(sfn: Any, arn: str) -> list[dict[str, Any]]:

    with aws_errors("map runs"):
        try:
            runs: list[dict[str, Any]] = sfn.list_map_runs(executionArn=arn).get("mapRuns", [])
        except Exception:  # best effort: an emulator without map runs (in-process moto even raises) shows no items
            return []
    return runs


def map_progress(sfn: Any, arn: str) -> list[MapProgress]:
    found = []
    for run in map_runs(sfn, arn):
        with aws_errors("map run"):
            described = sfn.describe_map_run(mapRunArn=run["mapRunArn"])
        counts = described.get("itemCounts", {})
        found.append(
            MapProgress(
                label=map_label(run["mapRunArn"]),
                status=str(described.get("status", "")),
                total=int(counts.get("total", 0)),
                succeeded=int(counts.get("succeeded", 0)),
                failed=int(counts.get("failed", 0)) + int(counts.get("timedOut", 0)) + int(counts.get("aborted", 0)),
                running=int(counts.get("running", 0)),
            )
        )
    return found


def map_label(map_run_arn: str) -> str:
    """arn:aws:states:R:A:mapRun:SM/LABEL:UUID -> LABEL (the Map state's Label, i.e. the map id)."""
    resource = map_run_arn.split(":mapRun:", 1)[-1]
    return resource.split("/", 1)[-1].rsplit(":", 1)[0]


def diagnose(sfn: Any, arn: str, status: str) -> Failure:
    """The failing state, error and message of a finished, unsuccessful execution."""
    state, error, cause = _failure_events(sfn, arn)
    if status == "FAILED" and (not error or error.startswith(MAP_ERRORS)):
        child = failed_child(sfn, arn)
        if child is not None:
            return child
    if not error and not cause:  # no failure event (some emulators): DescribeExecution has them
        with aws_errors("execution"):
            described = sfn.describe_execution(executionArn=arn)
        error, cause = str(described.get("error", "")), str(described.get("cause", ""))
    error_type, message = parse_cause(error, cause)
    return Failure(status, state, error_type or status, message)


def _failure_events(sfn: Any, arn: str) -> tuple[str | None, str, str]:
    """(state, error, cause) of the last state-level failure event, else of the execution's."""
    current: str | None = None
    state_failure: tuple[str | None, str, str] | None = None
    execution_failure: tuple[str | None, str, str] | None = None
    for event in history(sfn, arn):
        kind = str(event.get("type", ""))
        if kind.endswith("StateEntered"):
            current = event["stateEnteredEventDetails"]["name"]
        if not kind.endswith(FAILURE_EVENTS):
            continue
        details = next((v for k, v in event.items() if k.endswith("EventDetails") and isinstance(v, dict)), {})
        found = (current, str(details.get("error", "")), str(details.get("cause", "")))
        if kind.startswith("Execution"):
            execution_failure = found
        else:
            state_failure = found
    return state_failure or execution_failure or (current, "", "")


def failed_child(sfn: Any, arn: str) -> Failure | None:
    """The first failed item execution of the execution's map runs, diagnosed."""

    for run in map_runs(sfn, arn):
        for status in ("FAILED", "TIMED_OUT", "ABORTED"):
            with aws_errors("map run executions"):
                try:
                    children = sfn.list_executions(mapRunArn=run["mapRunArn"], statusFilter=status, maxResults=1)
                except Exception:  # best effort: the caller locates the item from the artifacts instead
                    return None
            for child in children.get("executions", ()):
                inner = diagnose(sfn, child["executionArn"], status)
                return Failure(
                    status="FAILED",
                    state=inner.state,
                    error=inner.error,
                    message=inner.message,
                    item=_item_of(sfn, child["executionArn"]),
                    map_label=map_label(run["mapRunArn"]),
                )
    return None


def _item_of(sfn: Any, child_arn: str) -> str | None:
    with aws_errors("map item execution"):
        raw = sfn.describe_execution(executionArn=child_arn).get("input")
    try:
        value = json.loads(raw or "null")
    except json.JSONDecodeError:
        return None
    if isinstance(value, dict):
        if isinstance(value.get("i"), int):
            return str(value["i"])
        items = value.get("Items")
        if isinstance(items, list) and items and all(isinstance(x, dict) and "i" in x for x in items):
            return f"{items[0]['i']}..{items[-1]['i']}"
    return None


def parse_cause(error: str, cause: str) -> tuple[str, str]:
    """(error type, message): a Lambda failure's cause is JSON with errorType/errorMessage."""
    try:
        decoded = json.loads(cause) if cause.startswith("{") else None
    except json.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and ("errorMessage" in decoded or "errorType" in decoded):
        error_type = str(decoded.get("errorType") or error)
        # Emulators report every Python exception as Runtime.HandlerError; the class is in errorType.
        return error_type, str(decoded.get("errorMessage", "")).strip()
    return error, cause.strip()
