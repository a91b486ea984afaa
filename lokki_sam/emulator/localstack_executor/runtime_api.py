"""The Lambda Runtime API (2018-06-01) for one worker, served on 127.0.0.1 by a thread.

The worker's runtime polls `GET /runtime/invocation/next` and posts the response or error of
each invocation; `POST /runtime/init/error` reports a failed initialisation. The executor side
calls `invoke()`, which blocks until the worker answers, the deadline passes or the worker
exits. Only the current request id is accepted: a late answer of a killed invocation is dropped.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
POLL = 0.05


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    result: bytes = b""
    is_error: bool = False


class _Closed:
    """Put on the queue to release a waiting `next` when the API closes."""


class RuntimeApi:
    def __init__(self) -> None:
        self._queue: queue.Queue[Invocation | _Closed] = queue.Queue()
        self._current: Invocation | None = None
        self._lock = threading.Lock()
        self.ready = threading.Event()  # the runtime asked for its first invocation
        self.init_error: bytes | None = None
        self.closed = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._serve, name="lokki-runtime-api", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """host:port, the worker's AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def invoke(self, invocation: Invocation, worker_exited: Callable[[], bool]) -> str:
        """Hand `invocation` to the worker and wait: "done", "timeout" or "exited"."""
        with self._lock:
            self._current = invocation
            self._queue.put(invocation)
        try:
            while not invocation.done.wait(POLL):
                if worker_exited():
                    # The worker may have answered just before it exited.
                    return "done" if invocation.done.wait(POLL) else "exited"
                if time.time() * 1000 >= invocation.deadline_ms:
                    return "timeout"
            return "done"
        finally:
            with self._lock:
                self._current = None

    def close(self) -> None:
        """Stop serving; returns at once (LocalStack stops environments one after another)."""
        if self.closed.is_set():
            return
        self.closed.set()
        with self._lock:
            self._queue.put(_Closed())
        threading.Thread(target=self._server.shutdown, name="lokki-runtime-api-close", daemon=True).start()

    def _serve(self) -> None:
        try:
            self._server.serve_forever(poll_interval=0.1)
        finally:
            self._server.server_close()

    # ------------------------------------------------------------------ called by the handler

    def _next(self) -> Invocation | None:
        self.ready.set()
        while not self.closed.is_set():
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if isinstance(item, _Closed):
                return None
            return item
        return None

    def _answer(self, request_id: str, body: bytes, is_error: bool) -> bool:
        with self._lock:
            current = self._current
            if current is None or current.request_id != request_id or current.done.is_set():
                return False
            current.result, current.is_error = body, is_error
            current.done.set()
            return True

    def _init_failed(self, body: bytes) -> None:
        self.init_error = body
        self.ready.set()


def _handler_for(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # the base class's signature
            pass  # no access log on LocalStack's console

        def _reply(self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self._reply(HTTPStatus.NOT_FOUND)
                return
            invocation = api._next()
            if invocation is None:
                self._reply(HTTPStatus.GONE, b'{"errorMessage": "the execution environment is shutting down"}')
                return
            headers = {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
                "Lambda-Runtime-Trace-Id": invocation.trace_id,
            }
            self._reply(HTTPStatus.OK, invocation.payload, headers)

        def do_POST(self) -> None:
            body = self._body()
            parts = self.path[len(PREFIX) :].strip("/").split("/")
            if self.path.startswith(PREFIX) and parts == ["init", "error"]:
                api._init_failed(body)
                self._reply(HTTPStatus.ACCEPTED, b'{"status": "OK"}')
                return
            answer = len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error")
            if not (self.path.startswith(PREFIX) and answer):
                self._reply(HTTPStatus.NOT_FOUND)
            elif api._answer(parts[1], body, is_error=parts[2] == "error"):
                self._reply(HTTPStatus.ACCEPTED, b'{"status": "OK"}')
            else:
                message = json.dumps({"errorMessage": f"no pending invocation {parts[1]}"}).encode()
                self._reply(HTTPStatus.BAD_REQUEST, message)

    return Handler
