"""The requirement line that installs the running lokki-sam again, from where it came from.

A new project's `requirements-dev.txt` must name a lokki-sam that pip can find: lokki-sam is
not on every package index, and a project made by one lokki-sam must not silently get another.
Where the running lokki-sam came from is in its installation record (`direct_url.json`, PEP 610):

- a package index (no record): `lokki-sam==<version>`;
- a VCS URL: `lokki-sam @ git+https://...@<commit>`;
- a checkout or a local wheel: a wheel of the running lokki-sam, written into the project
  (`wheels/`) and named by a relative path (a checkout would need its build backend, and so the
  network, to install; a wheel needs neither).

The user may choose instead (`--lokki-sam`): `wheel`, `checkout` (`lokki-sam @ file:///...`),
`index`, or a URL of their own (`git+https://...`, `https://.../lokki_sam-...whl`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import lokki_sam
from lokki_sam import __version__
from lokki_sam.errors import LokkiError
from lokki_sam.project.wheel import wheel_name, write_wheel

DISTRIBUTION = "lokki-sam"
WHEELS = "wheels"  # the project's folder for the pinned wheel
SOURCES = ("wheel", "checkout", "index")
REQUIREMENT_LINE = re.compile(r"^\s*(lokki[-_.]sam\b|\S*lokki_sam-[^/\s]*\.whl\b)", re.IGNORECASE)
PIN_COMMENT = "# lokki-sam pinned by `lokki-sam init`:"


class PinError(LokkiError):
    """The lokki-sam to pin cannot be named as asked."""


@dataclass(frozen=True)
class Origin:
    """Where the running lokki-sam was installed from (its PEP 610 record)."""

    kind: str  # "index", "vcs", "directory" (a checkout, editable or not), "archive" (a wheel or sdist)
    url: str = ""  # for vcs: the pip URL with its commit; else the recorded URL

    def describe(self) -> str:
        if self.kind == "index":
            return "a package index"
        if self.kind == "directory":
            return f"the checkout {_path(self.url)}"
        return self.url


@dataclass(frozen=True)
class Pin:
    """The requirement line, what it means, and whether the project needs the wheel written."""

    requirement: str
    why: str
    needs_wheel: bool = False


def origin() -> Origin:
    """Where the running lokki-sam came from; a source tree run without its install counts as a checkout."""
    dist = _installed()
    if dist is None:
        return Origin("directory", _package().parent.as_uri())
    record = _record(dist)
    url = record.get("url")
    if not isinstance(url, str):
        return Origin("index")
    if isinstance(record.get("vcs_info"), dict):
        vcs = record["vcs_info"]
        revision = vcs.get("commit_id") or vcs.get("requested_revision")
        return Origin("vcs", f"{vcs.get('vcs', 'git')}+{url}" + (f"@{revision}" if revision else ""))
    if "dir_info" in record:
        return Origin("directory", url)
    return Origin("archive", url)


def _installed() -> importlib.metadata.Distribution | None:
    """The installation record of the running lokki-sam: a .dist-info that installed this very
    package (a checkout's own .egg-info, found first when the checkout is the working directory,
    or another lokki-sam installed beside a source tree on PYTHONPATH, do not count)."""
    package = _package()
    for dist in importlib.metadata.distributions(name=DISTRIBUTION):
        if dist.read_text("METADATA") is None:
            continue  # an .egg-info: a source tree's build leftovers
        record = _record(dist)
        editable = isinstance(record.get("dir_info"), dict) and record["dir_info"].get("editable")
        home = Path(_path(str(record.get("url", "")))) if editable else Path(str(dist.locate_file("")))
        if package.is_relative_to(home.resolve()):
            return dist
    return None


def _record(dist: importlib.metadata.Distribution) -> dict[str, Any]:
    """The distribution's PEP 610 record (`direct_url.json`); {} when it came from an index."""
    try:
        record = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _package() -> Path:
    return Path(lokki_sam.__file__).resolve().parent


def choose(source: str | None, found: Origin | None = None) -> Pin:
    """The pin for `source` (None: from where this lokki-sam came from)."""
    found = found or origin()
    if source is None:
        if found.kind == "index":
            return choose("index", found)
        if found.kind == "vcs" or (found.kind == "archive" and found.url.startswith(("http://", "https://"))):
            return Pin(f"{DISTRIBUTION} @ {found.url}", f"lokki-sam {__version__} from {found.url}")
        return choose("wheel", found)
    if source == "index":
        return Pin(f"{DISTRIBUTION}=={__version__}", f"lokki-sam {__version__} from your package index")
    if source == "wheel":
        path = f"./{WHEELS}/{wheel_name(DISTRIBUTION, __version__)}"
        return Pin(path, f"a wheel of lokki-sam {__version__}, built from {found.describe()}", True)
    if source == "checkout":
        if found.kind != "directory":
            raise PinError(
                f"this lokki-sam {__version__} was installed from {found.describe()}, not from a checkout",
                hint="use --lokki-sam wheel (a wheel of it, in the project) or --lokki-sam index",
            )
        return Pin(f"{DISTRIBUTION} @ {found.url}", f"lokki-sam {__version__} from {found.describe()}")
    if re.fullmatch(r"(git|hg|svn|bzr)\+\S+|https?://\S+|file://\S+", source):
        return Pin(f"{DISTRIBUTION} @ {source}", f"lokki-sam from {source}")
    raise PinError(
        f"--lokki-sam {source!r} is not a source lokki-sam can be pinned to",
        hint="give wheel, checkout, index, or a URL pip installs from (git+https://..., https://.../x.whl)",
    )


def write_project_wheel(project: Path) -> Path:
    """A wheel of the running lokki-sam (its package files and installed metadata) in `project`/wheels."""
    dist = _installed()
    if dist is None:
        raise PinError(
            "lokki-sam runs from a source tree that is not installed: there is no metadata to build its wheel from",
            hint="install it (`pip install -e .` in the checkout), or pass --lokki-sam checkout or a URL",
        )
    package = _package()
    files: dict[str, bytes] = {}
    for folder, dirs, names in os.walk(package, followlinks=True):  # the template is a link in a checkout
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if not name.endswith((".pyc", ".pyo")):
                path = Path(folder) / name
                files[(Path("lokki_sam") / path.relative_to(package)).as_posix()] = path.read_bytes()
    metadata = dist.read_text("METADATA") or ""
    entry_points = dist.read_text("entry_points.txt") or ""
    return write_wheel(project / WHEELS, DISTRIBUTION, __version__, files, metadata, entry_points)


def pin_requirements(file: Path, pin: Pin) -> None:
    """Put `pin` in a requirements file in place of the line that names lokki-sam (else add it)."""
    lines = file.read_text().splitlines() if file.exists() else []
    kept = [line for line in lines if not line.startswith(PIN_COMMENT)]
    new = [f"{PIN_COMMENT} {pin.why}", pin.requirement]
    at = next((i for i, line in enumerate(kept) if REQUIREMENT_LINE.match(line)), None)
    if at is None:
        kept += new
    else:
        kept[at : at + 1] = new
    file.write_text("\n".join(kept) + "\n")


def _path(url: str) -> str:
    parsed = urlparse(url)
    return unquote(parsed.path) if parsed.scheme == "file" else url
