"""The Python runtime inside a worker: loads the function's handler and serves invocations.

Run by the executor as `python3.X -S -u bootstrap.py` under the interpreter of the function's
runtime, so it uses only the standard library. Like the AWS Python runtime (awslambdaric):
- `sys.path`: the task root (the function's code), the layers' `python/lib/python3.X/site-packages`
  and `python/` (AWS's `/opt`), the standard library, then the runtime's boto3 (`-S`: nothing
  from the interpreter's own site-packages, as on AWS);
- a raised exception is reported with its class name as `errorType` (what Step Functions'
  `Retry`/`Catch` match) and logged as `[ERROR] Class: message` plus the traceback;
- a handler that cannot be loaded is an init error (`Runtime.ImportModuleError`, ...).

Private settings arrive as `_LOKKI_*` variables, removed before user code runs. After each
invocation it prints the executor's marker line, so the executor knows the log is complete.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
from typing import Any

API_PATH = "/2018-06-01/runtime"


class InitError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class Context:
    """The handler's `context`, with the attributes of the AWS Python runtime's LambdaContext."""

    def __init__(self, request_id: str, deadline_ms: int, function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class Api:
    def __init__(self, address: str) -> None:
        self.base = f"http://{address}{API_PATH}"
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy

    def next(self) -> tuple[str, bytes, dict[str, str]] | None:
        try:
            with self.opener.open(f"{self.base}/invocation/next") as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                return headers["lambda-runtime-aws-request-id"], response.read(), headers
        except (urllib.error.URLError, ConnectionError, KeyError):
            return None  # the executor is gone (or shutting down this worker): end quietly

    def post(self, path: str, body: bytes, error_type: str | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers["Lambda-Runtime-Function-Error-Type"] = error_type
        request = urllib.request.Request(f"{self.base}/{path}", data=body, headers=headers, method="POST")
        try:
            with self.opener.open(request) as response:
                response.read()
        except (urllib.error.URLError, ConnectionError):
            pass  # a late answer to an invocation the executor gave up on


def error_body(error_type: str, message: str, request_id: str | None = None, stack: list[str] | None = None) -> bytes:
    body: dict[str, Any] = {"errorMessage": message, "errorType": error_type, "stackTrace": stack or []}
    if request_id:
        body["requestId"] = request_id
    return json.dumps(body).encode()


def setup_path() -> None:
    del sys.path[0]  # the executor's folder: its modules must not shadow the function's
    front = [p for p in os.environ.pop("_LOKKI_SYS_PATH", "").split(os.pathsep) if p]
    back = [p for p in os.environ.pop("_LOKKI_RUNTIME_PATH", "").split(os.pathsep) if p]
    sys.path[:0] = front
    sys.path.extend(back)


def load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    if not module_name or not function_name:
        raise InitError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': expected module.function")
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        raise InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


def log_exception(exc: BaseException) -> list[str]:
    """Print `[ERROR] Class: message` and the traceback (as AWS's runtime logs it); return the
    frames. This file's own frames are left out, as AWS leaves out its runtime's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    frames = traceback.format_tb(tb)
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    sys.stderr.write(f"[ERROR] {type(exc).__name__}: {exc}\n{text}")
    return frames


def serve(api: Api, handler: Any, marker: str) -> None:
    while True:
        got = api.next()
        if got is None:
            return
        request_id, payload, headers = got
        if headers.get("lambda-runtime-trace-id"):
            os.environ["_X_AMZN_TRACE_ID"] = headers["lambda-runtime-trace-id"]
        context = Context(
            request_id,
            int(headers.get("lambda-runtime-deadline-ms") or 0),
            headers.get("lambda-runtime-invoked-function-arn", ""),
        )
        path, body, error_type = invoke(handler, payload, context)
        sys.stderr.flush()
        sys.stdout.write(f"{marker} {request_id}\n")  # everything logged so far belongs to this invocation
        sys.stdout.flush()
        api.post(f"invocation/{request_id}/{path}", body, error_type)


def invoke(handler: Any, payload: bytes, context: Context) -> tuple[str, bytes, str | None]:
    request_id = context.aws_request_id
    try:
        event = json.loads(payload) if payload else {}
    except ValueError as exc:
        sys.stderr.write(f"[ERROR] Runtime.UnmarshalError: {exc}\n")
        return "error", error_body("Runtime.UnmarshalError", f"Unable to parse the event: {exc}", request_id), "Runtime"
    try:
        result = handler(event, context)
    except Exception as exc:
        frames = log_exception(exc)
        return "error", error_body(type(exc).__name__, str(exc), request_id, frames), "Unhandled"
    try:
        return "response", json.dumps(result).encode(), None
    except (TypeError, ValueError) as exc:
        message = f"Unable to marshal response: {exc}"
        sys.stderr.write(f"[ERROR] Runtime.MarshalError: {message}\n")
        return "error", error_body("Runtime.MarshalError", message, request_id), "Runtime"


def main() -> None:
    setup_path()
    marker = os.environ.pop("_LOKKI_LOG_MARKER", "")
    for notice in os.environ.pop("_LOKKI_NOTICES", "").split("\n"):
        if notice:
            sys.stderr.write(f"[WARNING] {notice}\n")
    api = Api(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except InitError as exc:
        sys.stderr.write(f"[ERROR] {exc.error_type}: {exc}\n")
        api.post("init/error", error_body(exc.error_type, str(exc)), exc.error_type)
        sys.exit(1)
    except Exception as exc:  # the module raised while importing: its own class, as AWS reports it
        frames = log_exception(exc)
        api.post("init/error", error_body(type(exc).__name__, str(exc), stack=frames), "Unhandled")
        sys.exit(1)
    serve(api, handler, marker)


if __name__ == "__main__":
    main()
