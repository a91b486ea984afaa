"""One warm function process with the Runtime API it polls: what an execution environment is on AWS.

A sandbox is started for one function (command + environment) and serves its invocations one
at a time until it is ended: by the pool (idle too long, or its place is needed), by a timeout
(killed, as AWS's init does), or because it exited. Its HOME and TMPDIR are its own folder,
as each AWS execution environment has its own /tmp.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .runtime_api import Invocation, RuntimeApi
from .worker import Worker

POLL = 0.05


@dataclass(frozen=True)
class InitFailure:
    """The runtime did not start: the init error it posted (None: it exited first, or the
    sandbox was stopped), what it printed, and how its process ended."""

    payload: bytes | None
    log: str
    exit_text: str


class Sandbox:
    def __init__(self, command: Sequence[str], env: Mapping[str, str], folder: Path) -> None:
        self.command = list(command)
        self.folder = folder
        self.env = dict(env)
        self.api = RuntimeApi()
        self.marker = f"\x1elokki-end-{secrets.token_hex(8)}"  # ends each invocation's output
        self.worker: Worker | None = None
        self.init_ms: float | None = None  # the cold start, reported once in a REPORT line
        self.invocations = 0

    def start(self, stopped: threading.Event) -> InitFailure | None:
        """Start the worker and wait until its runtime asks for work (or fails, or `stopped` is set)."""
        for sub in ("tmp", "home"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        env = self.env | {
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "_LOKKI_LOG_MARKER": self.marker,
            "HOME": str(self.folder / "home"),
            "TMPDIR": str(self.folder / "tmp"),  # the function's own /tmp, removed with the sandbox
        }
        began = time.perf_counter()
        worker = Worker(self.command, env, Path(self.env["LAMBDA_TASK_ROOT"]), self.marker)
        self.worker = worker
        while not self.api.ready.wait(POLL):
            if worker.exited.is_set() or stopped.is_set():
                break
        self.init_ms = (time.perf_counter() - began) * 1000
        if self.api.init_error is None and self.api.ready.is_set():
            return None
        worker.kill()
        return InitFailure(self.api.init_error, worker.take_log(None), worker.exit_text())

    def alive(self) -> bool:
        return self.worker is not None and self.worker.alive()

    def invoke(self, invocation: Invocation) -> str:
        """Hand `invocation` to the worker and wait: "done", "timeout" or "exited"."""
        assert self.worker is not None
        self.invocations += 1
        return self.api.invoke(invocation, self.worker.exited.is_set)

    def take_init_ms(self) -> float | None:
        taken, self.init_ms = self.init_ms, None
        return taken

    def end(self) -> None:
        """Kill the worker, stop serving its API and drop its folder."""
        if self.worker is not None:
            self.worker.kill()
        self.api.close()
        shutil.rmtree(self.folder, ignore_errors=True)
