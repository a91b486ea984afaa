"""A Docker daemon for tests: an existing one when it answers, else a private dockerd started here.

Where the daemon comes from, in order:
1. An existing daemon that answers `/_ping`: $DOCKER_HOST, then unix:///var/run/docker.sock, then the
   developer daemon of `python -m tests.support.docker_daemon start`. It is used as it is and never stopped.
2. Else, where the machine allows it (root, Debian with apt-get): `apt-get install --no-install-recommends
   docker.io debootstrap` (once; an `exit 101` /usr/sbin/policy-rc.d is in place meanwhile, so the packages
   start no system daemon, which would create docker0), then a private dockerd WITHOUT any bridge network:
   `--bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false`, its own
   data-root, exec-root, pid file and socket in a fresh folder, overlay2 (vfs as fallback). Containers
   must use `--network host` (or none); never create a network on it.
3. Else `DockerUnavailable(reason)`: the pytest fixture skips with that reason. A machine that allows a
   private daemon but fails to install or start it raises `DockerSetupError` instead: the tests fail.

A private daemon is stopped by its pid file at the end of the `with` block (pytest: the session), also when
the body fails; one left behind by a killed session is stopped by the next one (its owner pid is dead).

$LOKKI_SAM_DOCKER: `auto` (default), `existing` (only 1: no apt-get, no dockerd), `off` (skip).

Usage:
    with docker_daemon() as daemon:     # stops a private daemon on exit, also when the body fails
        env = daemon.env()              # {"DOCKER_HOST": "unix:///.../docker.sock"}

    python -m tests.support.docker_daemon start|stop|status   # a developer daemon, kept until `stop`
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.venvs import cache_root

PACKAGES = {"docker.io": "dockerd", "debootstrap": "debootstrap"}  # apt package -> the binary it provides
SYSTEM_SOCKET = "unix:///var/run/docker.sock"
DEV_RUN_DIR = Path(tempfile.gettempdir()) / "lokki-sam-dockerd"  # the developer daemon of `start`
RUN_DIR_PREFIX = "lokki-dockerd-"  # the private daemons of test sessions: /tmp/lokki-dockerd-XXXX
POLICY_RC = Path("/usr/sbin/policy-rc.d")
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_BRIDGE_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false")


class DockerUnavailable(RuntimeError):
    """No Docker daemon can be used or started here; the message says why (tests skip)."""


class DockerSetupError(RuntimeError):
    """This machine should run a private daemon, but installing or starting it failed (tests fail)."""


def ping(host: str, timeout: float = 2.0) -> bool:
    """True when the daemon at `host` (unix:///path or tcp://h:p) answers GET /_ping with OK."""
    try:
        if host.startswith("unix://"):
            conn: http.client.HTTPConnection = _UnixConnection(host.removeprefix("unix://"), timeout)
        elif host.startswith(("tcp://", "http://")):
            conn = http.client.HTTPConnection(host.split("://", 1)[1], timeout=timeout)
        else:
            return False
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        return response.status == 200 and response.read().strip() == b"OK"
    except OSError:
        return False


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


def existing_host() -> str | None:
    """The DOCKER_HOST of a daemon that already answers, or None."""
    candidates = [os.environ.get("DOCKER_HOST", ""), SYSTEM_SOCKET, f"unix://{DEV_RUN_DIR / 'docker.sock'}"]
    return next((host for host in candidates if host and ping(host)), None)


def why_no_private_daemon() -> str | None:
    """Why this machine cannot install and run its own dockerd (None: it can)."""
    if sys.platform != "linux":
        return f"no Docker daemon answers, and a private dockerd needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "no Docker daemon answers (DOCKER_HOST, /var/run/docker.sock), and starting one needs root"
    if not Path("/etc/debian_version").exists() or not _which("apt-get"):
        return "no Docker daemon answers, and installing docker.io needs Debian with apt-get"
    return None


def _which(binary: str) -> str | None:
    return shutil.which(binary, path=f"{os.environ.get('PATH', '')}{os.pathsep}{SBIN_PATH}")


# ------------------------------------------------------------------------------------------ packages


def ensure_packages() -> float:
    """apt-get install the packages whose binaries are missing; returns the seconds it took (0: none)."""
    if all(_which(binary) for binary in PACKAGES.values()):
        return 0.0
    reason = why_no_private_daemon()
    if reason:
        raise DockerUnavailable(reason)
    began = time.perf_counter()
    had_docker0 = Path("/sys/class/net/docker0").exists()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions: one installs, the others wait
        missing = [package for package, binary in PACKAGES.items() if not _which(binary)]
        if missing:
            with services_never_start():
                _apt(["install", "-y", "--no-install-recommends", *missing], retry_after_update=True)
    if Path("/sys/class/net/docker0").exists() and not had_docker0:
        raise DockerSetupError("docker0 appeared while installing docker.io: a system daemon started; stop it")
    return time.perf_counter() - began


def _apt(args: list[str], retry_after_update: bool = False) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "PATH": f"{os.environ.get('PATH', '')}:{SBIN_PATH}"}
    cmd = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 and retry_after_update:  # stale or missing package lists on a fresh machine
        _apt(["update"])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise DockerSetupError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr}")


@contextlib.contextmanager
def services_never_start() -> Iterator[None]:
    """An `exit 101` /usr/sbin/policy-rc.d for the duration: packages start no services (no system dockerd,
    so no docker0 bridge). An existing policy that already exits 101 is kept as is; another is restored."""
    saved: str | None = POLICY_RC.read_text() if POLICY_RC.exists() else None
    if saved is not None and re.search(r"^\s*exit\s+101\s*$", saved, re.MULTILINE):
        yield
        return
    mode = POLICY_RC.stat().st_mode if saved is not None else 0o755
    POLICY_RC.write_text("#!/bin/sh\n# lokki-sam tests: no service starts while packages are installed\nexit 101\n")
    POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        if saved is None:
            POLICY_RC.unlink()
        else:
            POLICY_RC.write_text(saved)
            POLICY_RC.chmod(mode)


# ------------------------------------------------------------------------------------------ the daemon


@dataclass
class DockerDaemon:
    host: str  # the DOCKER_HOST value clients use
    owned: bool  # True: a private dockerd started here (stop() stops it); False: an existing daemon
    run_dir: Path | None = None  # private daemon: socket, pid file, data-root, exec-root, log
    storage_driver: str | None = None
    started_in: float = 0.0  # seconds from spawning dockerd to its first answer
    installed_in: float = 0.0  # seconds spent in apt-get (0: the packages were there)

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def log(self) -> str:
        path = self.run_dir / "dockerd.log" if self.run_dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        if self.owned and self.run_dir is not None:
            stop_private(self.run_dir)


def start_private(run_dir: Path | None = None) -> DockerDaemon:
    """Install the packages if needed and start a private dockerd with no bridge network in `run_dir`
    (a fresh temp folder by default, owned by this process). overlay2 first, vfs when overlay2 fails."""
    installed_in = ensure_packages()
    dockerd = _which("dockerd")
    if dockerd is None:
        raise DockerSetupError("dockerd not found after installing docker.io")
    sweep_stale()
    if run_dir is None:  # short: unix socket paths must stay under 108 characters
        run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
        (run_dir / "owner.pid").write_text(f"{os.getpid()}\n")
    run_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for driver in ("overlay2", "vfs"):
        began = time.perf_counter()
        _spawn(dockerd, run_dir, driver)
        try:
            _wait_ready(run_dir)
        except DockerSetupError as exc:
            failures.append(f"{driver}: {exc}")
            stop_private(run_dir, remove=False)
            shutil.rmtree(run_dir / "data", ignore_errors=True)
            continue
        host = f"unix://{run_dir / 'docker.sock'}"
        return DockerDaemon(host, True, run_dir, driver, time.perf_counter() - began, installed_in)
    stop_private(run_dir)
    raise DockerSetupError("dockerd did not start:\n" + "\n".join(failures))


def _spawn(dockerd: str, run_dir: Path, driver: str) -> None:
    (run_dir / "daemon.json").write_text("{}\n")  # not /etc/docker/daemon.json: nothing may add a bridge
    cmd = [
        dockerd,
        *NO_BRIDGE_FLAGS,
        f"--storage-driver={driver}",
        f"--data-root={run_dir / 'data'}",
        f"--exec-root={run_dir / 'exec'}",
        f"--pidfile={run_dir / 'docker.pid'}",
        f"--config-file={run_dir / 'daemon.json'}",
        f"--host=unix://{run_dir / 'docker.sock'}",
        "--shutdown-timeout=5",
        "--log-level=warn",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["PATH"] = f"{env.get('PATH', '')}:{SBIN_PATH}"  # containerd, runc, docker-init next to dockerd
    with open(run_dir / "dockerd.log", "ab") as log:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    (run_dir / "spawned.pid").write_text(f"{process.pid}\n")  # before dockerd writes its own pid file


def _wait_ready(run_dir: Path) -> None:
    host = f"unix://{run_dir / 'docker.sock'}"
    pid = int((run_dir / "spawned.pid").read_text())
    deadline = time.perf_counter() + READY_TIMEOUT
    while time.perf_counter() < deadline:
        if ping(host, timeout=1):
            return
        if not _alive(pid):
            log = (run_dir / "dockerd.log").read_text(errors="replace")
            raise DockerSetupError(f"dockerd exited:\n{log[-3000:]}")
        time.sleep(0.05)
    raise DockerSetupError(f"dockerd not ready after {READY_TIMEOUT:.0f} s")


def stop_private(run_dir: Path, remove: bool = True) -> None:
    """Stop the dockerd of `run_dir` by its pid file (containers first), unmount what it left mounted
    (exec-root/netns/default, overlay layers) and delete the folder (unless remove=False)."""
    host = f"unix://{run_dir / 'docker.sock'}"
    if ping(host, timeout=1):
        with contextlib.suppress(Exception):
            _remove_containers(host)
    pids = [int(p.read_text()) for p in (run_dir / "docker.pid", run_dir / "spawned.pid") if _readable_pid(p)]
    for pid in dict.fromkeys(pids):
        _terminate(pid)
    containerd_pid = run_dir / "exec" / "containerd" / "containerd.pid"
    if _readable_pid(containerd_pid):  # dockerd stops its containerd; only a SIGKILLed dockerd leaves it
        _terminate(int(containerd_pid.read_text()))
    _unmount_under(run_dir)
    if remove:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        for name in ("docker.pid", "spawned.pid", "docker.sock"):
            (run_dir / name).unlink(missing_ok=True)


def sweep_stale() -> None:
    """Stop and remove the private daemons of sessions that died without stopping theirs (SIGKILL)."""
    for run_dir in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        owner = run_dir / "owner.pid"
        if _readable_pid(owner) and not _alive(int(owner.read_text())):
            stop_private(run_dir)


def _readable_pid(path: Path) -> bool:
    return path.exists() and path.read_text().strip().isdigit()


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child: reap it
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; only this pid (dockerd stops its own containerd)."""
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.perf_counter() + STOP_TIMEOUT
    while _alive(pid) and time.perf_counter() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def _remove_containers(host: str) -> None:
    import docker  # the SAM CLI's dependency

    client = docker.DockerClient(base_url=host, timeout=30)
    try:
        for container in client.containers.list(all=True):
            container.remove(force=True)
    finally:
        client.close()


def _unmount_under(root: Path) -> None:
    """Detach every mount point below `root`, deepest first (dockerd leaves exec-root/netns/default)."""
    prefix = str(root.resolve()) + "/"
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")  # octal escapes such as \040
            if point.startswith(prefix):
                points.append(point)
    libc = ctypes.CDLL(None, use_errno=True)
    for point in sorted(set(points), key=len, reverse=True):
        if libc.umount2(point.encode(), 2) != 0:  # MNT_DETACH
            error = ctypes.get_errno()
            if error not in (22, 2):  # EINVAL (not a mount point any more), ENOENT
                raise OSError(error, f"umount {point}: {os.strerror(error)}")


def acquire(run_dir: Path | None = None) -> DockerDaemon:
    """An existing daemon, else a private one (see the module's docstring); DockerUnavailable otherwise."""
    mode = os.environ.get("LOKKI_SAM_DOCKER", "auto")
    if mode == "off":
        raise DockerUnavailable("LOKKI_SAM_DOCKER=off")
    host = existing_host()
    if host:
        return DockerDaemon(host, owned=False)
    if mode == "existing":
        raise DockerUnavailable("LOKKI_SAM_DOCKER=existing and no Docker daemon answers")
    reason = why_no_private_daemon()
    if reason:
        raise DockerUnavailable(reason)
    return start_private(run_dir)


@contextlib.contextmanager
def docker_daemon() -> Iterator[DockerDaemon]:
    """`acquire()` for a `with` block: a private daemon is stopped on exit, also when the body fails."""
    daemon = acquire()
    try:
        yield daemon
    finally:
        daemon.stop()


def bridge_networks(host: str) -> list[str]:
    """Names of the daemon's networks other than host and none (a private daemon must have none)."""
    import docker

    client = docker.DockerClient(base_url=host, timeout=30)
    try:
        return sorted(n.name for n in client.networks.list() if n.name not in ("host", "none"))
    finally:
        client.close()


# ------------------------------------------------------------------------------------------ the script


def main(argv: list[str] | None = None) -> int:
    """`start`: a developer daemon in DEV_RUN_DIR (with the Lambda image stand-in), kept until `stop`."""
    import argparse

    description = "A Docker daemon with no bridge network for sam local invoke (docs/docker.md)."
    parser = argparse.ArgumentParser(prog="python -m tests.support.docker_daemon", description=description)
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    dev_host = f"unix://{DEV_RUN_DIR / 'docker.sock'}"
    if args.command == "status":
        host = existing_host()
        print(json.dumps({"answering": host, "developer_daemon": ping(dev_host), "run_dir": str(DEV_RUN_DIR)}))
        return 0 if host else 1
    if args.command == "stop":
        if not DEV_RUN_DIR.exists():
            print("no developer daemon")
            return 0
        stop_private(DEV_RUN_DIR)
        print(f"stopped; {DEV_RUN_DIR} removed")
        return 0
    if ping(dev_host):
        daemon = DockerDaemon(dev_host, owned=True, run_dir=DEV_RUN_DIR)
        print(f"already running in {DEV_RUN_DIR}")
    else:
        reason = why_no_private_daemon()
        if reason:
            print(reason, file=sys.stderr)
            return 1
        daemon = start_private(DEV_RUN_DIR)
        print(f"dockerd ({daemon.storage_driver}) ready in {daemon.started_in:.1f} s, log {DEV_RUN_DIR}/dockerd.log")
    from tests.support.lambda_image import ensure_lambda_images

    for line in ensure_lambda_images(daemon).describe():
        print(line)
    print(f"export DOCKER_HOST={daemon.host}")
    print("stop it with: python -m tests.support.docker_daemon stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
