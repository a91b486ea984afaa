"""A lokki-sam wheel built from this checkout, for `sam build` in tests.

lokki-sam is not on PyPI yet: a generated project's `src/requirements.txt` names `lokki-sam`,
and `sam build` runs pip, which honours PIP_FIND_LINKS. So tests build a wheel from the working
tree (copied first: an in-tree build would leave build/ and *.egg-info in the repository) and
run `sam build` with PIP_FIND_LINKS pointing at its folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build_wheel(workdir: Path) -> Path:
    """Build the wheel into workdir/wheels and return that folder (for PIP_FIND_LINKS)."""
    source = workdir / "source"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "lokki_sam", source / "lokki_sam", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = workdir / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
    )
    if not list(wheels.glob("lokki_sam-*.whl")):
        raise RuntimeError(f"no lokki-sam wheel was built in {wheels}")
    return wheels
