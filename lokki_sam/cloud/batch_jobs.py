"""A deployed run's AWS Batch jobs, for the failure messages: which step and item each failed job ran,
its exit code, the error its log names, and where that log is.

A Batch Task that fails reports `States.TaskFailed` with the job (DescribeJobs' answer) as the cause;
the step's own exception is in the job's log stream, in the run log record `step failed` the entry
point writes (lokki_sam/runlog.py), as a Lambda step's is. A map item's job can also fail where the
history does not show it (an emulator that lets the map succeed, see docs/deploy.md): the run's
failed jobs are found in the step's queue, by job name, and matched to the run by their environment
(`LOKKI_RUN_ID`, `LOKKI_ITEMS`: lokki_sam/batch/job.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lokki_sam import names
from lokki_sam.batch import job as job_env
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.stack import Deployment
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph
from lokki_sam.runlog import read_record

DESCRIBE_AT_ONCE = 100  # DescribeJobs takes up to 100 job ids


@dataclass(frozen=True)
class FailedJob:
    """A failed Batch job of a run: the node it ran, its map items (None outside maps), how it ended."""

    job_id: str
    node: str
    items: str | None  # "3", or "4..7" for a batch of items
    exit_code: int | None
    reason: str
    log_group: str | None
    log_stream: str | None
    error: str | None = None  # "ValueError: 9 is not ready", from its log

    def describe(self) -> str:
        ended = f"exited {self.exit_code}" if self.exit_code is not None else "failed"
        why = f" ({self.reason})" if self.reason and self.exit_code is None else ""
        return f"Batch job {self.job_id} {ended}{why}"

    @property
    def log(self) -> str | None:
        if not self.log_group:
            return None
        return f"CloudWatch log group {self.log_group}" + (f", stream {self.log_stream}" if self.log_stream else "")


def from_cause(cause: str, graph: FlowGraph) -> FailedJob | None:
    """The job a `.sync` Task's failure cause holds (Step Functions' PascalCase DescribeJobs), or None."""
    try:
        found = json.loads(cause) if cause.strip().startswith("{") else None
    except json.JSONDecodeError:
        return None
    if not isinstance(found, Mapping) or "JobId" not in found:
        return None
    return _failed_job(_lower_keys(found), graph)


def _lower_keys(value: Any) -> Any:
    """Step Functions' PascalCase keys as the Batch API's camelCase (`Container` -> `container`)."""
    if isinstance(value, Mapping):
        return {(k[:1].lower() + k[1:] if k[:1].isupper() else k): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def _failed_job(described: Mapping[str, Any], graph: FlowGraph) -> FailedJob:
    container = described.get("container") or {}
    environment = {e.get("name"): e.get("value") for e in container.get("environment") or () if isinstance(e, Mapping)}
    options = (container.get("logConfiguration") or {}).get("options") or {}
    node = str(environment.get(job_env.ENV_NODE) or _node_of_name(str(described.get("jobName", "")), graph))
    return FailedJob(
        job_id=str(described.get("jobId", "")),
        node=node,
        items=_items(environment.get(job_env.ENV_ITEMS)),
        exit_code=container.get("exitCode"),
        reason=str(described.get("statusReason") or container.get("reason") or ""),
        log_group=options.get("awslogs-group") or ("/aws/batch/job" if container.get("logStreamName") else None),
        log_stream=container.get("logStreamName"),
    )


def _node_of_name(job_name: str, graph: FlowGraph) -> str:
    """The node of a job named `names.job_name(flow, node)`."""
    return next((n.id for n in graph.nodes if names.job_name(graph.name, n.id) == job_name), job_name)


def _items(value: Any) -> str | None:
    try:
        items = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError:
        return None
    if isinstance(items, int):
        return str(items)
    if isinstance(items, list) and items:
        return str(items[0]) if len(items) == 1 else f"{items[0]}..{items[-1]}"
    return None


def with_error(dep: Deployment, failed: FailedJob) -> FailedJob:
    """The job with the error its log names (the entry point's `step failed` record, else the last line)."""
    if not failed.log_group or not failed.log_stream:
        return failed
    try:
        with aws_errors(f"reading the log of Batch job {failed.job_id}"):
            events = dep.client("logs").get_log_events(
                logGroupName=failed.log_group, logStreamName=failed.log_stream, startFromHead=False, limit=200
            )["events"]
    except LokkiError:  # logs are a best-effort extra: no access, no stream yet
        return failed
    lines = [str(e.get("message", "")) for e in events]
    return dataclasses.replace(failed, error=error_of(lines))


def error_of(lines: list[str]) -> str | None:
    """`Class: message` of the run log's last `step failed` record, else the last traceback line."""
    for line in reversed(lines):
        record = read_record(line)
        if record is not None and record.get("message") == "step failed" and record.get("errorType"):
            message = str(record.get("errorMessage", "")).splitlines()[0] if record.get("errorMessage") else ""
            return f"{record['errorType']}: {message}".rstrip(": ")
    text = [
        line for line in lines if line.strip() and read_record(line) is None and not line.startswith("lokki-sam local")
    ]
    return text[-1].strip() if text else None


def failed_jobs(dep: Deployment, graph: FlowGraph, execution: str, since_ms: int) -> list[FailedJob]:
    """The failed Batch jobs of one execution of the run (the run id, or `<run>.resume-<n>`), in flow order."""
    queues = _queues(dep, graph)
    found: list[FailedJob] = []
    for node in graph.nodes:
        queue = queues.get(node.id)
        if queue is None:
            continue
        ids = list(_failed_ids(dep, queue, names.job_name(graph.name, node.id), since_ms))
        for described in _describe(dep, ids):
            container = described.get("container") or {}
            environment = {e.get("name"): e.get("value") for e in container.get("environment") or ()}
            if environment.get(job_env.ENV_RUN_ID) == execution and environment.get(job_env.ENV_NODE) == node.id:
                found.append(with_error(dep, _failed_job(described, graph)))
    return found


def _queues(dep: Deployment, graph: FlowGraph) -> dict[str, str]:
    """Node id -> the queue its jobs go to, read from the deployed definition (substitutions resolved)."""
    with aws_errors(f"reading the deployed state machine of flow '{graph.name}'"):
        described = dep.client("stepfunctions").describe_state_machine(
            stateMachineArn=dep.state_machine_arn(graph.name)
        )
    try:
        definition = json.loads(described.get("definition") or "{}")
    except json.JSONDecodeError:
        return {}
    out: dict[str, str] = {}
    for state in _states(definition.get("States", {})):
        parameters = state.get("Parameters") or {}
        node = job_env.stamped_node(parameters)
        if node is not None and isinstance(parameters.get("JobQueue"), str):
            out[str(node["node"])] = parameters["JobQueue"]
    return out


def _states(states: Any) -> Iterator[Mapping[str, Any]]:
    if not isinstance(states, Mapping):
        return
    for state in states.values():
        if isinstance(state, Mapping):
            yield state
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            yield from _states(processor.get("States"))


def _failed_ids(dep: Deployment, queue: str, job_name: str, since_ms: int) -> Iterator[str]:
    batch = dep.client("batch")
    with aws_errors(f"listing the Batch jobs of {job_name}"):
        pages = batch.get_paginator("list_jobs").paginate(
            jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [job_name]}]
        )
        for page in pages:
            for summary in page.get("jobSummaryList", ()):
                if summary.get("status") == "FAILED" and int(summary.get("createdAt", 0)) >= since_ms:
                    yield str(summary["jobId"])


def _describe(dep: Deployment, ids: list[str]) -> Iterator[dict[str, Any]]:
    for start in range(0, len(ids), DESCRIBE_AT_ONCE):
        with aws_errors("describing Batch jobs"):
            yield from dep.client("batch").describe_jobs(jobs=ids[start : start + DESCRIBE_AT_ONCE])["jobs"]


@dataclass(frozen=True)
class Explained:
    """What a failed run's Batch jobs say: the failing Task's own job (when the failing state is a
    Batch Task), and the lines naming each failed job of the execution."""

    task: FailedJob | None
    lines: list[str]


def explain(dep: Deployment, graph: FlowGraph, execution_arn: str, cause: str) -> Explained:
    """The failed Batch jobs of the execution `execution_arn` (best effort: what cannot be read is left out)."""
    task = from_cause(cause, graph)
    if task is not None:
        task = with_error(dep, task)
    try:
        with aws_errors("the execution"):
            described = dep.client("stepfunctions").describe_execution(executionArn=execution_arn)
        start = described.get("startDate")
        since = int(start.timestamp() * 1000) if start is not None else 0
        jobs = failed_jobs(dep, graph, execution_arn.rsplit(":", 1)[-1], since)
    except LokkiError:
        jobs = [task] if task is not None else []
    lines = []
    for failed in jobs:
        if task is not None and failed.job_id == task.job_id:
            continue  # the failing Task's own job: the message's error line says it
        where = f"step {failed.node}" + (f" (map item {failed.items})" if failed.items is not None else "")
        lines.append(f"  failed job: {where}: {failed.error or failed.reason} ({failed.describe()})")
        if failed.log:
            lines.append(f"    logs: {failed.log}")
    return Explained(task, lines)
