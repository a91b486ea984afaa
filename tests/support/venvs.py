"""Cached virtual environments for test tools (checkov pins boto3): lokki-sam's own builder,
`lokki_sam.emulator.venvs`, which also builds the emulators' venvs (one implementation)."""

from __future__ import annotations

from lokki_sam.emulator.venvs import cache_root, cached_venv

__all__ = ["cache_root", "cached_venv"]
