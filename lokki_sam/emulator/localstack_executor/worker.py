"""One function process and its output.

The worker's stdout and stderr share one pipe, read by a thread into lines. An invocation's log
is what the worker printed from the end of the previous invocation up to the marker line the
bootstrap prints when it is done (before it posts the answer), so no line of one invocation
lands in another's log. Output before the first invocation (imports, init) goes to the first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

MARKER_WAIT = 2.0  # seconds to wait for the marker after the answer arrived (the pipe lags a little)
MAX_LOG_CHARS = 256 * 1024  # per invocation; CloudWatch takes at most 1 MiB per batch


class Worker:
    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: Path, marker: str) -> None:
        self.marker = marker
        self.started = time.monotonic()
        self._lines: list[str] = []
        self._size = 0
        self._finished: set[str] = set()  # request ids whose marker was read
        self._all: list[str] = []  # every line, for LocalStack's get_logs (bounded below)
        self._cond = threading.Condition()
        self.exited = threading.Event()
        self.process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, name=f"lokki-worker-{self.process.pid}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", errors="replace")
            with self._cond:
                if line.startswith(self.marker + " "):
                    self._finished.add(line[len(self.marker) + 1 :].strip())
                    self._cond.notify_all()
                    continue
                self._all.append(line)
                del self._all[:-2000]
                if self._size < MAX_LOG_CHARS:
                    self._lines.append(line)
                    self._size += len(line)
        self.process.wait()
        with self._cond:
            self.exited.set()
            self._cond.notify_all()

    def take_log(self, request_id: str | None) -> str:
        """The output since the last take, once the marker of `request_id` has been read (or the
        worker exited, or MARKER_WAIT passed); None: take what is there now."""
        deadline = time.monotonic() + MARKER_WAIT
        with self._cond:
            while request_id is not None and request_id not in self._finished and not self.exited.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._finished.discard(request_id or "")
            lines, self._lines, self._size = self._lines, [], 0
        text = "".join(lines)
        if len(text) >= MAX_LOG_CHARS:
            text += "[lokki-sam executor: log truncated]\n"
        return text

    def all_output(self) -> str:
        with self._cond:
            return "".join(self._all)

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_text(self) -> str:
        """How the process ended, as AWS words it ("exit status 1", "signal: 9")."""
        code = self.process.poll()
        if code is None:
            return "unknown"
        return f"signal: {-code}" if code < 0 else f"exit status {code}"

    def peak_memory_mb(self) -> int | None:
        """Peak resident memory (VmHWM) while alive, for the REPORT line."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def kill(self, wait: float = 5.0) -> None:
        """End the worker at once (a timed-out handler gets no grace, as on AWS)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=wait)
        self._reader.join(timeout=wait)
