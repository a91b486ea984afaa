"""Background processes: start one in its own session, wait until it answers, tell whether it
still runs (by pid and start time), and end its whole process group."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

POLL = 0.1


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port (SO_REUSEADDR: a closing socket is not 'in use')."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def launch(command: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start `command` detached from this terminal (its own session: pgid = pid), output to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the shell that started it does not reach it; killpg ends its tree
        )


def started_at(pid: int) -> float | None:
    """The process's start time in seconds since boot, None if it is gone (or a zombie).

    Without /proc (not Linux) a live pid gives 0.0: the pid alone identifies it there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None if Path("/proc/self/stat").exists() or not _exists(pid) else 0.0
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": state is field 3, starttime field 22
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(pid: int, started: float) -> bool:
    """Whether `pid` is still the process that started at `started` (a recycled pid is not)."""
    now = started_at(pid)
    return now is not None and abs(now - started) < 0.05


def reap(pid: int) -> None:
    """Collect `pid` if it is our child (started by this process), so it does not stay a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float, ok: Callable[[bytes], bool]) -> bool:
    """Poll `url` until `ok(body)`; False if the process exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200 and ok(response.read()):
                return True
        time.sleep(POLL)
    return False


def stop_group(pid: int, started: float, grace: float = 20.0) -> None:
    """SIGTERM the process group `pid` leads, SIGKILL it after `grace` seconds, then end whatever
    of the group is left (workers the leader did not stop)."""
    if alive(pid, started):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            reap(pid)
            if not alive(pid, started):
                break
            time.sleep(POLL)
    if started_at(pid) is not None and not alive(pid, started):
        return  # the pid now belongs to another process, and with it the group id: not ours to kill
    # Linux reuses no pid while a group uses it as its id, so members found now are the engine's.
    for _ in range(50):
        reap(pid)
        if not group_members(pid):
            return
        _signal_group(pid, signal.SIGKILL)
        time.sleep(POLL)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (from /proc; without it, the leader if alive)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return [pgid] if _exists(pgid) else []
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with its folder); other processes wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
