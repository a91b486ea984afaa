"""Resolve FLOW_REF (`path/to/file.py[:flow]` or `package.module[:flow]`) to flows."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType

from lokki_sam.dsl import Flow
from lokki_sam.errors import LokkiError
from lokki_sam.tracebacks import is_own_file

_LIBRARY_DIRS = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def split_ref(ref: str) -> tuple[str, str | None]:
    target, sep, name = ref.rpartition(":")
    # A Windows drive letter ("C:\\x.py") is not a flow name.
    if not sep or (len(target) == 1 and target.isalpha()) or "/" in name or "\\" in name:
        return ref, None
    return target, (name or None)


FLOW_REF_HINT = "FLOW_REF is path/to/file.py[:flow] or package.module[:flow]"


def check_ref(ref: str) -> None:
    """Refuse FLOW_REFs that cannot name a flow, saying what is wrong with them."""
    if "::" in ref:
        fixed = ref.replace("::", ":")
        raise LokkiError(f"FLOW_REF {ref!r} has '::'", hint=f"one ':' separates the file and the flow: {fixed}")
    target, _ = split_ref(ref)
    path = Path(target)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.py"))[:5]
        raise LokkiError(
            f"{target} is a folder, not a flow module",
            hint=f"{FLOW_REF_HINT}; Python files there: {', '.join(found) or 'none'}",
        )
    if path.suffix and path.suffix != ".py" and path.is_file():
        raise LokkiError(f"{target} is not a Python file (.py)", hint=FLOW_REF_HINT)


def load_module(target: str, code_root: Path | None = None) -> ModuleType:
    """Import a module by file path or dotted name; user import errors become LokkiErrors.

    A file inside `code_root` (the functions' CodeUri, when the caller knows it) is imported under
    its dotted path from there, `etl.flow` for `src/etl/flow.py`: the name the Lambda imports it
    under, unique for every file (two `flow.py` in different folders are two modules). Any other
    file is imported under its name from the nearest folder that is not a package (`flow`)."""
    check_ref(target)
    is_path = target.endswith(".py") or "/" in target or "\\" in target
    if not is_path and not all(part.isidentifier() for part in target.split(".")):
        raise LokkiError(f"{target!r} is neither a .py file nor a module name", hint=FLOW_REF_HINT)
    if is_path:
        path = Path(target)
        if not path.is_file():
            raise LokkiError(f"file not found: {target}", hint="give a path to a .py file or a module name")
        module_name, search_root = _module_name_for(path.resolve(), code_root)
        # The file's own folder must win over any other folder holding a module of that name.
        if str(search_root) in sys.path:
            sys.path.remove(str(search_root))
        sys.path.insert(0, str(search_root))
        _forget_other_user_module(module_name, path.resolve(), search_root)
    else:
        module_name = target
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except LokkiError as exc:  # a flow or step declared wrongly: name the user's line too
        line = _user_line(exc)
        exc.where = ": ".join(part for part in (line, exc.where) if part) or f"module {module_name}"
        raise
    except ModuleNotFoundError as exc:
        if not is_path and exc.name and module_name.startswith(exc.name):
            raise LokkiError(
                f"module not found: {module_name}",
                hint="check the name, or give a file path like flows/my_flow.py",
            ) from None
        failed = _import_failed(module_name, exc)
        sibling = exc.name and is_path and (Path(target).parent / f"{exc.name.split('.')[0]}.py").is_file()
        if sibling and "." in module_name:  # `import helpers` next to a flow imported from CodeUri
            package = module_name.rpartition(".")[0]
            failed.hint = (
                f"{module_name} is imported from the functions' CodeUri, as the Lambda imports it, where "
                f"{exc.name} is {package}.{exc.name}: write `from {package} import {exc.name}`"
            )
        raise failed from None
    except Exception as exc:  # the user's module raised while importing
        raise _import_failed(module_name, exc) from None
    if is_path and Path(getattr(module, "__file__", "") or "").resolve() != Path(target).resolve():
        raise LokkiError(
            f"{target} is importable only as '{module_name}', and that name is already taken by "
            f"{getattr(module, '__file__', None) or 'a built-in module'}",
            hint="rename the file (or its package) so that its module name is unique",
        )
    return module


def _forget_other_user_module(module_name: str, path: Path, search_root: Path) -> None:
    """Drop a cached module of the same name loaded from another user file (two projects'
    `flow.py` imported from their own folders), so `path` itself is imported. Graphs already built
    from the dropped module keep it (FlowGraph.module_object, source_file). A module, or a package,
    already loaded from this very place is kept (its state is the flow's). Standard-library and
    installed modules are never evicted: the check after import refuses those names instead."""
    top = module_name.split(".")[0]
    own_file = getattr(sys.modules.get(module_name), "__file__", None)
    if own_file and Path(own_file).resolve() == path:
        return
    cached_file = getattr(sys.modules.get(top), "__file__", None)
    if not cached_file or cached_file.startswith(_LIBRARY_DIRS):
        return
    expected = search_root / top / "__init__.py" if top != module_name else path
    if Path(cached_file).resolve() == expected.resolve():
        return
    for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[name]


def _user_line(exc: BaseException) -> str | None:
    """`file:line` of the innermost frame of the user's own code in exc's traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename and not is_own_file(f.filename)]
    # Point at the user's own line, not at the stdlib or a library it called.
    own = [f for f in user if not f.filename.startswith(_LIBRARY_DIRS)]
    user = own or user
    return f"{user[-1].filename}:{user[-1].lineno}" if user else None


def _import_failed(module_name: str, exc: BaseException) -> LokkiError:
    where = _user_line(exc) or module_name
    return LokkiError(
        f"importing {module_name} failed: {type(exc).__name__}: {exc}",
        where=where,
        hint="fix the error above; `python -c 'import " + module_name + "'` shows the full traceback",
    )


def _module_name_for(path: Path, code_root: Path | None = None) -> tuple[str, Path]:
    """Dotted module name for a file and the folder it is imported from: relative to `code_root`
    when the file is inside it (namespace packages included), else walking up through packages
    (folders with __init__.py)."""
    if code_root is not None and path.is_relative_to(code_root.resolve()):
        root = code_root.resolve()
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts and parts[-1] == "__init__":
            parts.pop()
        if parts and all(part.isidentifier() for part in parts):
            return ".".join(parts), root
    parts = [path.stem]
    parent = path.parent
    while (parent / "__init__.py").is_file():
        parts.insert(0, parent.name)
        parent = parent.parent
    return ".".join(parts), parent


def flows_in(module: ModuleType) -> dict[str, Flow]:
    """Flows defined in `module`, by flow name, in definition order; two flows of one name are refused."""
    found: dict[str, Flow] = {}
    for value in vars(module).values():
        if isinstance(value, Flow) and value.func.__module__ == module.__name__:
            other = found.setdefault(value.name, value)
            if other is not value:
                raise LokkiError(
                    f"module {module.__name__} defines two flows named '{value.name}' "
                    f"(functions {other.func.__name__} and {value.func.__name__})",
                    where=getattr(module, "__file__", None) or module.__name__,
                    hint="flow names are unique: give one another name with @flow(name=...)",
                )
    return found


def load_flows(ref: str, code_root: Path | None = None) -> list[Flow]:
    """All flows FLOW_REF names: one if it names a flow, else every flow in the module
    (`code_root`: see `load_module`)."""
    check_ref(ref)
    target, name = split_ref(ref)
    module = load_module(target, code_root)
    found = flows_in(module)
    if name is not None:
        if name in found:
            return [found[name]]
        by_attr = getattr(module, name, None)
        if isinstance(by_attr, Flow):
            return [by_attr]
        raise LokkiError(
            f"no flow '{name}' in {target}",
            hint=f"flows there: {', '.join(found) or 'none (decorate a function with @flow)'}",
        )
    if not found:
        raise LokkiError(f"no flow in {target}", hint="decorate a function with @flow")
    return list(found.values())


def load_flow(ref: str) -> Flow:
    """Exactly one flow: the named one, or the module's only flow."""
    flows = load_flows(ref)
    if len(flows) > 1:
        target, _ = split_ref(ref)
        names = ", ".join(f.name for f in flows)
        raise LokkiError(
            f"{target} defines several flows ({names}); choose one",
            hint=f"{target}:{flows[0].name}",
        )
    return flows[0]
