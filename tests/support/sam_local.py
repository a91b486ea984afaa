"""Run the real SAM CLI (`sam build`, `sam local invoke`, ...) against a daemon with no bridge network.

Stock SAM 1.170 does not honour `--docker-network host` for the container it runs a function in: it
leaves it on the default network and publishes the RIE's port 8080 on 127.0.0.1. On a daemon started
with `--bridge=none` (tests/support/docker_daemon.py) that port is unreachable, so SAM waits ~20 s and
then exits 0 with no payload. `apply()` patches one method,
`samcli.local.docker.container.Container.create`: when the network is `host`, the container is created
with `network_mode=host`, without port bindings (docker-py refuses them with host networking), and
the RIE listens on 127.0.0.1:<the port SAM already chose and connects to> with its Runtime API on
127.0.0.1:<another free port> (its default 9001 would collide between concurrent containers).
Everything else is SAM's own code. `apply()` refuses any other SAM version: re-check the patch when
bumping aws-sam-cli.

Usage:
    proc = run_sam(["build"], cwd=app, env=env)                          # any SAM command, shim applied
    result = sam_local_invoke("Fn", cwd=app, env=env, event=..., env_vars=...)
    result.payload  # the function's response, parsed; result.error_type for a failed invocation
    with sam_start_lambda(cwd=app, env=env) as endpoint:                 # warm containers, boto3 invokes
        boto3.client("lambda", endpoint_url=endpoint, ...).invoke(FunctionName="Fn", Payload=...)

    python dev/sam.py local invoke Fn --skip-pull-image --docker-network host     # by hand (docs/docker.md)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAM_VERSION = "1.170.0"  # the version whose Container.create the shim wraps
RIE = "/var/rapid/aws-lambda-rie"  # where SAM's rapid image puts the emulator
CLOSED_PORT = 9  # discard: nothing listens there, so a connection is refused at once
REPO = Path(__file__).resolve().parents[2]
_MAIN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from tests.support.sam_local import apply; apply(); "
    "from samcli.cli.main import cli; cli(prog_name='sam')"
)


class ShimVersionError(RuntimeError):
    """The installed SAM CLI is not the version the shim was written for."""


def check_version() -> None:
    """ShimVersionError unless the installed SAM CLI is the one the shim was written for."""
    import samcli

    if samcli.__version__ != SAM_VERSION:
        raise ShimVersionError(
            f"tests/support/sam_local.py patches aws-sam-cli {SAM_VERSION}, found {samcli.__version__}: "
            "check samcli/local/docker/container.py Container.create, then update the shim and SAM_VERSION"
        )


def apply() -> None:
    """Patch SAM's Container.create (idempotent). Raises ShimVersionError for another SAM version."""
    check_version()
    from samcli.local.docker.container import Container

    original = Container.create
    if getattr(original, "_lokki_host_network", False):
        return

    def create(self: Any, context: Any) -> Any:
        if self.network_id != "host":
            return original(self, context)
        client = self.docker_client
        self._validated_docker_client = _HostNetworkClient(client, self.rapid_port_host)
        try:
            return original(self, context)
        finally:
            self._validated_docker_client = client

    create._lokki_host_network = True  # type: ignore[attr-defined]
    Container.create = create


class _HostNetworkClient:
    """The docker client SAM's Container.create sees: only `containers.create` differs."""

    def __init__(self, client: Any, rapid_port: int) -> None:
        self._client = client
        self._rapid_port = rapid_port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    @property
    def containers(self) -> Any:
        return _HostNetworkContainers(self._client.containers, self._rapid_port)


class _HostNetworkContainers:
    def __init__(self, containers: Any, rapid_port: int) -> None:
        self._containers = containers
        self._rapid_port = rapid_port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._containers, name)

    def create(self, image: str, **kwargs: Any) -> Any:
        kwargs.pop("ports", None)
        kwargs["network_mode"] = "host"
        entrypoint = list(kwargs.get("entrypoint") or [])
        if entrypoint[:1] == [RIE]:
            addresses = [
                f"--runtime-interface-emulator-address=127.0.0.1:{self._rapid_port}",
                f"--runtime-api-address=127.0.0.1:{free_port()}",
            ]
            kwargs["entrypoint"] = [RIE, *addresses, *entrypoint[1:]]
        return self._containers.create(image, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sam_command() -> list[str]:
    """The command line that runs this interpreter's SAM CLI with the shim applied (append SAM's arguments).
    Checks SAM's version first, so a bumped aws-sam-cli fails here with the reason, not in a subprocess."""
    check_version()
    return [sys.executable, "-c", _MAIN, str(REPO)]


def sam_env(home: Path, docker_host: str, **extra: str) -> dict[str, str]:
    """Environment for a SAM subprocess: a private HOME (SAM writes ~/.aws-sam), dummy AWS settings,
    the daemon, and this venv's bin first (`sam build` wants python3.X on PATH).

    Nothing leaves the machine: `sam local invoke` asks STS for the account id (a ~10 s timeout with
    dummy credentials, and traffic to AWS), so every AWS endpoint SAM itself uses is a closed port on
    127.0.0.1 (the function's own calls are not affected: SAM does not pass these to the container);
    no telemetry; the weekly PyPI version check is marked done."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOKKI_", "DOCKER_", "SAM_", "PIP_"))}
    metadata = home / ".aws-sam" / "metadata.json"
    metadata.parent.mkdir(parents=True, exist_ok=True)
    metadata.write_text(json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time()}))
    env.update(
        HOME=str(home),
        DOCKER_HOST=docker_host,
        SAM_CLI_TELEMETRY="0",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{CLOSED_PORT}",
        AWS_MAX_ATTEMPTS="1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def run_sam(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`sam ARGS` in a subprocess, shim applied; never raises on a non-zero exit (check returncode)."""
    return subprocess.run([*sam_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass
class InvokeResult:
    proc: subprocess.CompletedProcess[str]
    payload: Any  # the function's response as SAM printed it (parsed JSON), None when it printed none
    seconds: float

    @property
    def error_type(self) -> str | None:
        """`errorType` of a failed invocation. SAM exits 0 for failed functions too: always check this."""
        if isinstance(self.payload, dict):
            value = self.payload.get("errorType")
            return str(value) if value is not None else None
        return None


def sam_local_invoke(
    function: str,
    *,
    cwd: Path,
    env: dict[str, str],
    event: Any = None,
    env_vars: dict[str, dict[str, str]] | None = None,
    template: Path | None = None,
    extra: list[str] | None = None,
    timeout: float = 180,
) -> InvokeResult:
    """`sam local invoke FUNCTION` with the shim, `--skip-pull-image --docker-network host`, the event
    (JSON-serialised into cwd, {} by default) and --env-vars ({"Fn": {"VAR": "value"}}, each variable must
    be declared in the template's Environment to be overridden). The built template
    (.aws-sam/build/template.yaml) is used when cwd has one, as `sam local invoke` itself does."""
    event_file = cwd / f".event-{function}.json"
    event_file.write_text(json.dumps({} if event is None else event))
    args = ["local", "invoke", function, "--event", str(event_file), "--skip-pull-image", "--docker-network", "host"]
    if env_vars is not None:
        env_file = cwd / f".env-{function}.json"
        env_file.write_text(json.dumps(env_vars))
        args += ["--env-vars", str(env_file)]
    if template is not None:
        args += ["--template", str(template)]
    began = time.perf_counter()
    proc = run_sam(args + (extra or []), cwd, env, timeout)
    seconds = time.perf_counter() - began
    return InvokeResult(proc, _last_json(proc.stdout), seconds)


def _last_json(stdout: str) -> Any:
    """SAM prints the response on stdout (logs go to stderr); take the last line that is JSON."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


@contextlib.contextmanager
def sam_start_lambda(
    *,
    cwd: Path,
    env: dict[str, str],
    warm_containers: str | None = "LAZY",
    extra: list[str] | None = None,
    ready_timeout: float = 120,
) -> Iterator[str]:
    """`sam local start-lambda` on 127.0.0.1:<free port> with the shim (host network, no pull); yields the
    endpoint for boto3's Lambda client. Warm containers (`LAZY`: made at a function's first invoke, then
    reused) by default; None for a new container per invoke. Stopped with SIGINT (SAM then removes its warm
    containers), SIGKILL after 30 s; SAM's containers still there afterwards are removed (see
    remove_leftover_containers). Its log: cwd/.start-lambda-<port>.log."""
    port = free_port()
    args = ["local", "start-lambda", "--host", "127.0.0.1", "--port", str(port), "--skip-pull-image"]
    args += ["--docker-network", "host", *(["--warm-containers", warm_containers] if warm_containers else [])]
    log_path = cwd / f".start-lambda-{port}.log"
    before = sam_containers(env["DOCKER_HOST"])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*sam_command(), *args, *(extra or [])],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.perf_counter() + ready_timeout
        while not _listening(port):
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"sam local start-lambda did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        remove_leftover_containers(env["DOCKER_HOST"], before)


def sam_containers(docker_host: str) -> set[str]:
    """Ids of the daemon's containers that SAM created (label sam.cli.container.type=lambda)."""
    import docker

    client = docker.DockerClient(base_url=docker_host, timeout=30)
    try:
        containers = client.containers.list(all=True, filters={"label": "sam.cli.container.type=lambda"})
        return {container.id for container in containers}
    finally:
        client.close()


def remove_leftover_containers(docker_host: str, before: set[str]) -> list[str]:
    """Remove SAM's containers that were not there `before`; returns their ids. Needed after
    `--warm-containers EAGER`: SAM 1.170 starts the eager containers from parallel threads that race on
    its lazily created runtime, so some containers belong to a runtime nobody stops (they stay running
    after SAM exits, and the first invoke of such a function starts a second container)."""
    import docker

    leftovers = sorted(sam_containers(docker_host) - before)
    client = docker.DockerClient(base_url=docker_host, timeout=30)
    try:
        for container_id in leftovers:
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(container_id).remove(force=True)
    finally:
        client.close()
    return leftovers


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


_WRAPPER = """#!{python}
# `sam` for documented command lines run by the tests: the real SAM CLI with the host-network shim;
# `sam local invoke` also gets the flags an offline daemon without a bridge network needs.
import json, subprocess, sys, time
sys.path.insert(0, {repo!r})
from tests.support.sam_local import LOCAL_FLAGS, sam_command
args = sys.argv[1:]
extra = LOCAL_FLAGS if args[:2] in (["local", "invoke"], ["local", "start-lambda"]) else []
extra = extra + ["--add-host", "host.docker.internal:127.0.0.1"] if extra else extra
began = time.perf_counter()
proc = subprocess.run([*sam_command(), *args, *extra], capture_output=True, text=True)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
with open({log!r}, "a") as fh:
    record = dict(args=args, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr,
                  seconds=time.perf_counter() - began)
    fh.write(json.dumps(record) + "\\n")
sys.exit(proc.returncode)
"""
LOCAL_FLAGS = ["--skip-pull-image", "--docker-network", "host"]


def install_sam_wrapper(bin_dir: Path, log: Path) -> Path:
    """A `sam` executable in `bin_dir` (put that first on PATH) for running documented commands as they
    are written: it runs this interpreter's SAM CLI with the shim, adds LOCAL_FLAGS to `sam local invoke`
    (and `--add-host host.docker.internal:127.0.0.1`: the name Docker Desktop defines for the machine is
    its loopback under host networking) and appends each run to `log` as a JSON line (args, returncode,
    stdout, stderr, seconds)."""
    check_version()
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "sam"
    path.write_text(_WRAPPER.format(python=sys.executable, repo=str(REPO), log=str(log)))
    path.chmod(0o755)
    return path


def sam_runs(log: Path) -> list[dict[str, Any]]:
    """The runs an install_sam_wrapper `sam` recorded, each with its parsed `payload` (last JSON line)."""
    if not log.exists():
        return []
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for run in runs:
        run["payload"] = _last_json(run["stdout"])
    return runs
