"""Flow identity: deterministic fingerprints of what determines a flow's results.

A node's fingerprint covers its step's code: the function's source, plus the source of the
functions and classes it refers to, the module-level statements that bind or change the variables
it reads (their text, not their values: `TABLE = os.environ.get("TABLE")` has another value in the
Lambda), the values in the closure of a function a factory made (by value: a machine-dependent one
makes the runtime refuse payloads, loudly), and the other modules of the user's project it uses
(see `_is_project_module`). It also covers its bound arguments, the declarations of the flow
parameters it receives, how it gets its input, and the fingerprint of the node that feeds it. So a
change anywhere upstream changes every fingerprint downstream, and the key layout (`layout.py`)
stores each output under its node's fingerprint: an output computed by other code or from other
inputs can never be found again.

The flow's fingerprint adds the graph's structure, the map and step options and the parameter
declarations: it is what the state machine sends in every payload and what the runtime compares
with its own code. Everything is computed from source text, never bytecode, and from values only
where no text holds them (closures, code without source), so the generator (any Python, any
machine) and the Lambda runtime (the template's Python) agree.

Not covered: libraries (the standard library, installed distributions, lokki-sam), modules from
outside the project's folder, and what code reads at run time or import time (files, services,
environment variables).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import json
import sys
import textwrap
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from lokki_sam.ir import Const, FlowGraph, MapBlock, Node, ParamRef
from lokki_sam.params import MISSING, Param

LENGTH = 16  # hex characters kept: 64 bits, short in keys and payloads, collision-free in practice
_SIMPLE = (type(None), bool, int, float, complex, str, bytes)


@dataclass(frozen=True)
class Fingerprints:
    """The flow's fingerprint and one per node id."""

    flow: str
    nodes: Mapping[str, str]

    def changes(self, recorded: Mapping[str, str]) -> dict[str, str]:
        """How the nodes differ from `recorded` (node id -> fingerprint): id -> new/changed/removed."""
        out: dict[str, str] = {}
        for node_id, fp in self.nodes.items():
            if node_id not in recorded:
                out[node_id] = "new"
            elif recorded[node_id] != fp:
                out[node_id] = "changed"
        out.update({node_id: "removed" for node_id in recorded if node_id not in self.nodes})
        return out


def describe_changes(changes: Mapping[str, str]) -> str:
    """`step 'add_title' is new; step 'flap' changed` (in the order given)."""
    return "; ".join(f"step '{node}' {'is new' if what == 'new' else what}" for node, what in changes.items())


def compute(graph: FlowGraph) -> Fingerprints:
    codes: dict[str, str] = {}
    nodes: dict[str, str] = {}

    def code(node: Node) -> str:
        if node.step.name not in codes:
            codes[node.step.name] = code_fingerprint(node.step.func)
        return codes[node.step.name]

    def node_fp(node: Node, input_kind: str, upstream: str | None) -> str:
        bindings = [(key, _binding(value, graph.params)) for key, value in node.bindings]
        # Whether a map fans out over the output decides how it is stored (items, or one object).
        feeds_map = graph.map_fed_by(node.id) is not None
        fp = _hash(["node", code(node), bindings, input_kind, upstream, feeds_map])
        nodes[node.id] = fp
        return fp

    previous: str | None = None
    for stage in graph.stages:
        if isinstance(stage, MapBlock):
            upstream = nodes[stage.source]
            for position, node in enumerate(stage.nodes):
                upstream = node_fp(node, "map item" if position == 0 else "next", upstream)
            previous = upstream
        else:
            fed_by_map = stage.input_from is not None and isinstance(graph.get(stage.input_from), MapBlock)
            kind = "first" if stage.input_from is None else ("map results" if fed_by_map else "next")
            previous = node_fp(stage, kind, previous if stage.input_from is not None else None)
    structure = [
        [stage.id, [n.id for n in stage.nodes], stage.source, _canonical(stage.options)]
        if isinstance(stage, MapBlock)
        else stage.id
        for stage in graph.stages
    ]
    options = {step.name: _step_options(step.options) for step in graph.steps}
    flow = _hash(["flow", graph.name, [_param(p) for p in graph.params], structure, nodes, options, graph.schedule])
    return Fingerprints(flow, nodes)


# ---------------------------------------------------------------------------------- code


def code_fingerprint(func: Callable[..., Any]) -> str:
    """The step function's source and what it refers to in its own module and project."""
    return _hash(["code", _code_parts(func, set(), _project_root(func))])


def _code_parts(obj: Any, seen: set[Any], root: Path | None) -> Any:
    if id(obj) in seen:
        return ["seen", getattr(obj, "__qualname__", "")]
    seen.add(id(obj))
    source = _source(obj)
    code = getattr(obj, "__code__", None)
    if source is None and code is None:
        return ["object", repr(obj)]
    module = getattr(obj, "__module__", None)
    namespace = getattr(obj, "__globals__", None)
    if namespace is None and module is not None:
        namespace = vars(inspect.getmodule(obj) or types.ModuleType(module))
    refs = []
    # Without source (interactive code) the bytecode stands in: stable for one Python version.
    used = _names_used(source) if source is not None else set(code.co_names) if code is not None else set()
    for name in sorted(used):
        value = (namespace or {}).get(name, _NOT_FOUND)
        if value is _NOT_FOUND:
            continue
        part = _name_parts(name, value, module, seen, root)
        if part is not _SKIP:
            refs.append([name, part])
    # A function made by a factory (`make(3)`) reads the factory's arguments from its closure:
    # their values are as much its code as its source (plain values exactly, code by its parts).
    for name, cell in zip(code.co_freevars if code else (), getattr(obj, "__closure__", None) or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue
        part = _reference_parts(value, module, seen, root)
        if part is _VARIABLE:
            part = _value_parts(value, module, seen, root)
        if part is not _SKIP:
            refs.append(["closure", name, part])
    return [source if source is not None else ["bytecode", code.co_code.hex() if code else ""], refs]


def _name_parts(name: str, value: Any, module: str | None, seen: set[Any], root: Path | None) -> Any:
    """A global name code reads: a function, class or project module by its source; a variable
    by the module-level statements that bind it (`TABLE = os.environ.get("TABLE", "dev")`), never
    by its value, which may differ between the generator and the Lambda (its environment, its
    files). Without the module's source, plain values stand in."""
    part = _reference_parts(value, module, seen, root)
    if part is not _VARIABLE:
        return part
    namespace_module = sys.modules.get(module or "")
    bindings = _bindings_of(namespace_module)
    if bindings is None or name not in bindings:
        return _value_parts(value, module, seen, root)
    if (module, name) in seen:
        return ["seen", name]
    seen.add((module, name))
    parts = []
    for binding in bindings[name]:
        if binding.imports is not None:  # `from helpers import CONFIG`: the project module it comes from
            source_module = sys.modules.get(_absolute(binding.imports, namespace_module))
            if _is_project_module(source_module, root):
                parts.append(["from", _module_parts(source_module, seen, root)])  # type: ignore[arg-type]
                continue
        refs = []
        for used in binding.loads:
            used_value = vars(namespace_module).get(used, _NOT_FOUND) if namespace_module else _NOT_FOUND
            if used_value is not _NOT_FOUND and used != name:
                used_part = _name_parts(used, used_value, module, seen, root)
                if used_part is not _SKIP:
                    refs.append([used, used_part])
        parts.append([binding.text, refs])
    return ["variable", parts]


def _reference_parts(value: Any, module: str | None, seen: set[Any], root: Path | None) -> Any:
    """The code or project module `value` is (its parts), `_SKIP` for a library's, `_VARIABLE`
    for anything that is not code (the caller describes it)."""
    # A step called as a plain function is its function; a decorated one (lru_cache, wraps) its own.
    target = value.func if isinstance(getattr(value, "func", None), types.FunctionType) else value
    if not isinstance(target, types.ModuleType | type) and callable(target) and hasattr(target, "__wrapped__"):
        with contextlib.suppress(ValueError):  # a cycle of __wrapped__
            target = inspect.unwrap(target)
    if isinstance(target, types.FunctionType | type):
        own = module is not None and getattr(target, "__module__", None) == module
        if own or _is_project_module(sys.modules.get(getattr(target, "__module__", "") or ""), root):
            return _code_parts(target, seen, root)
        return _SKIP
    if isinstance(value, types.ModuleType):
        return _module_parts(value, seen, root) if _is_project_module(value, root) else _SKIP
    return _VARIABLE


def _value_parts(value: Any, module: str | None, seen: set[Any], root: Path | None) -> Any:
    """A plain value, or a list/tuple/set/dict of plain values and the project's functions (a
    dispatch table), described exactly; `_SKIP` for anything else."""
    if isinstance(value, _SIMPLE):
        return _canonical(value)
    if isinstance(value, list | tuple | set | frozenset | dict):
        if id(value) in seen:  # a container that holds itself
            return ["seen", type(value).__name__]
        seen.add(id(value))
        pairs = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        described = []
        for key, item in pairs:
            key_part = _value_parts(key, module, seen, root)
            item_part = _reference_parts(item, module, seen, root)
            if item_part is _VARIABLE:
                item_part = _value_parts(item, module, seen, root)
            if key_part is _SKIP or item_part is _SKIP:
                return _SKIP
            described.append([key_part, item_part])
        if isinstance(value, set | frozenset | dict):
            described.sort(key=_dump)
        return [type(value).__name__, described]
    return _SKIP


def _module_parts(module: types.ModuleType, seen: set[Any], root: Path | None) -> Any:
    """A project module a step uses (`import helpers`): its file's bytes (a package's: every .py
    file in it, submodules imported later included), and those of the project modules it imports
    (`import x`, `from x import y`, `from . import y`), transitively."""
    if id(module) in seen:
        return ["seen", module.__name__]
    seen.add(id(module))
    file = Path(module.__file__ or "")
    files = sorted(file.parent.rglob("*.py")) if file.name == "__init__.py" else [file]
    digest = hashlib.sha256()
    imported: set[str] = set()
    for path in files:
        data = path.read_bytes()
        digest.update(f"{path.relative_to(file.parent)}\0{len(data)}\0".encode() + data)
        imported |= _imported_modules(data, module)
    refs = []
    for name in sorted(imported):
        other = sys.modules.get(name)
        if other is not None and other is not module and _is_project_module(other, root):
            refs.append([name, _module_parts(other, seen, root)])
    return ["module", digest.hexdigest(), refs]


def _imported_modules(source: bytes, module: types.ModuleType) -> set[str]:
    """Names of the modules `source` imports (and of the submodules `from package import name` may mean)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # not Python source (a sourceless .pyc)
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute((node.level, node.module or ""), module)
            names.add(base)
            names.update(f"{base}.{alias.name}".strip(".") for alias in node.names)
    return {name for name in names if name}


_NOT_FOUND = object()
_SKIP = object()
_VARIABLE = object()


class Binding(NamedTuple):
    """A module-level statement that binds or changes a name: its text, the names it reads, and
    for an import the (level, module) it imports from."""

    text: str
    loads: tuple[str, ...]
    imports: tuple[int, str] | None


def _bindings_of(module: types.ModuleType | None) -> dict[str, tuple[Binding, ...]] | None:
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    try:
        source = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return _parse_bindings(source)


@cache
def _parse_bindings(source: str) -> dict[str, tuple[Binding, ...]] | None:
    """Every name used at module level (in if/try/with/for blocks too, not in functions or
    classes) -> the statements naming it, in order: what binds it, and what changes it in place.
    The text is the source's own (never ast.unparse, whose output differs between Pythons)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    found: dict[str, list[Binding]] = {}

    def add(name: str, binding: Binding) -> None:
        found.setdefault(name, []).append(binding)

    def visit(statements: list[ast.stmt]) -> None:
        for stmt in statements:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            text = ast.get_source_segment(source, stmt) or ""
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                for alias in stmt.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    if isinstance(stmt, ast.ImportFrom):
                        add(bound, Binding(text, (), (stmt.level, stmt.module or "")))
                    else:
                        add(bound, Binding(text, (), (0, alias.name if alias.asname else bound)))
            elif isinstance(stmt, ast.If | ast.While | ast.Try | ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):
                if isinstance(stmt, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):  # the loop or `as` names
                    heads = [stmt.target] if isinstance(stmt, ast.For | ast.AsyncFor) else stmt.items
                    loads = tuple(sorted(_loaded_names(stmt)))
                    for name in sorted({n.id for head in heads for n in ast.walk(head) if isinstance(n, ast.Name)}):
                        add(name, Binding(text, loads, None))
                for block in (stmt.body, getattr(stmt, "orelse", []), getattr(stmt, "finalbody", [])):
                    visit(block)
                for handler in getattr(stmt, "handlers", []):
                    visit(handler.body)
            else:  # every statement naming it: `X = ...`, `X += ...`, `X["k"] = ...`, `X.update(...)`
                loads = tuple(sorted(_loaded_names(stmt)))
                for name in sorted({n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}):
                    add(name, Binding(text, loads, None))

    visit(tree.body)
    return {name: tuple(bindings) for name, bindings in found.items()}


def _absolute(imports: tuple[int, str], module: types.ModuleType | None) -> str:
    """The absolute name of the module `from <level dots><name> import ...` reads, in `module`."""
    level, name = imports
    if not level:
        return name
    package = getattr(module, "__package__", None) or ""
    parent = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{parent}.{name}".strip(".") if name else parent


def _project_root(func: Callable[..., Any]) -> Path | None:
    """The folder the step's module is imported from: CodeUri's copy in the Lambda, the flow's
    folder (or above its package) locally. Other modules below it are the user's own code."""
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if module is None or not file or _is_library_name(module.__name__):
        return None
    path = Path(file).resolve()
    depth = module.__name__.count(".") + (path.name == "__init__.py")
    return path.parents[depth] if depth < len(path.parents) else None


def _is_project_module(module: types.ModuleType | None, root: Path | None) -> bool:
    """A module of the user's project: below the step module's folder, and neither the standard
    library, lokki-sam, nor an installed distribution. In the Lambda, `sam build` installs the
    requirements next to the code, with their .dist-info; locally they are in site-packages.
    Both are libraries, so the generator and the runtime agree on what is the project's."""
    file = getattr(module, "__file__", None)
    if module is None or root is None or not file or _is_library_name(module.__name__):
        return False
    path = Path(file).resolve()
    if not path.is_relative_to(root) or {"site-packages", "dist-packages"} & set(path.parts):
        return False
    top = module.__name__.split(".")[0]
    return top not in _installed_top_levels(str(root))


def _is_library_name(name: str) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or top == "lokki_sam" or top in sys.builtin_module_names


@cache
def _installed_top_levels(folder: str) -> frozenset[str]:
    """Import names of the distributions installed in `folder` (pip --target, as sam build does)."""
    tops: set[str] = set()
    for meta in [*Path(folder).glob("*.dist-info"), *Path(folder).glob("*.egg-info")]:
        top_level = meta / "top_level.txt"
        if top_level.is_file():
            tops.update(line.strip() for line in top_level.read_text().splitlines() if line.strip())
        record = meta / "RECORD"
        if record.is_file():
            for line in record.read_text().splitlines():
                first = line.split(",", 1)[0].split("/", 1)[0]
                if first and first != ".." and not first.endswith((".dist-info", ".data")):
                    tops.add(first.removesuffix(".py"))
    return frozenset(tops)


def _source(obj: Any) -> str | None:
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    lines = [line.rstrip() for line in textwrap.dedent(text).splitlines()]
    return "\n".join(line for line in lines if line)


def _names_used(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a lambda's source line, say: its text is still in the hash
        return set()
    return _loaded_names(tree)


def _loaded_names(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


# ---------------------------------------------------------------------------- values


def _binding(binding: Any, params: tuple[Param, ...]) -> Any:
    if isinstance(binding, ParamRef):
        declared = next((p for p in params if p.name == binding.name), None)
        return ["param", _param(declared) if declared else binding.name]
    if isinstance(binding, Const):
        return ["const", _canonical(binding.value)]
    return ["binding", _canonical(binding)]


def _param(param: Param) -> Any:
    default = None if param.default is MISSING else _canonical(param.default)
    return [param.name, _type_text(param.annotation), param.default is MISSING, default]


def _type_text(annotation: Any) -> str:
    # Qualified names only: a flow module's own module name may differ between the generator and
    # the Lambda (how it was imported), its classes must not change the fingerprint for that.
    if annotation is None:
        return ""
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation)


# How a function is packaged, and whether Lambda or Batch runs the step, change nothing a run
# computes: those options are left out, so the fingerprints of flows written before they existed
# stay, and so do those of a flow packaged as images by config or `@flow(package=...)` (a step's
# own decorator is part of its source anyway).
_NOT_FINGERPRINTED = ("package", "compute", "cpu", "gpu", "platform")


def _step_options(options: Any) -> Any:
    kind, pairs = _canonical(options)
    return [kind, [pair for pair in pairs if pair[0] not in _NOT_FINGERPRINTED]]


def _canonical(value: Any) -> Any:
    """A JSON-able, deterministic description of a value (sets sorted, floats exact, objects by fields)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, list | tuple):
        return [type(value).__name__, [_canonical(v) for v in value]]
    if isinstance(value, set | frozenset):
        return ["set", sorted((_canonical(v) for v in value), key=_dump)]
    if isinstance(value, Mapping):
        items = sorted(([_canonical(k), _canonical(v)] for k, v in value.items()), key=_dump)
        return ["dict", items]
    if isinstance(value, type):
        return ["type", value.__qualname__]
    if isinstance(value, ParamRef):
        return ["param", value.name]
    if is_dataclass(value) and not isinstance(value, type):
        return [_type_text(type(value)), [[f.name, _canonical(getattr(value, f.name))] for f in fields(value)]]
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return [_type_text(type(value)), _canonical(state)]
    text = repr(value)
    if " at 0x" in text:  # an identity repr would differ in every process
        return [_type_text(type(value))]
    return [_type_text(type(value)), text]


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _hash(parts: Any) -> str:
    return hashlib.sha256(_dump(parts).encode()).hexdigest()[:LENGTH]
