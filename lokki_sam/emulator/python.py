"""Finding interpreters by version ("3.13"): never a hard-coded path.

Order: this interpreter, `python3.X` on PATH, then pyenv's versions directory. pyenv shims exist
on PATH for every installed version but fail for versions that are not selected, so each
candidate is run once to check it.
"""

from __future__ import annotations

import functools
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lokki_sam.emulator.errors import EmulatorError

VERSION = re.compile(r"^3\.\d{1,2}$")
# The CPython versions Lambda has python3.X runtimes for (and the next one), for discover_all().
KNOWN_MINORS = range(9, 15)


def current() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def find_python(version: str) -> str:
    """An interpreter for `version` ("3.11"), or an EmulatorError saying where it looked."""
    found = _find(version)
    if found is None:
        raise EmulatorError(
            f"no python{version} found (this interpreter, PATH, pyenv)",
            hint=f"install Python {version} (e.g. `pyenv install {version}`) or put python{version} on PATH",
        )
    return found


def discover_all() -> dict[str, str]:
    """{"3.11": path, ...}: every python3.X found, for Lambda runtimes of that version."""
    return {version: path for version in (f"3.{m}" for m in KNOWN_MINORS) if (path := _find(version))}


def version_tuple(version: str) -> tuple[int, int]:
    if not VERSION.match(version):
        raise EmulatorError(f"'{version}' is not a Python version like 3.13", hint="pass --python 3.X")
    major, minor = version.split(".")
    return int(major), int(minor)


@functools.cache
def _find(version: str) -> str | None:
    version_tuple(version)
    if current() == version:
        return sys.executable
    candidates = [shutil.which(f"python{version}")]
    candidates += [str(p / "bin" / f"python{version}") for p in _pyenv_versions(version)]
    for candidate in candidates:
        if candidate and _runs(candidate, version):
            return candidate
    return None


def _pyenv_versions(version: str) -> list[Path]:
    found = []
    for root in _pyenv_roots():
        found += [p for p in (root / "versions").glob(f"{version}.*") if re.fullmatch(r"\d+\.\d+\.\d+", p.name)]
    # Newest patch release first: 3.13.10 before 3.13.9.
    return sorted(found, key=lambda p: tuple(int(x) for x in p.name.split(".")), reverse=True)


def _pyenv_roots() -> list[Path]:
    """$PYENV_ROOT, `pyenv root`, and pyenv's default ~/.pyenv of the real user (HOME may be a
    test's, PATH a minimal one)."""
    roots = [os.environ.get("PYENV_ROOT", "")]
    if pyenv := shutil.which("pyenv"):
        roots.append(subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip())
    roots.append(str(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".pyenv"))
    return list(dict.fromkeys(Path(r) for r in roots if r and Path(r, "versions").is_dir()))


def _runs(candidate: str, version: str) -> bool:
    check = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run([candidate, "-c", check], capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == version
