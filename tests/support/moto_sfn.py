"""Run a compiled flow in moto's Step Functions interpreter with the real lokki-sam handler.

moto executes a state machine with its port of the LocalStack ASL interpreter; its Lambda
invokes need Docker, so `_invoke_lambda` (moto 5.2.x, not a supported hook: moto is pinned
below 5.3) is replaced here by an in-process call of `lokki_sam.runtime.handle` with the
function's own environment. A raised exception becomes a function error whose `errorType` is
the exception class name, as in the AWS Python runtime.

moto's interpreter lacks `ItemBatcher` and ignores ToleratedFailure*: `deploy` sets them
aside and this module applies them with AWS semantics (see `moto_compatible`), so batched
children receive `{"Items": [...], "BatchInput": {...}}` (one Lambda invocation per batch)
and a map fails with States.ExceedToleratedFailureThreshold when it should.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
from botocore.exceptions import ConnectTimeoutError
from moto import mock_aws
from moto.awslambda.models import LambdaFunction

from lokki_sam import names, runtime
from lokki_sam.compile import asl
from lokki_sam.graph import FlowGraph
from lokki_sam.store import S3Store
from tests.support.keys import STACK, function_env

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "lokki-artifacts"
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
_SUB_RE = re.compile(r"\$\{([A-Za-z0-9]+)\}")


@dataclass
class Counters:
    """What the runtime and the Distributed Maps did: Lambda invocations, the handler's S3 requests,
    and the child executions the maps started with the states they entered (moto keeps child
    histories out of the API: `_map_run` reads them from the interpreter's event manager)."""

    invocations: int = 0
    s3_requests: int = 0
    by_function: dict[str, int] = field(default_factory=dict)
    child_executions: int = 0
    child_states_entered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_invocation(self, function: str) -> None:
        with self.lock:
            self.invocations += 1
            self.by_function[function] = self.by_function.get(function, 0) + 1

    def count_s3(self, **_: Any) -> None:
        with self.lock:
            self.s3_requests += 1

    def count_children(self, children: int, event_types: list[str]) -> None:
        with self.lock:
            self.child_executions += children
            self.child_states_entered += sum(1 for t in event_types if t.endswith("StateEntered"))


@dataclass
class Execution:
    arn: str
    run_id: str
    status: str
    error: str | None
    cause: str | None
    output: Any
    seconds: float


class Cloud:
    """A moto account with the artifact bucket; `deploy` then `execute` flows.

    Three switches make it behave as the emulators differ from AWS (docs/deploy.md):
    `maps_fail_on_items = False` lets a Distributed Map whose items failed succeed (LocalStack);
    `generic_errors = True` reports every exception as `Runtime.HandlerError` (ministack);
    `unreachable_items` are map items whose invocation never reaches the function: the engine
    fails them with `States.Runtime` (LocalStack's Step Functions when it cannot reach Lambda)."""

    maps_fail_on_items: bool = True
    generic_errors: bool = False
    unreachable_items: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.lam = boto3.client("lambda", region_name=REGION)
        self.iam = boto3.client("iam", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        role = self.iam.create_role(RoleName="lokki-test", AssumeRolePolicyDocument="{}")
        self.role_arn = role["Role"]["Arn"]
        self.counters = Counters()
        # One S3 client for every invocation, like a warm Lambda; its requests are counted.
        self.runtime_s3 = boto3.client("s3", region_name=REGION)
        self.runtime_s3.meta.events.register("before-call.s3", self.counters.count_s3)
        self.state_machines: dict[str, str] = {}

    def deploy(self, graph: FlowGraph, *, definition: dict[str, Any] | None = None, module: str | None = None) -> str:
        """Create the flow's functions (unless they exist) and state machine, substitutions
        applied; return its ARN. `definition` replaces the compiled one (tests of emulator gaps);
        `module` is the functions' LOKKI_MODULE (default: the graph's, as imported here)."""
        subs = {names.BUCKET_SUBSTITUTION: BUCKET, names.PREFIX_SUBSTITUTION: names.flow_prefix(STACK, graph.name)}
        for step_ in graph.steps:
            function_name = f"{graph.name}-{step_.name}"[:64]
            env = function_env(graph, step_.name, BUCKET, module)
            try:
                arn = self.lam.get_function(FunctionName=function_name)["Configuration"]["FunctionArn"]
            except self.lam.exceptions.ResourceNotFoundException:
                arn = self.lam.create_function(
                    FunctionName=function_name,
                    Runtime="python3.11",
                    Role=self.role_arn,
                    Handler=names.HANDLER,
                    Code={"ZipFile": _dummy_zip()},
                    Environment={"Variables": env},
                )["FunctionArn"]
            subs[names.function_arn_substitution(graph.name, step_.name)] = arn
        text = json.dumps(definition if definition is not None else asl.compile_flow(graph))
        missing = sorted(set(_SUB_RE.findall(text)) - set(subs))
        assert not missing, f"definition uses substitutions the harness does not know: {missing}"
        assert sorted(set(_SUB_RE.findall(text))) == asl.substitution_names(graph)
        text = _SUB_RE.sub(lambda m: subs[m.group(1)], text)
        compiled = json.dumps(moto_compatible(json.loads(text)))
        if graph.name in self.state_machines:  # a new version of a deployed flow: `sam deploy` again
            arn = self.state_machines[graph.name]
            self.sfn.update_state_machine(stateMachineArn=arn, definition=compiled)
            return arn
        arn = self.sfn.create_state_machine(name=f"{STACK}-{graph.name}", definition=compiled, roleArn=self.role_arn)[
            "stateMachineArn"
        ]
        self.state_machines[graph.name] = arn
        return arn

    def execute(self, graph: FlowGraph, params: Any, *, name: str | None = None, timeout: float = 300) -> Execution:
        arn = self.state_machines.get(graph.name) or self.deploy(graph)
        # moto leaves $$.Execution.Name null unless StartExecution names the execution.
        name = name or f"{graph.name}-{uuid.uuid4().hex[:12]}"
        kwargs: dict[str, Any] = {"stateMachineArn": arn, "input": json.dumps(params), "name": name}
        started = time.perf_counter()
        execution_arn = self.sfn.start_execution(**kwargs)["executionArn"]
        deadline = time.monotonic() + timeout
        while True:
            desc = self.sfn.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                break
            assert time.monotonic() < deadline, f"execution still running after {timeout} s"
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        error = cause = None
        if desc["status"] == "FAILED":
            error, cause = desc.get("error"), desc.get("cause")
        output = json.loads(desc["output"]) if desc.get("output") else None
        return Execution(execution_arn, name, desc["status"], error, cause, output, seconds)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = self.sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]

    def store(self, graph: FlowGraph) -> S3Store:
        return S3Store(BUCKET, names.flow_prefix(STACK, graph.name), boto3.client("s3", region_name=REGION))


@contextmanager
def moto_cloud() -> Iterator[Cloud]:
    """A fresh moto account executing state machines, with Lambda running lokki-sam's handler."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, DUMMY_ENV))
        stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        cloud = Cloud()
        stack.enter_context(mock.patch.object(LambdaFunction, "_invoke_lambda", _make_invoke(cloud)))
        stack.enter_context(_patch_map_run(cloud))
        runtime.reset_cache()
        yield cloud
        runtime.reset_cache()


def _make_invoke(cloud: Cloud) -> Any:
    def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        cloud.counters.count_invocation(self.function_name)
        if isinstance(event, str | bytes):
            event = json.loads(event or "{}")
        env = {k: str(v) for k, v in self.environment_vars.items()}
        item = event.get("input") if isinstance(event, dict) else None
        if isinstance(item, dict) and item.get("i") in cloud.unreachable_items:
            raise ConnectTimeoutError(endpoint_url=f"http://127.0.0.1/{self.function_name}")  # the engine's fault
        try:
            result = runtime.handle(event, env, client=cloud.runtime_s3)
        except Exception as exc:  # the Python runtime's error shape
            payload = {
                "errorMessage": str(exc),
                "errorType": "Runtime.HandlerError" if cloud.generic_errors else type(exc).__name__,
                "stackTrace": traceback.format_exception(exc),
            }
            return json.dumps(payload), True, "".join(payload["stackTrace"])
        return json.dumps(result), False, ""

    return _invoke_lambda


# ---------------------------------------------------------------- moto compatibility shims


_MAPS: dict[str, dict[str, Any]] = {}


def moto_compatible(definition: dict[str, Any]) -> dict[str, Any]:
    """Adapt a definition to what moto runs, keeping AWS semantics (see `_map_run`):

    - moto's grammar has no ItemBatcher: each distributed map's ItemBatcher and ItemSelector
      are set aside under a unique Label and applied by `_map_run`;
    - moto parses ToleratedFailure* but ignores them (a failed child just yields null), so
      the thresholds are set aside too and checked by `_map_run`; its grammar also wants
      ToleratedFailurePercentage as a decimal.
    """

    def walk(states: dict[str, Any]) -> None:
        for state in states.values():
            if state.get("Type") != "Map":
                continue
            if "ItemReader" in state:
                label = f"lokki-map-{len(_MAPS)}"
                batcher = state.pop("ItemBatcher", None)
                _MAPS[label] = {
                    "batcher": batcher,
                    "selector": state.pop("ItemSelector", None) if batcher else None,
                    "count": state.get("ToleratedFailureCount"),
                    "percentage": state.get("ToleratedFailurePercentage"),
                }
                state["Label"] = label
            if isinstance(state.get("ToleratedFailurePercentage"), int):
                state["ToleratedFailurePercentage"] = float(state["ToleratedFailurePercentage"])
            walk(state["ItemProcessor"]["States"])

    copy = json.loads(json.dumps(definition))
    walk(copy["States"])
    return copy


def _resolve(path: str, env: Any, item: Any) -> Any:
    """The JSONPath forms the compiler emits: $$.Map.Item.Value..., $$.Execution..., $...."""
    if path.startswith("$$.Map.Item.Value"):
        value, rest = item, path[len("$$.Map.Item.Value") :]
    elif path.startswith("$$."):
        value, rest = env.states.context_object.context_object_data, path[2:]
    else:
        value, rest = env.states.get_input(), path[1:]
    for part in filter(None, rest.split(".")):
        value = value[part]
    return value


def _template(template: dict[str, Any], env: Any, item: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            out[key[:-2]] = _resolve(value, env, item)
        elif isinstance(value, dict):
            out[key] = _template(value, env, item)
        else:
            out[key] = value
    return out


def exceeds_tolerance(failed: int, total: int, count: int | None, percentage: float | None) -> bool:
    """AWS semantics: with no threshold any failure fails the map; else exceeding either does."""
    if failed == 0:
        return False
    if count is None and percentage is None:
        return True
    if count is not None and failed > count:
        return True
    return percentage is not None and total > 0 and failed * 100 / total > percentage


def _patch_map_run(cloud: Cloud) -> Any:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        distributed_iteration_component as dic,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = dic.DistributedIterationComponent._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        spec = _MAPS.get(eval_input.label or "")
        if spec is None:
            return original(self, env, eval_input)
        items = env.stack.pop()
        sizes = [1] * len(items)
        if spec["batcher"]:
            selector = spec["selector"]
            selected = [_template(selector, env, item) if selector else item for item in items]
            size = int(spec["batcher"]["MaxItemsPerBatch"])
            batch_input = _template(spec["batcher"].get("BatchInput", {}), env, None)
            items = [
                {"Items": selected[i : i + size], "BatchInput": batch_input} for i in range(0, len(selected), size)
            ]
            sizes = [len(batch["Items"]) for batch in items]
        env.stack.append(items)
        try:
            original(self, env, eval_input)
        finally:  # every child's events land in the map run's own event manager
            history = env.event_manager.get_event_history()
            cloud.counters.count_children(len(items), [str(getattr(e["type"], "value", e["type"])) for e in history])
        outputs = env.stack[-1]
        failed = sum(n for n, out in zip(sizes, outputs, strict=True) if out is None)
        if cloud.maps_fail_on_items and exceeds_tolerance(failed, sum(sizes), spec["count"], spec["percentage"]):
            error = "States.ExceedToleratedFailureThreshold"
            cause = f"{failed} of {sum(sizes)} items failed"
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold),
                    event_type=HistoryEventType.ExecutionFailed,
                    event_details=EventDetails(
                        executionFailedEventDetails=ExecutionFailedEventDetails(error=error, cause=cause)
                    ),
                )
            )
        return None

    return mock.patch.object(dic.DistributedIterationComponent, "_map_run", _map_run)


def _dummy_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("placeholder.py", "# the real code runs in-process (tests/support/moto_sfn.py)\n")
    return buf.getvalue()
