"""The host executor's runtime side, without LocalStack: the real bootstrap in a real worker
process (this interpreter), polling the real Runtime API server, as the executor wires them.

What LocalStack adds (environments, CloudWatch, Step Functions) is in test_emulator_localstack.py.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lokki_sam.emulator.localstack_executor import bootstrap, runtimes
from lokki_sam.emulator.localstack_executor.pool import Stopped, WorkerPool
from lokki_sam.emulator.localstack_executor.runtime_api import Invocation, RuntimeApi
from lokki_sam.emulator.localstack_executor.sandbox import Sandbox
from lokki_sam.emulator.localstack_executor.worker import Worker

MARKER = "\x1etest-marker"
HANDLERS = """
import os, sys, time
print("importing handlers")

def echo(event, context):
    print("echo", event["n"])
    return {"event": event, "request": context.aws_request_id, "left": context.get_remaining_time_in_millis() > 0}

class Unlucky(Exception):
    pass

def fail(event, context):
    raise Unlucky("no luck")

def slow(event, context):
    time.sleep(event.get("seconds", 30))
    return "late"

def bad_result(event, context):
    return {1, 2}

def exit_now(event, context):
    os._exit(3)

def paths(event, context):
    try:
        import click  # installed in the interpreter's site-packages, which a function must not see
        found = True
    except ImportError:
        found = False
    private = [k for k in os.environ if k.startswith("_LOKKI_")]
    return {"path": sys.path, "click": found, "private": private, "layer": __import__("from_layer").WHERE}
"""


class Harness:
    def __init__(self, root: Path, handler: str, extra_env: dict[str, str] | None = None) -> None:
        self.api = RuntimeApi()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "_HANDLER": handler,
            "_LOKKI_SYS_PATH": os.pathsep.join([str(root / "task"), str(root / "opt" / "python")]),
            "_LOKKI_RUNTIME_PATH": str(root / "runtime"),
            "_LOKKI_LOG_MARKER": MARKER,
        } | (extra_env or {})
        command = [sys.executable, "-S", "-u", bootstrap.__file__]
        self.worker = Worker(command, env, root / "task", MARKER)

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.api.ready.wait(0.05):
            assert not self.worker.exited.is_set(), self.worker.all_output()
            assert time.monotonic() < deadline, "the runtime never asked for work"

    def invoke(self, event: object, timeout: float = 20) -> tuple[str, Invocation, str]:
        request_id = str(uuid.uuid4())
        invocation = Invocation(request_id, json.dumps(event).encode(), int(time.time() * 1000 + timeout * 1000), "arn")
        outcome = self.api.invoke(invocation, self.worker.exited.is_set)
        log = self.worker.take_log(request_id if outcome == "done" else None)
        return outcome, invocation, log

    def close(self) -> None:
        self.worker.kill()
        self.api.close()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    (tmp_path / "opt" / "python").mkdir(parents=True)
    (tmp_path / "opt" / "python" / "from_layer.py").write_text("WHERE = 'layer'\n")
    (tmp_path / "runtime").mkdir()
    return tmp_path


@pytest.fixture
def harness(app: Path) -> Iterator[Harness]:
    running = Harness(app, "handlers.echo")
    running.wait_ready()
    yield running
    running.close()


def test_an_invocation_returns_the_handlers_json_and_its_own_log(harness: Harness) -> None:
    outcome, invocation, log = harness.invoke({"n": 1})
    assert outcome == "done" and not invocation.is_error
    result = json.loads(invocation.result)
    assert result == {"event": {"n": 1}, "request": invocation.request_id, "left": True}
    assert log == "importing handlers\necho 1\n"  # init output goes to the first invocation
    outcome, invocation, log = harness.invoke({"n": 2})
    assert (outcome, log) == ("done", "echo 2\n")  # the marker line never shows in a log


def test_an_exception_is_reported_with_its_class_and_logged_with_its_traceback(app: Path) -> None:
    running = Harness(app, "handlers.fail")
    try:
        running.wait_ready()
        outcome, invocation, log = running.invoke({})
    finally:
        running.close()
    assert outcome == "done" and invocation.is_error
    error = json.loads(invocation.result)
    assert (error["errorType"], error["errorMessage"]) == ("Unlucky", "no luck")
    assert error["requestId"] == invocation.request_id
    assert error["stackTrace"] and all("bootstrap.py" not in frame for frame in error["stackTrace"])
    assert "[ERROR] Unlucky: no luck\nTraceback (most recent call last):\n" in log
    assert "bootstrap.py" not in log and log.rstrip().endswith("Unlucky: no luck")


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [
        ("handlers.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'handlers'"),
        ("missing_module.fn", "Runtime.ImportModuleError", "Unable to import module 'missing_module'"),
        ("nodots", "Runtime.MalformedHandlerName", "Bad handler 'nodots'"),
    ],
)
def test_a_handler_that_cannot_load_is_an_init_error(app: Path, handler: str, error_type: str, message: str) -> None:
    running = Harness(app, handler)
    try:
        deadline = time.monotonic() + 20
        while running.api.init_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.api.init_error is not None
        error = json.loads(running.api.init_error)
        assert error["errorType"] == error_type
        assert error["errorMessage"].startswith(message)
        running.worker.exited.wait(10)
        assert running.worker.process.returncode == 1
        assert f"[ERROR] {error_type}: {message}" in running.worker.take_log(None)
    finally:
        running.close()


def test_a_timeout_leaves_the_worker_to_be_killed_and_drops_its_late_answer(app: Path) -> None:
    running = Harness(app, "handlers.slow")
    try:
        running.wait_ready()
        began = time.monotonic()
        outcome, invocation, _ = running.invoke({"seconds": 1.5}, timeout=0.5)
        assert outcome == "timeout" and 0.4 < time.monotonic() - began < 1.4
        time.sleep(1.5)  # the handler answers after the deadline: nobody waits for that request any more
        assert not invocation.done.is_set() and invocation.result == b""
    finally:
        running.close()
    assert running.worker.exited.is_set()


def test_a_result_json_cannot_hold_and_a_dying_worker_are_errors(app: Path) -> None:
    running = Harness(app, "handlers.bad_result")
    try:
        running.wait_ready()
        outcome, invocation, _ = running.invoke({})
        assert outcome == "done" and json.loads(invocation.result)["errorType"] == "Runtime.MarshalError"
    finally:
        running.close()
    dying = Harness(app, "handlers.exit_now")
    try:
        dying.wait_ready()
        outcome, _, _ = dying.invoke({})
        assert outcome == "exited" and dying.worker.process.returncode == 3
    finally:
        dying.close()


def test_sys_path_is_task_root_then_layers_then_stdlib_then_runtime_and_nothing_private_leaks(app: Path) -> None:
    running = Harness(app, "handlers.paths")
    try:
        running.wait_ready()
        outcome, invocation, _ = running.invoke({})
    finally:
        running.close()
    assert outcome == "done", invocation.result
    result = json.loads(invocation.result)
    assert result["path"][:2] == [str(app / "task"), str(app / "opt" / "python")]
    assert result["path"][-1] == str(app / "runtime")
    assert not any(p.endswith("site-packages") for p in result["path"])
    assert (result["click"], result["private"], result["layer"]) == (False, [], "layer")


# ------------------------------------------------------------------- sandboxes and their pool


def sandbox_for(app: Path, handler: str = "handlers.echo") -> Sandbox:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(app / "task"),
        "_LOKKI_SYS_PATH": str(app / "task"),
    }
    return Sandbox([sys.executable, "-S", "-u", bootstrap.__file__], env, app / f"sandbox-{uuid.uuid4().hex}")


def started(app: Path, handler: str = "handlers.echo") -> Sandbox:
    sandbox = sandbox_for(app, handler)
    assert sandbox.start(threading.Event()) is None
    return sandbox


def call(sandbox: Sandbox, n: int) -> object:
    invocation = Invocation(str(uuid.uuid4()), json.dumps({"n": n}).encode(), int(time.time() * 1000 + 20_000), "arn")
    assert sandbox.invoke(invocation) == "done"
    return json.loads(invocation.result)["event"]


def test_a_sandbox_serves_invocations_in_its_own_folder_and_ends_with_it(app: Path) -> None:
    sandbox = started(app)
    try:
        assert [call(sandbox, 1), call(sandbox, 2)] == [{"n": 1}, {"n": 2}]  # one warm process, two invocations
        assert (sandbox.folder / "tmp").is_dir() and sandbox.take_init_ms() is not None
        assert sandbox.take_init_ms() is None  # the cold start is reported once
    finally:
        sandbox.end()
    assert not sandbox.alive() and not sandbox.folder.exists()


def test_a_sandbox_whose_handler_cannot_load_reports_the_init_error(app: Path) -> None:
    sandbox = sandbox_for(app, "missing_module.fn")
    try:
        failure = sandbox.start(threading.Event())
    finally:
        sandbox.end()
    assert failure is not None and failure.payload is not None
    assert json.loads(failure.payload)["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'missing_module'" in failure.log


def test_the_pool_reuses_a_warm_sandbox_and_bounds_how_many_live(app: Path) -> None:
    pool = WorkerPool(lambda: 2)
    pool.join("a")
    stop = threading.Event()
    first, warm = pool.lease("a", lambda: started(app), stop)
    second, _ = pool.lease("a", lambda: started(app), stop)
    assert not warm and pool.counts() == (2, 0, 0)
    got: list[tuple[Sandbox, bool]] = []
    waiter = threading.Thread(target=lambda: got.append(pool.lease("a", lambda: started(app), stop)))
    waiter.start()
    wait_for(lambda: pool.counts()[2] == 1)  # the third invocation waits: two processes live already
    pool.give_back("a", first)
    waiter.join(20)
    assert got == [(first, True)]  # it got the warm one, no third process
    assert call(first, 3) == {"n": 3}
    pool.give_back("a", first)
    pool.give_back("a", second)
    assert pool.counts() == (0, 2, 0)
    pool.leave("a")  # the function's last environment stopped: its idle processes go
    assert pool.counts() == (0, 0, 0) and not first.alive() and not second.alive()


def test_a_full_pool_ends_another_functions_idle_sandbox_to_make_room(app: Path) -> None:
    pool = WorkerPool(lambda: 1)
    pool.join("a")
    pool.join("b")
    stop = threading.Event()
    a, _ = pool.lease("a", lambda: started(app), stop)
    pool.give_back("a", a)
    b, warm = pool.lease("b", lambda: started(app), stop)
    assert not warm and b is not a and not a.alive()  # a's idle process ended for b's invocation
    pool.give_back("b", b)
    pool.end_matching("b")
    assert not b.alive() and pool.counts() == (0, 0, 0)


def test_a_waiting_invocation_of_a_stopped_environment_gives_up(app: Path) -> None:
    pool = WorkerPool(lambda: 1)
    pool.join("a")
    busy, _ = pool.lease("a", lambda: started(app), threading.Event())
    stop = threading.Event()
    errors: list[BaseException] = []

    def lease() -> None:
        try:
            pool.lease("a", lambda: started(app), stop)
        except Stopped as exc:
            errors.append(exc)

    waiter = threading.Thread(target=lease)
    waiter.start()
    wait_for(lambda: pool.counts()[2] == 1)
    stop.set()
    waiter.join(20)
    assert len(errors) == 1 and pool.counts() == (1, 0, 0)
    pool.give_back("a", busy)
    pool.leave("a")
    assert not busy.alive()


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_a_runtime_without_its_interpreter_falls_back_to_this_python_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOKKI_EMULATOR_PYTHONS", json.dumps({"3.11": "/nonexistent/python3.11"}))
    runtimes.interpreter_for.cache_clear()
    try:
        interpreter, notice = runtimes.interpreter_for("3.99")
    finally:
        runtimes.interpreter_for.cache_clear()
    assert interpreter == sys.executable
    assert notice is not None and "no python3.99 found for runtime python3.99" in notice
    assert runtimes.python_version("python3.12") == "3.12" and runtimes.python_version("nodejs20.x") is None
