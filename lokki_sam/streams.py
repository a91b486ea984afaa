"""Standard output belongs to a command's result: what steps write goes to standard error.

`lokki-sam run ... --json | jq` and `> result.json` need stdout to hold the result alone, yet a
step may print, log through a handler bound to `sys.stdout` when its module was imported, or run
a program that writes to file descriptor 1. Swapping `sys.stdout` catches only the first; the
descriptor itself is pointed at stderr while steps run, so every one of them lands there.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TextIO


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While the body runs, whatever is written to standard output goes to standard error."""
    out, err = _descriptor(sys.stdout), _descriptor(sys.stderr)
    if out is None or err is None or out == err:  # no real descriptors (an in-process test runner)
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    sys.stdout.flush()
    saved = os.dup(out)
    os.dup2(err, out)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()  # what steps left in stdout's buffer belongs to stderr too
        os.dup2(saved, out)
        os.close(saved)


def _descriptor(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None
