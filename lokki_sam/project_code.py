"""Which files are the user's project: code a fingerprint describes by its source.

Project code is any Python source file that is not the standard library, not lokki-sam, and not
part of an installed distribution. It is decided from the file alone, never from the name its
module was imported under (a flow module is `flow` locally and `etl.flow` in the Lambda) nor from
a root folder derived from that name, so the generator and every Lambda agree:

- the standard library is the folder `os` comes from (the Lambda's /var/lang/lib/python3.X too);
- a distribution is what pip installed: a file below a `site-packages` or `dist-packages` folder,
  or one listed in the RECORD of a `*.dist-info` folder next to it or above it (how `sam build`
  installs a function's requirements next to its code, and layers under /opt/python), or in a
  folder named by an `*.egg-info`'s top_level.txt. An editable install lists no source files in its
  RECORD: it stays project code, as its copy in the Lambda is.
"""

from __future__ import annotations

import contextlib
import csv
import os
from functools import cache
from pathlib import Path

_LOKKI = Path(__file__).resolve().parent
_STDLIB = Path(os.__file__).resolve().parent
_INSTALLED_FOLDERS = frozenset({"site-packages", "dist-packages"})


def is_project_file(file: str) -> bool:
    """Whether `file` (a module's `__file__`, a code object's `co_filename`) is project source."""
    return _is_project_file(file, os.getcwd())


@cache
def _is_project_file(file: str, cwd: str) -> bool:
    if not file.endswith(".py"):
        return False  # no source to describe: an extension module, a sourceless .pyc
    path = Path(cwd, file).resolve()
    if not _outside_libraries(path):
        return False
    for folder in path.parents:
        files, tops = installed(folder)
        relative = path.relative_to(folder).as_posix()
        if relative in files or relative.split("/", 1)[0].removesuffix(".py") in tops:
            return False
    return True


def is_project_folder(folder: str) -> bool:
    """Whether a package folder (a namespace package's portion) holds project source."""
    return _is_project_folder(folder, os.getcwd())


@cache
def _is_project_folder(folder: str, cwd: str) -> bool:
    path = Path(cwd, folder).resolve()
    if not _outside_libraries(path):
        return False
    for parent in path.parents:
        files, tops = installed(parent)
        prefix = path.relative_to(parent).as_posix() + "/"
        if prefix.split("/", 1)[0] in tops or any(f.startswith(prefix) for f in files):
            return False
    return True


def _outside_libraries(path: Path) -> bool:
    if path == _LOKKI or _LOKKI in path.parents or _STDLIB in path.parents:
        return False
    return not _INSTALLED_FOLDERS & set(path.parts)


@cache
def installed(folder: Path) -> tuple[frozenset[str], frozenset[str]]:
    """What the distributions installed in `folder` hold: the files their RECORDs list (relative
    to `folder`), and the top-level names of those that only say so (egg-info's top_level.txt)."""
    files: set[str] = set()
    tops: set[str] = set()
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith((".dist-info", ".egg-info")) and e.is_dir()]
    except OSError:
        return frozenset(), frozenset()
    for entry in entries:
        meta = Path(entry.path)
        try:
            with open(meta / "RECORD", newline="", encoding="utf-8") as record:
                files.update(row[0] for row in csv.reader(record) if row and not row[0].startswith("../"))
            continue
        except (OSError, UnicodeDecodeError, csv.Error):
            pass
        with contextlib.suppress(OSError, UnicodeDecodeError):
            tops.update(line.strip() for line in (meta / "top_level.txt").read_text().splitlines() if line.strip())
    return frozenset(files), frozenset(tops)
