"""Ctrl-C and SIGTERM tests synchronise on the run having received the signal, never on time.

A flow module of such a test starts with SIGNAL_MARKER: every signal handler the process
installs (Python's Ctrl-C handler, lokki-sam's SIGTERM handler during a run) first creates the
file `signalled` next to the module, then does what it always does. A step held by the test
(`wait_for_signal()` in its body) returns only once that file exists, so the run is interrupted
while that step is in flight, however loaded the machine is and whichever thread the kernel
hands the signal to. Instrumentation of the real handlers, not a replacement: the run reacts to
the real signal exactly as it would without it.
"""

SIGNAL_MARKER = """
import signal as _signal
import time as _time
from pathlib import Path as _Path

_SIGNALLED = _Path(__file__).parent / "signalled"
_HOLD = _Path(__file__).parent / "hold"
_install = _signal.signal


def _marking(signum, handler):
    if not callable(handler):
        return _install(signum, handler)

    def marked(received, frame):
        _SIGNALLED.touch()
        return handler(received, frame)

    return _install(signum, marked)


_signal.signal = _marking
_signal.signal(_signal.SIGINT, _signal.default_int_handler)  # Ctrl-C: Python's own handler, marked


def wait_for_signal():
    # While the test holds the run (`hold` exists), wait until the process has the signal.
    while _HOLD.exists() and not _SIGNALLED.exists():
        _time.sleep(0.01)
"""


# A map of 40 items, two at a time, each held (`wait_for_signal()`) and logged as "item pid" in
# `calls.log` next to the module (tests/test_interrupt.py, tests/test_executors.py).
HELD_MAP = (
    SIGNAL_MARKER
    + """
import os
from lokki_sam import flow, step

@step
def src(n: int = 40) -> list[int]:
    return list(range(n))

@step
def slow(x: int) -> int:
    with open(_Path(__file__).parent / "calls.log", "a") as log:
        log.write(f"{x} {os.getpid()}\\n")
    wait_for_signal()
    return x

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def slowflow(n: int = 40):
    return src(n=n).map(slow, concurrency=2).agg(total)
"""
)
