"""Reading what `lokki-sam emulator start` prints for the shell."""

from __future__ import annotations

import shlex


def exported(stdout: str) -> dict[str, str]:
    """`export A=1 B=2` (the start command's stdout) -> {"A": "1", "B": "2"}."""
    words = shlex.split(stdout.strip())
    assert words and words[0] == "export", stdout
    return dict(word.split("=", 1) for word in words[1:])
