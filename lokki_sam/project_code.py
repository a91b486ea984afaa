"""The user's project: which files it is, and the project modules a module reaches.

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

A project module is described with every project module it reaches through its imports
(`ModuleClosures`), found without importing anything, as one set of file descriptions.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.machinery
import json
import os
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from lokki_sam import source

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


# ---------------------------------------------------------------------------------- modules

# Folders below a package that are not its code: installed libraries, caches, and what `sam build`
# leaves out of a function (aws-lambda-builders' python_pip EXCLUDED_FILES: virtualenvs, htmlcov...),
# so a package is described from the same files here and in the Lambda. Hidden folders too.
_PRUNED = frozenset(
    [
        *("__pycache__", "node_modules", "site-packages", "dist-packages"),
        *("htmlcov", "venv", "venv.bak", "env", "env.bak", "ENV"),
    ]
)
_PRUNED_SUFFIXES = (".egg-info", ".egg", ".dist-info")


@dataclass(frozen=True)
class Location:
    """Where a module's code is: its file, and for a package the folders it spans."""

    name: str
    file: str | None
    folders: tuple[str, ...] | None

    @staticmethod
    def of(module: types.ModuleType) -> Location:
        path = getattr(module, "__path__", None)
        file = getattr(module, "__file__", None)
        return Location(module.__name__, file if isinstance(file, str) else None, tuple(path) if path else None)

    @property
    def key(self) -> tuple[str | None, tuple[str, ...] | None]:
        return (self.file, self.folders)


@dataclass
class ModuleClosures:
    """Project modules, each described by the files of every project module it reaches through
    its imports (itself included): one sorted set of (name in its package, syntax digest), the
    same wherever the project is copied. Shared by the describers of one flow."""

    _described: dict[tuple[str | None, tuple[str, ...] | None], str | None] = field(default_factory=dict)
    _found: dict[str, Location | None] = field(default_factory=dict)

    def describe_module(self, module: types.ModuleType) -> str | None:
        return self.describe(Location.of(module))

    def describe_name(self, name: str) -> str | None:
        """The module an import of `name` gives (without importing it), if it is project code."""
        location = self.find(name) if name else None
        return self.describe(location) if location is not None else None

    def describe(self, start: Location) -> str | None:
        if start.key in self._described:
            return self._described[start.key]
        if not _is_project(start):
            self._described[start.key] = None
            return None
        reached = {start.key}
        todo = [start]
        files: set[tuple[str, str]] = set()
        while todo:
            location = todo.pop()
            for name, path, package in _files_of(location):
                src = source.source_file(path)
                files.add((name, src.digest if src is not None else "no source"))
                for _, module in candidates(src.imports if src is not None else [], package):
                    other = self.find(module)
                    if other is not None and other.key not in reached and _is_project(other):
                        reached.add(other.key)
                        todo.append(other)
        described = source.digest(json.dumps(sorted(files)))
        self._described[start.key] = described
        return described

    def find(self, name: str) -> Location | None:
        """The module `import name` gives: the loaded one, else the one the path finder would
        load (nothing is imported to find it)."""
        if name not in self._found:
            self._found[name] = self._find(name)
        return self._found[name]

    def _find(self, name: str) -> Location | None:
        module = sys.modules.get(name)
        if module is not None:
            return Location.of(module)
        parent, _, _ = name.rpartition(".")
        try:
            if parent:
                outer = self.find(parent)
                if outer is None or outer.folders is None:
                    return None
                spec = importlib.machinery.PathFinder.find_spec(name, list(outer.folders))
            else:
                spec = importlib.machinery.PathFinder.find_spec(name)
        except (ImportError, ValueError, OSError):
            return None
        if spec is None:
            return None
        folders = spec.submodule_search_locations
        file = spec.origin if spec.has_location else None
        return Location(name, file, tuple(folders) if folders is not None else None)


def _is_project(location: Location) -> bool:
    if location.file is not None:
        return is_project_file(location.file)
    return any(is_project_folder(folder) for folder in location.folders or ())


def _files_of(location: Location) -> Iterator[tuple[str, str, str]]:
    """(name in its package, path, package its imports are relative to) of a module's files; a
    package's are all the .py files below it, submodules imported later included."""
    if location.folders is None:
        if location.file is not None:
            yield Path(location.file).name, location.file, location.name.rpartition(".")[0]
        return
    for folder in location.folders:
        for path in _python_files(folder):
            if not is_project_file(path):
                continue
            relative = Path(path).relative_to(folder)
            package = ".".join([location.name, *relative.parent.parts])
            yield relative.as_posix(), path, package


def _python_files(folder: str) -> list[str]:
    found: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if d not in _PRUNED and not d.startswith(".") and not d.endswith(_PRUNED_SUFFIXES)
        )
        found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))
    return found


def candidates(
    found: Iterable[tuple[int, str, tuple[str, ...]]], package: str
) -> Iterator[tuple[tuple[int, str, str], str]]:
    """(what the import says, absolute module name) for each module an import may load:
    `from pkg import name` loads pkg, and pkg.name when that is a submodule."""
    for level, module, names in found:
        base = absolute((level, module), package)
        if not base:
            continue  # a relative import outside a package: it fails at run time anyway
        yield (level, module, ""), base
        for name in names:
            if name != "*":
                yield (level, module, name), f"{base}.{name}"


def absolute(imports: tuple[int, str], package: str) -> str:
    """The absolute name of the module `from <level dots><name> import ...` reads in `package`."""
    level, name = imports
    if not level:
        return name
    parts = package.split(".") if package else []
    if level - 1 >= len(parts):
        return ""  # above the top-level package: the import fails at run time
    parent = ".".join(parts[: len(parts) - (level - 1)])
    return f"{parent}.{name}" if name else parent


def package_of(namespace: Mapping[str, Any]) -> str:
    package = namespace.get("__package__")
    if isinstance(package, str):
        return package
    spec = namespace.get("__spec__")
    if spec is not None and isinstance(getattr(spec, "parent", None), str):
        return str(spec.parent)
    return str(namespace.get("__name__", "")).rpartition(".")[0]
