"""`HostRuntimeExecutor`: LocalStack's Lambda execution environments as host subprocesses.

LocalStack creates one executor per execution environment and calls `start(env)`,
`invoke(payload)` once per invocation (one at a time), and `stop()`; `prepare_version` runs
once per function version (unzip code and layers). Compared with LocalStack's Docker executor:
- an execution environment is a handle, not a process: each invocation leases a warm sandbox
  of its function (`pool.py`: at most LOKKI_EMULATOR_WORKERS processes live at once, idle ones
  reused across environments and invocations) and gives it back afterwards;
- a sandbox is `python3.X -S -u bootstrap.py` of the function's runtime, in the unzipped code
  folder, with the layers merged into one `/opt`-like folder (later layers win, as on AWS);
- the function timeout is enforced here (AWS's init does it in the container): the worker is
  killed and the invocation fails with `Sandbox.Timedout`; the next invocation cold-starts;
- logs come from the worker's own output with START/END/REPORT lines; LocalStack stores them
  in `/aws/lambda/<function>`, and this executor also writes them to the function's
  `LoggingConfig.LogGroup` when it names another group, as AWS would.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from localstack import config  # type: ignore[import-not-found]
from localstack.services.lambda_.invocation.executor_endpoint import (  # type: ignore[import-not-found]
    StatusErrorException,
)
from localstack.services.lambda_.invocation.lambda_models import (  # type: ignore[import-not-found]
    InvocationResult,
)
from localstack.services.lambda_.invocation.logs import LogHandler, LogItem  # type: ignore[import-not-found]
from localstack.services.lambda_.invocation.runtime_executor import (  # type: ignore[import-not-found]
    LambdaRuntimeException,
    RuntimeExecutor,
)

from . import runtimes
from .pool import Stopped, WorkerPool
from .runtime_api import Invocation
from .sandbox import InitFailure, Sandbox

LOG = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
BOOTSTRAP = HERE / "bootstrap.py"
WORK_ROOT = Path(tempfile.gettempdir()) / "lokki-host-executor"
# LocalStack's variables that differ between two environments of one function: a sandbox
# started for one environment serves the others (the credentials are the same role's).
PER_ENVIRONMENT = frozenset(
    {"AWS_LAMBDA_LOG_STREAM_NAME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    | {"AWS_LAMBDA_INITIALIZATION_TYPE"}
)
POOL = WorkerPool(runtimes.workers)


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class HostRuntimeExecutor(RuntimeExecutor):  # type: ignore[misc]  # LocalStack's class: untyped here
    def __init__(self, id: str, function_version: Any) -> None:  # LocalStack's signature
        super().__init__(id=id, function_version=function_version)
        self.env: dict[str, str] = {}
        self.command: list[str] = []
        self.key = ""  # the pool's name for this function's sandboxes
        self.stopped = threading.Event()
        self.leased: Sandbox | None = None  # the sandbox of the invocation under way

    # --------------------------------------------------------------------------- lifecycle

    def start(self, env_vars: dict[str, Any]) -> None:
        """Only settings: the process starts with the first invocation that finds no warm one.
        (Starting here would hold LocalStack's startup timeout while the pool is full.)"""
        self.command, self.env = self._worker_setup(env_vars)
        shared = {k: v for k, v in self.env.items() if k not in PER_ENVIRONMENT}
        digest = hashlib.sha256(json.dumps([self.command, shared], sort_keys=True).encode()).hexdigest()[:16]
        self.key = f"{self.function_version.qualified_arn}#{digest}"
        POOL.join(self.key)

    def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        leased = self.leased
        if leased is not None:
            leased.end()  # LocalStack stops an environment mid-invocation only when shutting down
        if self.key:
            POOL.leave(self.key)

    # ---------------------------------------------------------------------------- invoking

    def invoke(self, payload: dict[str, Any]) -> Any:
        request_id = str(payload["invoke-id"])
        try:
            sandbox, warm = POOL.lease(self.key, self._new_sandbox, self.stopped)
        except Stopped:
            raise LambdaRuntimeException(f"execution environment {self.id} stopped") from None
        self.leased = sandbox
        try:
            if not warm:
                failure = sandbox.start(self.stopped)
                if failure is not None:
                    sandbox.end()
                    return self._init_failed(request_id, failure)
            return self._invoke(sandbox, request_id, payload)
        finally:
            self.leased = None
            POOL.give_back(self.key, sandbox)

    def _new_sandbox(self) -> Sandbox:
        return Sandbox(self.command, self.env, WORK_ROOT / f"sandbox-{uuid.uuid4().hex}")

    def _init_failed(self, request_id: str, failure: InitFailure) -> Any:
        if self.stopped.is_set():
            raise LambdaRuntimeException(f"execution environment {self.id} stopped while starting")
        payload = failure.payload or error_payload(
            "Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {failure.exit_text}"
        )
        logs = self._framed(None, failure.log, init=True)
        self._store_logs(logs)
        return InvocationResult(request_id, payload, is_error=True, logs=logs)

    def _invoke(self, sandbox: Sandbox, request_id: str, payload: dict[str, Any]) -> Any:
        worker = sandbox.worker
        assert worker is not None
        timeout = float(self.function_version.config.timeout)
        invocation = Invocation(
            request_id=request_id,
            payload=str(payload.get("payload") or "").encode(),
            deadline_ms=int(time.time() * 1000 + timeout * 1000),
            function_arn=str(payload.get("invoked-function-arn") or ""),
            trace_id=str(payload.get("trace-id") or ""),
        )
        began = time.perf_counter()
        outcome = sandbox.invoke(invocation)
        duration = (time.perf_counter() - began) * 1000
        peak = worker.peak_memory_mb()
        if outcome == "done":
            text = worker.take_log(request_id)
            result, is_error = invocation.result, invocation.is_error
        elif outcome == "timeout":
            worker.kill()
            stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            text = worker.take_log(None) + f"{stamp} {request_id} Task timed out after {timeout:.2f} seconds\n"
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            result, is_error = error_payload("Sandbox.Timedout", message), True
        else:
            text = worker.take_log(None)
            message = f"RequestId: {request_id} Error: Runtime exited with error: {worker.exit_text()}"
            result, is_error = error_payload("Runtime.ExitError", message), True
        logs = self._framed(request_id, text, duration_ms=duration, peak_mb=peak, init_ms=sandbox.take_init_ms())
        self._store_logs(logs)
        return InvocationResult(request_id, result, is_error=is_error, logs=logs)

    def _framed(
        self,
        request_id: str | None,
        text: str,
        *,
        init: bool = False,
        duration_ms: float = 0.0,
        peak_mb: int | None = None,
        init_ms: float | None = None,
    ) -> str:
        """The worker's output between AWS's START and END/REPORT lines."""
        cfg = self.function_version.config
        if init:
            return f"INIT_START Runtime Version: {cfg.runtime} (lokki-sam host executor)\n{text}"
        report = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms)} ms",
            f"Memory Size: {cfg.memory_size} MB",
        ]
        if peak_mb is not None:
            report.append(f"Max Memory Used: {peak_mb} MB")
        if init_ms is not None:
            report.append(f"Init Duration: {init_ms:.2f} ms")
        version = self.function_version.id.qualifier
        return f"START RequestId: {request_id} Version: {version}\n{text}END RequestId: {request_id}\n" + (
            "\t".join(report) + "\n"
        )

    # --------------------------------------------------------------------------- settings

    def _worker_setup(self, env_vars: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        cfg = self.function_version.config
        version = runtimes.python_version(cfg.runtime)
        if version is None or cfg.code is None:
            what = f"runtime {cfg.runtime}" if cfg.runtime else "container image functions"
            raise StatusErrorException(
                "unsupported function",
                payload=error_payload(
                    "Runtime.InvalidRuntime",
                    f"lokki-sam's host executor runs python3.X zip functions; {what} are not supported",
                ),
            )
        interpreter, notice = runtimes.interpreter_for(version)
        if notice:
            LOG.warning(notice)
        task_root = Path(cfg.code.get_unzipped_code_location())
        opt = opt_folder(cfg.layers)
        front = [str(task_root)]
        if opt is not None:
            front += [str(opt / "python" / "lib" / f"python{version}" / "site-packages"), str(opt / "python")]
        # LocalStack's own internals are no business of the function; the rest is AWS's set.
        env = {k: str(v) for k, v in env_vars.items() if not k.startswith("LOCALSTACK_") or k == "LOCALSTACK_HOSTNAME"}
        bins = [str(opt / "bin")] if opt is not None else []
        env.update(
            LAMBDA_TASK_ROOT=str(task_root),
            LAMBDA_RUNTIME_DIR=str(HERE),
            AWS_EXECUTION_ENV=f"AWS_Lambda_{cfg.runtime}",
            AWS_LAMBDA_LOG_GROUP_NAME=self._log_group(),
            PATH=os.pathsep.join([*bins, str(Path(interpreter).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            LANG="C.UTF-8",
            _LOKKI_SYS_PATH=os.pathsep.join(front),
            _LOKKI_RUNTIME_PATH=runtimes.runtime_path(),
            _LOKKI_NOTICES=notice or "",
        )
        if opt is not None:
            env["LD_LIBRARY_PATH"] = str(opt / "lib")
        # The function's own variables win over the unreserved defaults above (PATH, LANG, ...), as on AWS.
        env.update({k: str(v) for k, v in (cfg.environment or {}).items() if not k.startswith("_LOKKI_")})
        return [interpreter, "-S", "-u", str(BOOTSTRAP)], env

    def _log_group(self) -> str:
        configured = (self.function_version.config.logging_config or {}).get("LogGroup")
        return str(configured or self._default_log_group())

    def _default_log_group(self) -> str:
        return f"/aws/lambda/{self.function_version.id.function_name}"

    def _store_logs(self, logs: str) -> None:
        """Also write `logs` to the configured log group (LocalStack writes /aws/lambda/<function>
        with every invocation's result, whatever LoggingConfig says)."""
        group = self._log_group()
        if group == self._default_log_group():
            return
        stream = f"{dt.date.today():%Y/%m/%d}/[{self.function_version.id.qualifier}]{self.id}"
        _log_handler(self.function_version).add_logs(LogItem(group, stream, logs))

    # ------------------------------------------------------------------- LocalStack's API

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"  # the functions reach LocalStack on loopback: AWS_ENDPOINT_URL

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        leased = self.leased
        return leased.worker.all_output() if leased is not None and leased.worker is not None else ""

    @classmethod
    def prepare_version(cls, function_version: Any) -> None:
        cfg = function_version.config
        if cfg.code is not None:
            cfg.code.prepare_for_execution()
        opt_folder(cfg.layers)

    @classmethod
    def cleanup_version(cls, function_version: Any) -> None:
        POOL.end_matching(f"{function_version.qualified_arn}#")
        handler = _LOG_HANDLERS.pop(function_version.qualified_arn, None)
        if handler is not None:
            handler.stop()

    @classmethod
    def validate_environment(cls) -> bool:
        return BOOTSTRAP.is_file()


# ------------------------------------------------------------------------------- layers

_OPT_LOCK = threading.Lock()


def opt_folder(layers: list[Any] | None) -> Path | None:
    """The layers unzipped into one folder, in order (AWS extracts them all into /opt)."""
    if not layers:
        return None
    key = hashlib.sha256("\n".join(layer.layer_version_arn for layer in layers).encode()).hexdigest()[:16]
    target = WORK_ROOT / "opt" / key
    with _OPT_LOCK:
        if target.is_dir():
            return target
        building = target.with_name(f"{key}.partial")
        shutil.rmtree(building, ignore_errors=True)
        for layer in layers:
            if layer.code is None:
                continue
            layer.code.prepare_for_execution()
            source = Path(layer.code.get_unzipped_code_location())
            shutil.copytree(source, building, dirs_exist_ok=True, copy_function=_link_or_copy, symlinks=True)
        building.mkdir(parents=True, exist_ok=True)
        building.rename(target)
    return target


def _link_or_copy(source: str, target: str) -> None:
    if os.path.lexists(target):
        os.unlink(target)  # a later layer replaces the file
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# -------------------------------------------------------------------- shared registries

_LOG_HANDLERS: dict[str, Any] = {}
_LOG_LOCK = threading.Lock()


def _log_handler(function_version: Any) -> Any:
    """LocalStack's CloudWatch writer (a queue and a thread) for one function version."""
    arn = function_version.qualified_arn
    with _LOG_LOCK:
        if arn not in _LOG_HANDLERS:
            handler = LogHandler(function_version.config.role, function_version.id.region)
            handler.start_subscriber()
            _LOG_HANDLERS[arn] = handler
        return _LOG_HANDLERS[arn]
