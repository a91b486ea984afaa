"""What a deployed step logs: one JSON record when an invocation starts, ends or fails.

Every record carries the run id, the execution (a run's resumes are executions of it), the flow,
step and node, and for a batch of map items their index ranges; the end record adds the duration,
the S3 bytes and requests and the peak memory of the invocation; a failure adds the
user's traceback. While a step runs, the user's own `logging` records carry the same fields, so
`lokki-sam logs RUN_ID --step S --item N` finds them too.

The generated functions set `LoggingConfig.LogFormat: JSON`: Lambda's Python runtime then writes
each record as one JSON object with these fields. Where the platform ignores LoggingConfig
(emulators, `sam local invoke`), `configure` installs a formatter writing the same JSON lines.
`LOKKI_LOG_LEVEL` (config `log_level`) sets the level; Lambda's ApplicationLogLevel filters too.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

LOGGER = logging.getLogger("lokki_sam")
ENV_LOG_LEVEL = "LOKKI_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Lambda's ApplicationLogLevel spells two of Python's levels differently.
LAMBDA_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR", "CRITICAL": "FATAL"}
STARTED, FINISHED, FAILED = "step started", "step finished", "step failed"

_fields: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("lokki_fields", default=None)
_configured = _tagging = False


def configure(env: Mapping[str, str]) -> None:
    """Set the level, and write JSON lines where the platform does not (once per process)."""
    global _configured
    if _configured:
        return
    _configured = True
    level = env.get(ENV_LOG_LEVEL, "INFO").upper()
    LOGGER.setLevel(level if level in LEVELS else "INFO")
    root = logging.getLogger()
    platform_json = env.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON" and bool(root.handlers)
    if not platform_json:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonLines())
        root.handlers[:] = [handler]
        root.setLevel(LOGGER.level)


def _tag_records() -> None:
    """Give every record made while a step runs (lokki-sam's and the user's) the step's fields."""
    global _tagging
    if _tagging:
        return
    _tagging = True
    previous = logging.getLogRecordFactory()

    def record_with_run_fields(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        for key, value in (_fields.get() or {}).items():
            record.__dict__.setdefault(key, value)
        return record

    logging.setLogRecordFactory(record_with_run_fields)


class JsonLines(logging.Formatter):
    """One JSON object per record: the fields Lambda's JSON format writes, and the record's extras."""

    _STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            out["errorType"] = type(record.exc_info[1]).__name__
            out["errorMessage"] = str(record.exc_info[1])
            out["stackTrace"] = traceback.format_tb(record.exc_info[2])
        out.update((k, v) for k, v in record.__dict__.items() if k not in self._STANDARD and k not in out)
        return json.dumps(out, default=str, ensure_ascii=False)


def read_record(line: str) -> dict[str, Any] | None:
    """One of these records (a JSON object on one line) as read back from a log, else None."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


class Meter:
    """S3 requests and bytes moved by one client, counted from botocore's events (every request,
    those of s3transfer's threads too). Process-wide: a Lambda process serves one invocation at a
    time (where invocations share a process, as in tests, their figures mix)."""

    def __init__(self) -> None:
        self.requests = self.bytes_read = self.bytes_written = 0

    def reset(self) -> None:
        self.requests = self.bytes_read = self.bytes_written = 0

    def attach(self, client: Any) -> None:
        events = getattr(getattr(client, "meta", None), "events", None)
        if events is None or getattr(client, "_lokki_meter", None) is self:
            return
        client._lokki_meter = self
        events.register("before-send.s3", self._sent)
        events.register("after-call.s3", self._received)

    def _sent(self, request: Any = None, **_: Any) -> None:
        self.requests += 1
        if request is not None and request.method == "PUT":  # PutObject, UploadPart
            # A checksummed streaming upload (aws-chunked) states the payload's own length apart.
            headers = request.headers
            length = headers.get("X-Amz-Decoded-Content-Length") or headers.get("Content-Length") or 0
            self.bytes_written += int(length)

    def _received(self, parsed: Any = None, model: Any = None, **_: Any) -> None:
        if model is not None and model.name == "GetObject" and isinstance(parsed, Mapping):
            self.bytes_read += int(parsed.get("ContentLength") or 0)

    def figures(self) -> dict[str, int]:
        return {"s3_requests": self.requests, "bytes_read": self.bytes_read, "bytes_written": self.bytes_written}


METER = Meter()


def item_ranges(indexes: Sequence[int]) -> list[list[int]]:
    """[[first, last], ...]: a batch's items as contiguous index ranges."""
    ranges: list[list[int]] = []
    for index in sorted(set(indexes)):
        if ranges and index == ranges[-1][1] + 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ranges


@contextlib.contextmanager
def step_scope(fields: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Log the invocation's start, then its end (with figures) or its failure (with the
    traceback, re-raised). The yielded dict takes fields known only at the end."""
    _tag_records()
    token = _fields.set(dict(fields))
    METER.reset()
    peak = PeakMemory()
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    try:
        LOGGER.info(STARTED)
        yield extra
    except BaseException as exc:
        failure = {"error": f"{type(exc).__name__}: {exc}"}  # what a text search finds
        LOGGER.error(FAILED, exc_info=exc, extra={**extra, **failure, **_end_figures(started, peak)})
        raise
    else:
        LOGGER.info(FINISHED, extra={**extra, **_end_figures(started, peak)})
    finally:
        _fields.reset(token)


def _end_figures(started: float, peak: PeakMemory) -> dict[str, Any]:
    return {"seconds": round(time.perf_counter() - started, 3), **METER.figures(), **peak.figures()}


class PeakMemory:
    """The peak resident memory of one invocation, not of the process.

    A warm Lambda worker serves many invocations, and getrusage's ru_maxrss is a lifetime maximum
    that even starts from the parent's size when the worker was forked from a large process (an
    emulator's): 602 MB was reported for a function whose own peak was 53 MB. On Linux, writing 5
    to /proc/self/clear_refs resets the peak (VmHWM in /proc/self/status) to the current size, so
    the reading at the end is this invocation's. Elsewhere, or where /proc refuses the reset, the
    process-lifetime figure is reported and labelled so (`peak_memory_scope: process`)."""

    CLEAR_REFS = "/proc/self/clear_refs"
    STATUS = "/proc/self/status"
    RESET_PEAK = "5"  # proc(5): "reset the peak resident set size ("high water mark") to the current value"

    def __init__(self) -> None:
        try:
            with open(self.CLEAR_REFS, "w") as handle:
                handle.write(self.RESET_PEAK)
            self.reset = True
        except OSError:
            self.reset = False

    def figures(self) -> dict[str, Any]:
        if self.reset:
            peak = self._vm_hwm_mb()
            if peak is not None:
                return {"peak_memory_mb": peak}
        lifetime = self._ru_maxrss_mb()
        return {} if lifetime is None else {"peak_memory_mb": lifetime, "peak_memory_scope": "process"}

    def _vm_hwm_mb(self) -> int | None:
        try:
            with open(self.STATUS) as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) // 1024  # kB
        except (OSError, ValueError, IndexError):
            pass
        return None

    @staticmethod
    def _ru_maxrss_mb() -> int | None:
        try:
            import resource
        except ImportError:  # Windows; Lambda is Linux
            return None
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(maxrss // 1024**2 if sys.platform == "darwin" else maxrss // 1024)  # bytes there, KiB on Linux
