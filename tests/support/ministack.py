"""A Docker-free local AWS cloud for tests: ministack on 127.0.0.1, started and stopped per use.

ministack pins botocore, so it lives in its own venv, created on demand and cached under
~/.cache/lokki-sam/ (or $LOKKI_SAM_CACHE) keyed by its version and Python. Lambda handlers run
under that venv's interpreter, so the venv uses the python3.X of the template's runtime.
aws-sam-translator in the venv lets its CloudFormation accept `Transform: AWS::Serverless-2016-10-31`.

Usage:
    with Ministack.start(python="3.11") as cloud:
        env = cloud.client_env()          # AWS_ENDPOINT_URL, dummy credentials, region
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.venvs import cached_venv

MINISTACK_VERSION = "1.5.33"
SAM_TRANSLATOR_VERSION = "1.115.0"
REQUIREMENTS = (f"ministack=={MINISTACK_VERSION}", f"aws-sam-translator=={SAM_TRANSLATOR_VERSION}")
READY_TIMEOUT = 30.0
REGION = "us-east-1"


class MinistackUnavailable(RuntimeError):
    """The emulator's venv cannot be created or the emulator does not start."""


def find_python(version: str) -> str:
    """An interpreter for `version` ("3.11"): this one, python3.X on PATH, or a pyenv install."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    candidates = [shutil.which(f"python{version}")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        versions = sorted(Path(root, "versions").glob(f"{version}.*"), reverse=True) if root else []
        candidates += [str(v / "bin" / f"python{version}") for v in versions]
    for candidate in candidates:
        # pyenv shims exist on PATH but fail for versions that are not selected: run them to check.
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    raise MinistackUnavailable(f"no python{version} found (PATH or pyenv); install it to run Lambdas of that runtime")


def ensure_venv(python: str = "3.11") -> Path:
    """The cached venv holding ministack for Python `python`; built once, under a file lock."""
    name = f"ministack-{MINISTACK_VERSION}-samt{SAM_TRANSLATOR_VERSION}-py{python}"
    return cached_venv(name, find_python(python), REQUIREMENTS, MinistackUnavailable)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @classmethod
    @contextlib.contextmanager
    def start(cls, python: str = "3.11", workdir: Path | None = None, port: int | None = None) -> Iterator[Ministack]:
        """Start ministack on 127.0.0.1 (a free port by default); stop it on exit, also when the body fails."""
        venv = ensure_venv(python)
        base = Path(workdir or tempfile.mkdtemp(prefix="ministack-"))
        home, tmp = base / "home", base / "tmp"
        home.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(exist_ok=True)
        log_path = base / "ministack.log"
        port = port or free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "LOKKI_", "PYTHON", "VIRTUAL_ENV", "SAM_"))
        }
        env.update(
            HOME=str(home),
            TMPDIR=str(tmp),  # its Lambda workers' code dirs: gone with `base`, not left in /tmp
            BIND_HOST="127.0.0.1",
            GATEWAY_PORT=str(port),
            AWS_DEFAULT_REGION=REGION,
            LOG_LEVEL=os.environ.get("MINISTACK_LOG_LEVEL", "WARNING"),
            PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        began = time.perf_counter()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(venv / "bin" / "ministack")],
                env=env,
                cwd=base,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its Lambda workers are its children: stop them together
            )
        cloud = cls(port, process, home, log_path, 0.0)
        try:
            cloud._wait_ready(began)
            yield cloud
        finally:
            cloud.stop()
            if workdir is None:
                shutil.rmtree(base, ignore_errors=True)

    def _wait_ready(self, began: float) -> None:
        deadline = began + READY_TIMEOUT
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise MinistackUnavailable(f"ministack exited with {self.process.returncode}:\n{self.log()}")
            health = f"{self.endpoint}/_ministack/health"
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=1) as response:
                if response.status == 200:
                    self.started_in = time.perf_counter() - began
                    return
            time.sleep(0.05)
        raise MinistackUnavailable(f"ministack not ready after {READY_TIMEOUT:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)
