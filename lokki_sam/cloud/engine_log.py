"""The engine's own account of items it failed, from the log of a local cloud lokki-sam started.

LocalStack's Step Functions fails a map item it cannot deliver to Lambda with `States.Runtime`
(`Connect timeout on endpoint URL` when it is saturated), then lets the map succeed: no API
(`ListExecutions` by map run fails there) says so, but its log does, one ERROR line per item:

    2026-12-06T09:22:30.917 ERROR --- [...] l.s.s.a.c.eval_component : Exception=FailureEventException,
    Error=States.Runtime, Details={"taskFailedEventDetails": {"error": "States.Runtime", "cause": "..."}}

When the deployment's endpoint is an emulator of `lokki-sam emulator start`, its record names the
log; the errors logged while the run ran are the engine's faults, with their cause.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+) ERROR .*?Error=(?P<error>States\.\w+), "
    r'Details=\{"taskFailedEventDetails": \{"error": "[^"]*", "cause": (?P<cause>"(?:[^"\\]|\\.)*")'
)


@dataclass(frozen=True)
class EngineFaults:
    engine: str
    log: Path
    count: int
    error: str  # the first one's error and cause
    cause: str

    def describe(self) -> str:
        return (
            f"{self.engine} logged {self.count} {self.error} error(s) while the run ran, e.g. {self.cause} "
            f"(log: {self.log}): the engine failed those items, not the step"
        )


def engine_faults(endpoint: str | None, since: dt.datetime) -> EngineFaults | None:
    """The Step Functions errors (`States.*`) the lokki-sam emulator at `endpoint` logged since `since`."""
    from lokki_sam.emulator import process, state
    from lokki_sam.emulator.engines import ENGINES

    if not endpoint:
        return None
    for name in ENGINES:
        record = state.load(name)
        if record is not None and _same(record.endpoint, endpoint) and process.alive(record.identity):
            return _read(name, Path(record.log), since)
    return None


def _read(engine: str, log: Path, since: dt.datetime) -> EngineFaults | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        match = LINE.match(line)
        if match is None:
            continue
        at = dt.datetime.fromisoformat(match["at"]).astimezone()  # logged in local time (logging's default)
        if at >= since:
            found.append((match["error"], json.loads(match["cause"])))
    if not found:
        return None
    return EngineFaults(engine, log, len(found), found[0][0], found[0][1])


def _same(one: str, other: str) -> bool:
    a, b = urlparse(one), urlparse(other)
    loopback = {"127.0.0.1", "localhost"}
    hosts_match = a.hostname == b.hostname or {a.hostname, b.hostname} <= loopback
    return hosts_match and a.port == b.port
