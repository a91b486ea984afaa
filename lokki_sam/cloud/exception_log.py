"""A failed step's exception class from its Lambda log, when the execution history does not name it.

The log is JSON records (the functions' LogFormat) or, on platforms that ignore it, text lines.

AWS reports a Python exception's class as the Task error; some emulators report every one as
`Runtime.HandlerError` and only the function's log (the traceback) names the class.
"""

from __future__ import annotations

import re
import time
from typing import Any

from lokki_sam.runlog import read_record

GENERIC_ERRORS = ("Runtime.HandlerError", "Runtime.Unknown", "States.TaskFailed", "Unhandled")
LOOKBACK_MS = 3600 * 1000
_CLASS_LINE = re.compile(r"^\s*(?:\[ERROR\]\s*)?([A-Za-z_][\w.]*)\s*:\s*(.*)$")


def exception_class(logs: Any, group: str, message: str, *, wait: float = 5.0, sleep: Any = time.sleep) -> str | None:
    """The class on the last traceback line `Class: message` in the log group's recent events.

    Log events arrive shortly after the invocation ends: look again for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        found = _find_class(_recent_lines(logs, group), message)
        if found is not None or time.monotonic() >= deadline:
            return found
        sleep(0.5)


def _recent_lines(logs: Any, group: str) -> list[str]:
    try:
        pages = logs.get_paginator("filter_log_events").paginate(
            logGroupName=group,
            startTime=int(time.time() * 1000) - LOOKBACK_MS,
            PaginationConfig={"MaxItems": 5000},
        )
        return [line for page in pages for event in page.get("events", ()) for line in event["message"].splitlines()]
    except Exception:  # logs are a best-effort extra: no access, no group, an emulator without logs
        return []


def _find_class(lines: list[str], message: str) -> str | None:
    for line in reversed(lines):
        record = read_record(line)
        if record is not None:  # a JSON log record (LogFormat JSON): Lambda's or lokki-sam's runtime's
            error_type, error_message = record.get("errorType"), record.get("errorMessage")
            if isinstance(error_type, str) and str(error_message).strip() == message.strip():
                return error_type.rsplit(".", 1)[-1]
            continue
        found = _CLASS_LINE.match(line)
        if found and found.group(2).strip() == message.strip() and not found.group(1).startswith("File"):
            return found.group(1).rsplit(".", 1)[-1]
    return None
