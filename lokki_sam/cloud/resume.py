"""Resuming a deployed run: a new execution of the same run, `<run id>.resume-<n>`.

The runtime reads the run id back from the execution name and, in a resumed execution, keeps
every output already stored under the identity it would be computed from now (lineage.py), and
runs a map only over the items without such an output (a todo manifest); it records what it
decided per stage, which `invoke --resume` prints. `--rerun` steps travel in the execution input
beside the parameters (names.RERUN_INPUT_KEY), accumulated over the run's attempts, so a later
resume never goes back to outputs computed before a rerun. So a resume works on any Step Functions
implementation, needs no change to the state machine, and after a fixed flow is redeployed the
identities decide what is still valid: the same semantics as `lokki-sam run --resume`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lokki_sam import names
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.cloud.stack import Deployment
from lokki_sam.cloud.status import execution_arn
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph

RESUMABLE = ("FAILED", "TIMED_OUT", "ABORTED")


class CannotResume(LokkiError):
    """The run cannot be resumed (unknown, still running, succeeded, another flow's, expired)."""


@dataclass(frozen=True)
class Attempt:
    name: str  # the execution name
    described: dict[str, Any]  # its DescribeExecution

    @property
    def status(self) -> str:
        return str(self.described["status"])

    @property
    def input(self) -> str:
        return str(self.described.get("input") or "{}")


def attempts(dep: Deployment, graph: FlowGraph, run_id: str) -> list[Attempt]:
    """The run's executions, first to latest: the run itself, then its resumes."""
    import botocore.exceptions

    sfn = dep.client("stepfunctions")
    machine = dep.state_machine_arn(graph.name)
    found: list[Attempt] = []
    for attempt in range(0, 10_000):
        name = run_id if attempt == 0 else names.resume_execution_name(run_id, attempt)
        arn = execution_arn(machine, name)
        with aws_errors(f"run {run_id}"):
            try:
                described = sfn.describe_execution(executionArn=arn)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExecutionDoesNotExist":
                    raise
                return found
        found.append(Attempt(name, described))
    return found


def prepare(dep: Deployment, graph: FlowGraph, run_id: str, rerun: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """The next resume execution's name and input: the run's own parameters, plus the nodes every
    `--rerun` so far forced (`rerun`: this attempt's); refuses what cannot be resumed."""
    tried = attempts(dep, graph, run_id)
    if not tried:
        other = next((f for f in dep.flows() if f != graph.name and run_id.startswith(f"{f}-")), None)
        raise CannotResume(
            f"no run {run_id} of flow '{graph.name}' in stack '{dep.stack_name}'"
            + (f" (it looks like a run of flow '{other}')" if other else ""),
            hint=f"pass the flow it belongs to, or list runs with `lokki-sam runs {graph.name}`",
        )
    latest = tried[-1]
    if latest.status == "RUNNING":
        raise CannotResume(
            f"run {run_id} is still running ({latest.name})",
            hint=f"wait for it (or stop it), then resume; follow it with `lokki-sam runs {graph.name}`",
        )
    if latest.status == "SUCCEEDED":
        raise CannotResume(f"run {run_id} succeeded: nothing to resume", hint=f"lokki-sam result {run_id}")
    if not dep.store(graph.name).list_keys(f"{run_id}/"):
        raise CannotResume(
            f"the artifacts of run {run_id} are gone from {dep.store(graph.name).describe(run_id + '/')} "
            "(expired by the bucket's lifecycle rule, or deleted): nothing is left to resume from",
            hint="start a new run with `lokki-sam invoke`",
        )
    given = _input(tried[0])
    given.pop(names.RERUN_INPUT_KEY, None)
    reruns: dict[str, int] = {}
    for earlier in tried:
        forced = _input(earlier).get(names.RERUN_INPUT_KEY)
        reruns.update(forced if isinstance(forced, dict) else {})
    reruns.update(dict.fromkeys(rerun, len(tried)))
    if reruns:
        given[names.RERUN_INPUT_KEY] = reruns
    return names.resume_execution_name(run_id, len(tried)), given


def _input(attempt: Attempt) -> dict[str, Any]:
    try:
        value = json.loads(attempt.input)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def start(dep: Deployment, graph: FlowGraph, name: str, params: dict[str, Any]) -> str:
    """Start the resume execution; return its ARN."""
    machine = dep.state_machine_arn(graph.name)
    with aws_errors(f"resuming flow '{graph.name}'"):
        started = dep.client("stepfunctions").start_execution(
            stateMachineArn=machine, name=name, input=json.dumps(params)
        )
    return str(started.get("executionArn") or execution_arn(machine, name))
