"""The emulator's user-facing error."""

from __future__ import annotations

from lokki_sam.errors import LokkiError


class EmulatorError(LokkiError):
    """An emulator cannot be installed, started, found or stopped (exit code 2, no traceback)."""
