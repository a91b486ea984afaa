"""ministack on 127.0.0.1 for tests that need a cloud of their own: started and stopped per use.

A thin wrapper over `lokki_sam.emulator` (the engine's pinned venv, environment and readiness
check, and the process-group stop that `lokki-sam emulator` uses), without its per-user
records: each use gets a free port and a private folder. Lambda handlers run under the venv's
interpreter, so the venv uses the python3.X of the template's runtime.

Usage:
    with Ministack.start(python="3.11") as cloud:
        env = cloud.client_env()          # AWS_ENDPOINT_URL, dummy credentials, region
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lokki_sam.emulator import process
from lokki_sam.emulator.control import client_environment
from lokki_sam.emulator.engines import REGION, get_engine
from lokki_sam.emulator.errors import EmulatorError
from lokki_sam.emulator.process import free_port
from lokki_sam.emulator.python import find_python

__all__ = ["Ministack", "MinistackUnavailable", "find_python", "free_port"]

MinistackUnavailable = EmulatorError
ENGINE = get_engine("ministack")


def ensure_venv(python: str = "3.11") -> Path:
    return ENGINE.ensure_venv(python, progress=lambda _: None)


@dataclass
class Ministack:
    port: int
    process: subprocess.Popen[bytes]
    home: Path
    log_path: Path
    started_in: float
    region: str = REGION
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs and the SAM CLI at this emulator."""
        return client_environment(self.endpoint) | {"AWS_REGION": self.region}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @classmethod
    @contextlib.contextmanager
    def start(cls, python: str = "3.11", workdir: Path | None = None, port: int | None = None) -> Iterator[Ministack]:
        """Start ministack on 127.0.0.1 (a free port by default); stop it on exit, also when the body fails."""
        venv = ensure_venv(python)
        base = Path(workdir or tempfile.mkdtemp(prefix="ministack-"))
        base.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        log_path = base / "ministack.log"
        began = time.perf_counter()
        child = process.launch(ENGINE.command(venv), ENGINE.environment(venv, port, base), base, log_path)
        cloud = cls(port, child, base / "home", log_path, 0.0)
        try:
            url = cloud.endpoint + ENGINE.health_path
            if not process.wait_ready(url, child, ENGINE.ready_timeout, ENGINE.healthy):
                raise MinistackUnavailable(f"ministack did not start (exit {child.poll()}):\n{cloud.log()}")
            cloud.started_in = time.perf_counter() - began
            yield cloud
        finally:
            cloud.stop()
            if workdir is None:
                shutil.rmtree(base, ignore_errors=True)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        identity = process.identify(self.process.pid)
        if identity is not None:
            process.stop_group(identity, self.home.parent, grace=10)  # its workdir: home, tmp (workers), log
        self.process.wait(timeout=10)
