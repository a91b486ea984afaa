"""Write a pure-Python wheel from files in memory: no build backend, no network.

Used for lokki-sam's LocalStack executor plugin (installed into LocalStack's venv) and for the
wheel of the running lokki-sam that `lokki-sam init` pins a new project to.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

WHEEL = b"Wheel-Version: 1.0\nGenerator: lokki-sam\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def wheel_name(distribution: str, version: str) -> str:
    """The file name pip expects for a py3-none-any wheel (names normalised as PEP 427 says)."""
    return f"{_normalised(distribution)}-{version}-py3-none-any.whl"


def write_wheel(
    folder: Path, distribution: str, version: str, files: Mapping[str, bytes], metadata: str, entry_points: str = ""
) -> Path:
    """`files` (archive path -> content) plus a dist-info with `metadata`, the WHEEL file, the
    entry points (if any) and a RECORD pip accepts; the wheel's path."""
    info = f"{_normalised(distribution)}-{version}.dist-info"
    content = dict(files)
    content[f"{info}/METADATA"] = metadata.encode()
    content[f"{info}/WHEEL"] = WHEEL
    if entry_points:
        content[f"{info}/entry_points.txt"] = entry_points.encode()
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in content.items()]
    content[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / wheel_name(distribution, version)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in content.items():
            archive.writestr(path, data)
    return wheel


def _normalised(distribution: str) -> str:
    return re.sub(r"[-_.]+", "_", distribution).lower()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
