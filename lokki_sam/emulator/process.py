"""Background processes: start one in its own session, wait until it answers, tell whether it
still runs (by pid, start time and boot), and end its process group without touching anyone else's."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

POLL = 0.1
START_TOLERANCE = 0.05  # seconds: /proc gives start times in clock ticks


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
            start_new_session=True,  # Ctrl-C in the shell that started it does not reach it; its group is its tree
        )


@dataclass(frozen=True)
class Identity:
    """A process as recorded when lokki-sam started it: a pid alone is recycled, a pid with its
    start time (seconds since boot) within one boot (the kernel's boot id) is not."""

    pid: int
    started: float
    boot: str


def identify(pid: int) -> Identity | None:
    """The current identity of `pid`, None if it is gone (or a zombie)."""
    started = started_at(pid)
    return None if started is None else Identity(pid, started, boot_id())


def boot_id() -> str:
    """This boot's id ("" without /proc: then start times alone identify a process)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def started_at(pid: int) -> float | None:
    """The process's start time in seconds since boot, None if it is gone (or a zombie).

    Without /proc (not Linux) a live pid gives 0.0: the pid alone identifies it there."""
    found = _stat(pid)
    if found is None:
        return None if Path("/proc/self/stat").exists() or not _exists(pid) else 0.0
    return found[2]


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(state, process group, start time since boot) of a live process, from /proc; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after "pid (comm)": state is field 3, pgrp 5, starttime 22
    if fields[0] in ("Z", "X"):
        return None
    return fields[0], int(fields[2]), int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(who: Identity) -> bool:
    """Whether `who.pid` is still the process that started at `who.started` in this boot."""
    now = started_at(who.pid)
    return who.boot == boot_id() and now is not None and abs(now - who.started) < START_TOLERANCE


def works_in(pid: int, started: float, home: Path) -> bool:
    """Whether `pid` is the process that started at `started` and its working folder is `home`."""
    now = started_at(pid)
    return now is not None and abs(now - started) < START_TOLERANCE and _cwd(pid) == home.resolve()


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


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


def stop_group(leader: Identity, home: Path, grace: float = 20.0) -> None:
    """SIGTERM `leader`, SIGKILL it after `grace` seconds, then SIGKILL what is left of its process
    group (workers it did not stop).

    Only processes whose identity is proven are signalled: the leader while it is the process
    recorded, and a member of its group only if it started in the same boot, no earlier than the
    leader, and works inside `home` (the engine's folder, where its workers run). A stale record
    (another boot, a recycled pid, a group id now used by another session) signals nothing."""
    if alive(leader):
        _signal_proven(leader.pid, functools.partial(alive, leader), signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(leader) and time.monotonic() < deadline:
            reap(leader.pid)
            time.sleep(POLL)
        _signal_proven(leader.pid, functools.partial(alive, leader), signal.SIGKILL)
        reap(leader.pid)
    elif started_at(leader.pid) is not None:
        return  # the pid is another process now: Linux reuses no pid while a group has it as its id
    for _ in range(50):
        left = [pid for pid in group_members(leader.pid) if _member_of(pid, leader, home)]
        if not left:
            return
        for pid in left:
            _signal_proven(pid, functools.partial(_member_of, pid, leader, home), signal.SIGKILL)
        time.sleep(POLL)


def _member_of(pid: int, leader: Identity, home: Path) -> bool:
    """Whether `pid` is proven to be a process of the group `leader` started (see stop_group)."""
    found = _stat(pid)
    if found is None or found[1] != leader.pid or leader.boot != boot_id():
        return False
    if found[2] < leader.started - START_TOLERANCE:
        return False  # older than the leader: another process group that reuses the id
    cwd = _cwd(pid)
    return cwd is not None and cwd.is_relative_to(home.resolve())


def _signal_proven(pid: int, proven: Callable[[], bool], sig: int) -> None:
    """Send `sig` to `pid` if `proven()` holds, without a window for the pid to be recycled:
    the check runs after a pidfd pins the process, and the signal goes through that pidfd."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            descriptor = os.pidfd_open(pid)
        except (AttributeError, OSError) as exc:  # not Linux >= 5.3: the pid alone
            if isinstance(exc, ProcessLookupError):
                raise
            if proven():
                os.kill(pid, sig)
            return
        try:
            if proven():
                signal.pidfd_send_signal(descriptor, sig)
        finally:
            os.close(descriptor)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (from /proc; without it, the leader if alive)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return [pgid] if _exists(pgid) else []
    members = []
    for entry in proc.iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None and found[1] == pgid:
            members.append(int(entry.name))
    return members


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with its folder); other processes wait for it
    (`on_wait` is called first when this one has to)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
