"""Tracebacks as users want them: their own frames, not lokki-sam's machinery around them."""

from __future__ import annotations

import re
import traceback
from collections.abc import Sequence

PACKAGE = "lokki_sam"
_FILE = re.compile(r'File "([^"]+)"')


def is_own_file(filename: str) -> bool:
    """A file of lokki-sam's package, wherever it is installed (site-packages, a checkout, a
    Lambda layer's /opt/python): a `lokki_sam` folder on its path."""
    return PACKAGE in re.split(r"[\\/]", filename)[:-1]


def user_frame_summaries(exc: BaseException) -> list[traceback.FrameSummary]:
    """The frames of `exc`'s traceback that are the user's (lokki-sam's own dropped)."""
    return [f for f in traceback.extract_tb(exc.__traceback__) if not is_own_file(f.filename)]


def user_frames(frames: Sequence[str]) -> list[str]:
    """Formatted frames (`traceback.format_tb`, a Lambda record's `stackTrace`) without lokki-sam's
    own; all of them when none is the user's (the error is then lokki-sam's to show whole)."""
    kept = [frame for frame in frames if not _own(frame)]
    return kept or list(frames)


def _own(frame: str) -> bool:
    found = _FILE.search(frame)
    return found is not None and is_own_file(found.group(1))
