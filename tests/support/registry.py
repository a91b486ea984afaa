"""A Docker registry on 127.0.0.1 for the tests of `lokki-sam push` (no public registry is reachable).

The CNCF distribution registry as Debian packages it (`docker-registry`, the server behind Docker
Hub's `registry:2` image), installed once with apt-get as tests/support/docker_daemon.py installs
docker.io (no service starts meanwhile), and run here as a host process on a free port, its storage
in a temporary folder. A Docker daemon trusts registries on 127.0.0.0/8 over plain HTTP, and this one
has no authentication: `docker login` is accepted with any credentials, as ECR's is with its token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lokki_sam.emulator.process import free_port
from tests.support.docker_daemon import (
    DockerUnavailable,
    _apt,
    _which,
    services_never_start,
    why_no_private_daemon,
)
from tests.support.venvs import cache_root

PACKAGE, BINARY = "docker-registry", "docker-registry"
READY_TIMEOUT = 30.0


def ensure_registry() -> str:
    """The registry binary, installed with apt-get where the machine allows it."""
    found = _which(BINARY)
    if found:
        return found
    reason = why_no_private_daemon()  # the same conditions: root, Debian with apt-get
    if reason:
        raise DockerUnavailable(f"no {BINARY}: {reason}")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _which(BINARY):
            with services_never_start():
                _apt(["install", "-y", "--no-install-recommends", PACKAGE], retry_after_update=True)
    found = _which(BINARY)
    if not found:
        raise DockerUnavailable(f"apt-get installed {PACKAGE} but {BINARY} is not on PATH")
    return found


@contextlib.contextmanager
def local_registry(folder: Path) -> Iterator[str]:
    """A registry serving `127.0.0.1:<port>` (yielded) with its storage under `folder`; stopped on exit."""
    binary = ensure_registry()
    port = free_port()
    config = folder / "registry.json"  # YAML is a superset of JSON
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config.write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(storage)}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (folder / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(port, process, folder / "registry.log")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(storage, ignore_errors=True)


def tags(registry: str, repository: str) -> list[str]:
    """The tags the registry holds for `repository` (its v2 API)."""
    with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=10) as response:
        return sorted(json.loads(response.read()).get("tags") or [])


def _wait(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{BINARY} exited {process.returncode}:\n{log.read_text()[-2000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{BINARY} gave no answer on 127.0.0.1:{port} in {READY_TIMEOUT:.0f} s")
