"""`HostRuntimeExecutor`: LocalStack's Lambda execution environments as host subprocesses.

LocalStack creates one executor per execution environment and calls `start(env)` (start a
worker and wait until its runtime is ready), `invoke(payload)` once per invocation (one at a
time), and `stop()`; `prepare_version` runs once per function version (unzip code and layers).
Compared with LocalStack's Docker executor:
- the worker is `python3.X -S -u bootstrap.py` of the function's runtime, in the unzipped code
  folder, with the layers merged into one `/opt`-like folder (later layers win, as on AWS);
- the function timeout is enforced here (AWS's init does it in the container): the worker is
  killed and the invocation fails with `Sandbox.Timedout`; the next invocation cold-starts;
- logs come from the worker's own output with START/END/REPORT lines; LocalStack stores them
  in `/aws/lambda/<function>`, and this executor also writes them to the function's
  `LoggingConfig.LogGroup` when it names another group, as AWS would;
- at most LOKKI_EMULATOR_MAX_IDLE_WORKERS idle workers stay alive across all functions (the
  least recently used are ended; their environment cold-starts when used again), on top of
  LocalStack's own LAMBDA_KEEPALIVE_MS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
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
from .runtime_api import Invocation, RuntimeApi
from .worker import Worker

LOG = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
BOOTSTRAP = HERE / "bootstrap.py"
WORK_ROOT = Path(tempfile.gettempdir()) / "lokki-host-executor"
POLL = 0.05


def error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class HostRuntimeExecutor(RuntimeExecutor):  # type: ignore[misc]  # LocalStack's class: untyped here
    def __init__(self, id: str, function_version: Any) -> None:  # LocalStack's signature
        super().__init__(id=id, function_version=function_version)
        self.folder = WORK_ROOT / f"env-{id}"
        self.api: RuntimeApi | None = None
        self.worker: Worker | None = None
        self.env: dict[str, str] = {}
        self.command: list[str] = []
        self.stopped = threading.Event()
        self.lock = threading.Lock()  # held by an invocation, and by parking (ending an idle worker)
        self.init_ms: float | None = None  # the last cold start, reported once in a REPORT line
        self.marker = f"\x1elokki-end-{secrets.token_hex(8)}"  # ends each invocation's output

    # --------------------------------------------------------------------------- lifecycle

    def start(self, env_vars: dict[str, Any]) -> None:
        self.command, self.env = self._worker_setup(env_vars)
        self.api = RuntimeApi()
        with self.lock:
            failure = self._spawn()
        if failure is not None:
            self._store_logs(failure[1])
            raise StatusErrorException("Environment startup failed", payload=failure[0])

    def _spawn(self) -> tuple[bytes, str] | None:
        """Start a worker and wait until its runtime asks for work; on failure (error payload, log)."""
        assert self.api is not None
        if self.stopped.is_set():
            raise LambdaRuntimeException(f"execution environment {self.id} is stopped")
        self.api.reset()
        for sub in ("tmp", "home"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        env = self.env | {"AWS_LAMBDA_RUNTIME_API": self.api.address, "_LOKKI_LOG_MARKER": self.marker}
        began = time.perf_counter()
        worker = Worker(self.command, env, Path(self.env["LAMBDA_TASK_ROOT"]), self.marker)
        self.worker = worker
        while not self.api.ready.wait(POLL):
            if worker.exited.is_set() or self.stopped.is_set():
                break
        self.init_ms = (time.perf_counter() - began) * 1000
        if self.api.init_error is not None:
            worker.kill()
            return self.api.init_error, self._framed(None, worker.take_log(None), init=True)
        if not self.api.ready.is_set():
            worker.kill()
            if self.stopped.is_set():
                raise LambdaRuntimeException(f"execution environment {self.id} stopped while starting")
            message = f"Runtime exited with error: {_exit_text(worker)}"
            return error_payload("Runtime.ExitError", message), self._framed(None, worker.take_log(None), init=True)
        return None

    def stop(self) -> None:
        self.stopped.set()
        _IDLE.forget(self)
        if self.worker is not None:
            self.worker.kill()
        if self.api is not None:
            self.api.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def park(self) -> bool:
        """End this environment's idle worker (it restarts on the next invocation); False if busy."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self.worker is not None and self.worker.alive():
                LOG.debug("ending idle worker %s of %s", self.worker.pid, self.function_version.qualified_arn)
                self.worker.kill()
            return True
        finally:
            self.lock.release()

    # ---------------------------------------------------------------------------- invoking

    def invoke(self, payload: dict[str, Any]) -> Any:
        request_id = str(payload["invoke-id"])
        with self.lock:
            _IDLE.forget(self)
            try:
                return self._invoke(request_id, payload)
            finally:
                if not self.stopped.is_set():
                    _IDLE.touch(self)

    def _invoke(self, request_id: str, payload: dict[str, Any]) -> Any:
        assert self.api is not None
        if self.worker is None or not self.worker.alive():
            failure = self._spawn()  # parked, timed out or crashed before: a cold start
            if failure is not None:
                self._store_logs(failure[1])
                return InvocationResult(request_id, failure[0], is_error=True, logs=failure[1])
        worker = self.worker
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
        outcome = self.api.invoke(invocation, worker.exited.is_set)
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
            message = f"RequestId: {request_id} Error: Runtime exited with error: {_exit_text(worker)}"
            result, is_error = error_payload("Runtime.ExitError", message), True
        logs = self._framed(request_id, text, duration_ms=duration, peak_mb=peak)
        self._store_logs(logs, also_default=False)  # LocalStack itself writes /aws/lambda/<function>
        return InvocationResult(request_id, result, is_error=is_error, logs=logs)

    def _framed(
        self,
        request_id: str | None,
        text: str,
        *,
        init: bool = False,
        duration_ms: float = 0.0,
        peak_mb: int | None = None,
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
        if self.init_ms is not None:
            report.append(f"Init Duration: {self.init_ms:.2f} ms")
            self.init_ms = None
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
            HOME=str(self.folder / "home"),
            TMPDIR=str(self.folder / "tmp"),  # the function's own /tmp, removed with the environment
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

    def _store_logs(self, logs: str, also_default: bool = True) -> None:
        """Write `logs` to the configured log group, and to /aws/lambda/<function> when LocalStack
        does not (it stores an invocation's logs itself, but not those of a failed start)."""
        stream = f"{dt.date.today():%Y/%m/%d}/[{self.function_version.id.qualifier}]{self.id}"
        groups = {self._log_group(), self._default_log_group()}
        if not also_default:
            groups.discard(self._default_log_group())
        for group in sorted(groups):
            _log_handler(self.function_version).add_logs(LogItem(group, stream, logs))

    # ------------------------------------------------------------------- LocalStack's API

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return "127.0.0.1"  # the functions reach LocalStack on loopback: AWS_ENDPOINT_URL

    def get_runtime_endpoint(self) -> str:
        return f"http://127.0.0.1:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def get_logs(self) -> str:
        return self.worker.all_output() if self.worker is not None else ""

    @classmethod
    def prepare_version(cls, function_version: Any) -> None:
        cfg = function_version.config
        if cfg.code is not None:
            cfg.code.prepare_for_execution()
        opt_folder(cfg.layers)

    @classmethod
    def cleanup_version(cls, function_version: Any) -> None:
        handler = _LOG_HANDLERS.pop(function_version.qualified_arn, None)
        if handler is not None:
            handler.stop()

    @classmethod
    def validate_environment(cls) -> bool:
        return BOOTSTRAP.is_file()


def _exit_text(worker: Worker) -> str:
    code = worker.process.poll()
    if code is None:
        return "unknown"
    return f"signal: {-code}" if code < 0 else f"exit status {code}"


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


class IdleWorkers:
    """Executors whose worker waits for work, least recently used first; beyond the limit the
    oldest ones' workers are ended (a 2-core machine cannot keep dozens of interpreters warm)."""

    def __init__(self) -> None:
        self._executors: OrderedDict[str, HostRuntimeExecutor] = OrderedDict()
        self._lock = threading.Lock()

    def forget(self, executor: HostRuntimeExecutor) -> None:
        with self._lock:
            self._executors.pop(executor.id, None)

    def touch(self, executor: HostRuntimeExecutor) -> None:
        with self._lock:
            self._executors[executor.id] = executor
            self._executors.move_to_end(executor.id)
            surplus = []
            while len(self._executors) > runtimes.max_idle_workers():
                surplus.append(self._executors.popitem(last=False)[1])
        for oldest in surplus:
            oldest.park()


_IDLE = IdleWorkers()
