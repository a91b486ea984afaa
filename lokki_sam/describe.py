"""What determines a step's result, as plain data: the describer behind `fingerprint.py`.

A step is described by the objects the interpreter will run, never by names that may point
elsewhere (two files named flow.py, a module imported as `flow` here and `etl.flow` there):

- **code** (a function, a class, the step function itself) by its syntax tree (`source.py`:
  comments, blank lines and formatting do not count, string literals do), without lokki-sam's
  `@step` decorator (its options are not code; other decorators are). Then what the code reaches:
  - every global name it reads: project code (functions, classes, modules: `project_code.py`) by
    its own description, and every name also by the module-level statements that bind or change
    it (`TABLE = os.environ.get(...)`, `from pathlib import Path`), never by its value, which may
    differ in the Lambda (its environment, its files, its Python);
  - the modules it imports inside its body (`def s(): import helpers`), and the project modules
    a project module imports, as one set of file descriptions (namespace packages included);
  - its closure cells and its default values, by value (a factory's `def f(x, k=k)`).
- **values** (closure cells, defaults, a bound method's instance, `functools.partial` arguments,
  call-site constants) exactly: plain values as they are, containers element by element (sets and
  dicts sorted, so their order never depends on string hashing), functions and classes inside them
  as code, library functions and classes by their public name (`pathlib.Path`, whichever private
  module defines it), and any other object by what pickle would rebuild it from (`__reduce_ex__`:
  its class and state). An object that cannot be reduced (a lock, a socket, an open file, a
  generator) cannot be described: it is recorded as opaque (`Opaque`), and its place in the
  description holds only its type, so the generator and the runtime still agree.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from lokki_sam import source
from lokki_sam.dsl import Step, step
from lokki_sam.ir import ParamRef
from lokki_sam.params import MISSING, Param
from lokki_sam.project_code import ModuleClosures, absolute, candidates, is_project_file, package_of

MAX_OBJECTS = 100_000  # objects described in one value at most: beyond, it is opaque ("too large")
_SIMPLE = (type(None), bool, int, float, complex, str, bytes)
_SKIP = object()
_DESCRIPTORS = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
    types.MethodWrapperType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)


class Opaque(NamedTuple):
    """A value that cannot be described: where the step holds it, and what it is."""

    where: str  # "closure value `model`", "default of `conn`", "argument `k`"
    path: str  # where inside that value, "" for the value itself
    type_name: str  # the object that cannot be described
    outer: str  # the type of the value the step holds
    why: str = ""  # when it is not the object itself: "too large to describe"

    def text(self) -> str:
        held = f", which holds a {self.type_name} at `{self.path}`" if self.path else ""
        why = f", {self.why}" if self.why else ""
        return f"{self.where} (a {self.outer}{held}{why})"


@dataclass(frozen=True)
class _At:
    """Where a value being described sits, for the message if it cannot be described."""

    where: str
    outer: str
    path: str = ""

    def child(self, suffix: str) -> _At:
        return _At(self.where, self.outer, self.path + suffix)

    @staticmethod
    def top(where: str, value: Any) -> _At:
        return _At(where, public_name(type(value)))


class Describer:
    """Describes one step's code, or one value, as JSON-able data; `opaque` lists what it could not."""

    def __init__(self, modules: ModuleClosures | None = None, params: Mapping[str, Param] | None = None) -> None:
        self.opaque: list[Opaque] = []
        self._modules = modules or ModuleClosures()
        self._params = params or {}
        self._code_seen: set[int] = set()
        self._names_seen: set[tuple[int, str]] = set()
        self._active: set[int] = set()  # values being described: a value met again inside itself is a cycle
        self._alive: list[Any] = []  # keeps what was described alive, so no id is reused meanwhile
        self._sources: dict[int, source.SourceFile | None] = {}
        self._count = 0
        # The globals of the function whose values are being described: where a class met in them
        # (a dataclass default, a closure's instance) is looked for before its module's name.
        self._home: dict[str, Any] | None = None

    # ------------------------------------------------------------------ entry points

    def step(self, func: Any) -> Any:
        """The step's callable: a function, a bound method (with its instance), any callable."""
        if isinstance(func, types.MethodType):
            instance = func.__self__
            return ["method", self.value(func.__func__), self.value_at(instance, "its bound instance")]
        return self.value_at(func, "the step's callable")

    def value_at(self, value: Any, where: str) -> Any:
        """`value`, named `where` in messages if part of it cannot be described."""
        at = _At.top(where, value)
        try:
            return self.value(value, at)
        except RecursionError:
            return self._opaque(value, at, "nested too deeply")

    # ------------------------------------------------------------------ values

    def value(self, value: Any, at: _At | None = None) -> Any:
        at = at or _At.top("a value", value)
        kind = type(value)
        if kind in _SIMPLE:
            return _simple(value)
        self._count += 1
        if self._count > MAX_OBJECTS:  # said once: what follows is past the limit too
            return self._opaque(value, at, "too large to describe") if self._count == MAX_OBJECTS + 1 else ["too large"]
        if isinstance(value, ParamRef):
            return ["param", self.param(value.name)]
        if isinstance(value, Step):
            return self.value(value.func, at)
        if isinstance(value, types.FunctionType):
            return self.function(value)
        if isinstance(value, type):
            return self.klass(value, self._home)
        if isinstance(value, types.ModuleType):
            own = self._modules.describe_module(value)
            return own if own is not None else ["library module", value.__name__]
        if isinstance(value, types.MethodType):
            return ["method", self.value(value.__func__, at), self.value(value.__self__, at.child(".__self__"))]
        if isinstance(value, functools.partial):
            return [
                "partial",
                self.value(value.func, at.child(".func")),
                self.value(value.args, at.child(".args")),
                self.value(value.keywords, at.child(".keywords")),
            ]
        if isinstance(value, types.BuiltinFunctionType):
            owner = value.__self__
            if owner is None or isinstance(owner, types.ModuleType):
                return ["library", public_name(value)]
            return ["builtin method", value.__name__, self.value(owner, at.child(".__self__"))]
        if isinstance(value, _DESCRIPTORS):
            return ["library", public_name(value)]
        if isinstance(value, staticmethod | classmethod):
            return [kind.__name__, self.value(value.__func__, at)]
        if isinstance(value, property):
            return ["property", *(self.value(f, at) for f in (value.fget, value.fset, value.fdel))]
        wrapped = _wrapped(value)
        if wrapped is not None and not _is_project_class(kind, self._home):  # functools.lru_cache's wrapper
            return ["wrapped", public_name(kind), self.value(wrapped, at.child(".__wrapped__"))]
        if id(value) in self._active:
            return ["cycle", public_name(kind)]
        self._active.add(id(value))
        self._alive.append(value)
        try:
            return self._data(value, kind, at)
        finally:
            self._active.discard(id(value))

    def _data(self, value: Any, kind: type, at: _At) -> Any:
        if kind is list or kind is tuple:
            return [kind.__name__, [self.value(v, at.child(f"[{i}]")) for i, v in enumerate(value)]]
        if kind is set or kind is frozenset:
            return [kind.__name__, sorted((self.value(v, at.child("{...}")) for v in value), key=canonical_json)]
        if kind is dict:
            return ["dict", self._items(value.items(), at, attributes=False)]
        return self._object(value, kind, at)

    def _object(self, value: Any, kind: type, at: _At) -> Any:
        """Any other object, by what pickle would rebuild it from: its reduction."""
        try:
            reduced = value.__reduce_ex__(4)
        except Exception:
            return self._opaque(value, at)
        if isinstance(reduced, str):  # a module-level singleton, pickled by name
            return ["global", self.value(kind, at), reduced]
        if not isinstance(reduced, tuple) or len(reduced) < 2:
            return self._opaque(value, at)
        self._alive.append(reduced)
        rebuild, args, state, listitems, dictitems = (*reduced, None, None, None)[:5]
        parts = ["object", self.value(rebuild, at), self.value(args, at)]
        if isinstance(state, dict):
            parts.append(["state", self._items(state.items(), at, attributes=True)])
        elif isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (__dict__, slots)
            dict_state = state[0].items() if isinstance(state[0], dict) else ()
            parts.append(["slots", self._items([*dict_state, *state[1].items()], at, attributes=True)])
        else:
            parts.append(self.value(state, at))
        if listitems is not None:
            parts.append([self.value(v, at.child(f"[{i}]")) for i, v in enumerate(list(listitems))])
        if dictitems is not None:
            parts.append(self._items(list(dictitems), at, attributes=False))
        return parts

    def _items(self, items: Iterable[tuple[Any, Any]], at: _At, *, attributes: bool) -> list[Any]:
        described = []
        for key, item in items:
            if attributes and isinstance(key, str):
                suffix = f".{key}"
            else:
                suffix = f"[{key!r}]" if type(key) in _SIMPLE else "[...]"
            described.append([self.value(key, at), self.value(item, at.child(suffix))])
        return sorted(described, key=canonical_json)

    def _opaque(self, value: Any, at: _At, why: str = "") -> Any:
        type_name = public_name(type(value))
        self.opaque.append(Opaque(at.where, at.path, type_name, at.outer, why))
        return ["opaque", type_name]

    def param(self, name: str) -> Any:
        """A flow parameter's declaration (name, type, default): what a binding of it depends on."""
        declared = self._params.get(name)
        if declared is None:
            return name
        default = None if declared.default is MISSING else self.value(declared.default)
        return [declared.name, type_text(declared.annotation), declared.default is MISSING, default]

    # ------------------------------------------------------------------ code

    def function(self, func: types.FunctionType) -> Any:
        code = func.__code__
        # exec'd code (`<string>`): by its source if registered (IPython's cells), else by the call
        # that made it, where a global name reaches it
        generated = code.co_filename.startswith("<")
        if not generated and not is_project_file(code.co_filename):
            return ["library", public_name(func)]
        if id(func) in self._code_seen:
            return ["seen", func.__qualname__]
        self._code_seen.add(id(func))
        self._alive.append(func)
        src = source.source_file(code.co_filename, func.__globals__)
        nodes = src.code_nodes(code) if src is not None else []
        body = (
            self._code(nodes, src, func.__globals__) if src is not None and nodes else ["no source", func.__qualname__]
        )
        home, self._home = self._home, func.__globals__
        try:
            return ["function", body, self._closure(func), self._defaults(func)]
        finally:
            self._home = home

    def klass(self, cls: type, home: dict[str, Any] | None = None) -> Any:
        file, namespace, lines = _class_home(cls, home)
        if file is None or namespace is None or not is_project_file(file):
            return ["library", public_name(cls)]
        if id(cls) in self._code_seen:
            return ["seen", cls.__qualname__]
        self._code_seen.add(id(cls))
        self._alive.append(cls)
        src = source.source_file(file, namespace)
        nodes = src.class_nodes(cls.__qualname__, lines) if src is not None else []
        if src is None or not nodes:  # made by a call (namedtuple, type(...)): by its parts
            bases = [self.value(base) for base in cls.__bases__ if base is not object]
            attributes = sorted(
                ([k, self.value(v)] for k, v in vars(cls).items() if not (k.startswith("__") and k.endswith("__"))),
                key=canonical_json,
            )
            return ["class", ["no source", cls.__qualname__], bases, attributes]
        return ["class", self._code(nodes, src, namespace)]

    def _code(self, nodes: Sequence[ast.AST], src: source.SourceFile, namespace: dict[str, Any]) -> Any:
        omit = _step_decorators(src.decorators(nodes), namespace)
        home = self._source_of(namespace)
        refs = []
        reads = src.reads(nodes, omit)
        for name in sorted(reads.names):
            if name in namespace:
                part = self.global_name(name, namespace, home)
                if part is not _SKIP:
                    refs.append([name, part])
        return [[src.digest_of(node, omit) for node in nodes], refs, self._imports(reads.imports, namespace)]

    def _closure(self, func: types.FunctionType) -> list[Any]:
        described = []
        cells = zip(func.__code__.co_freevars, func.__closure__ or (), strict=False)
        for name, cell in sorted(cells, key=lambda pair: pair[0]):
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not filled yet
                described.append([name, "empty"])
                continue
            described.append([name, self.value_at(value, f"closure value `{name}`")])
        return described

    def _defaults(self, func: types.FunctionType) -> list[Any]:
        code = func.__code__
        defaults = func.__defaults__ or ()
        names = code.co_varnames[: code.co_argcount][len(code.co_varnames[: code.co_argcount]) - len(defaults) :]
        described = [[name, self.value_at(v, f"default of `{name}`")] for name, v in zip(names, defaults, strict=True)]
        for name, value in sorted((func.__kwdefaults__ or {}).items()):
            described.append([name, self.value_at(value, f"default of `{name}`")])
        return described

    def global_name(self, name: str, namespace: dict[str, Any], home: source.SourceFile | None) -> Any:
        """A global name code reads: project code by its description, and every name by the
        module-level statements naming it; a value only where no statement binds it."""
        if name.startswith("__") and name.endswith("__"):
            return _SKIP  # __name__, __file__...: how the module was imported, not what it computes
        key = (id(namespace), name)
        if key in self._names_seen:
            return ["seen", name]
        self._names_seen.add(key)
        value = namespace[name]
        statements = [self._statement(s, name, namespace, home) for s in (home.bindings.get(name, ()) if home else ())]
        if _is_code(value):
            own = self._project_code(value, namespace)
            if own is not None:
                return ["code", own, statements]
            return ["binding", statements] if statements else ["library", _library_name(value)]
        if statements:
            return ["binding", statements]
        return ["value", self.value_at(value, f"global `{name}`")]

    def _project_code(self, value: Any, namespace: dict[str, Any]) -> Any:
        """The description of project code (None for a library's)."""
        if isinstance(value, Step):
            value = value.func
        if isinstance(value, types.FunctionType):
            file = value.__code__.co_filename
            return self.function(value) if file.startswith("<") or is_project_file(file) else None
        if isinstance(value, type):
            described = self.klass(value, namespace)
            return None if described[0] == "library" else described
        if isinstance(value, types.ModuleType):
            return self._modules.describe_module(value)
        wrapped = _wrapped(value)
        if wrapped is not None:
            inner = self._project_code(wrapped, namespace)
            return None if inner is None else ["wrapped", self.klass(type(value)), inner]
        return None

    def _statement(
        self, statement: source.Statement, name: str, namespace: dict[str, Any], home: source.SourceFile | None
    ) -> Any:
        parts: list[Any] = [statement.digest]
        if statement.imports is not None:
            described = self._modules.describe_name(absolute(statement.imports, package_of(namespace)))
            if described is not None:
                parts.append(["from", described])
        refs = []
        for used in statement.loads:
            if used != name and used in namespace:
                part = self.global_name(used, namespace, home)
                if part is not _SKIP:
                    refs.append([used, part])
        parts.append(refs)
        return parts

    def _imports(self, found: Iterable[tuple[int, str, tuple[str, ...]]], namespace: dict[str, Any]) -> list[Any]:
        """The project modules imported in a body (`import helpers` inside a function), by what the
        import says (relative imports stay relative: the package's name differs between places)."""
        package = package_of(namespace)
        described = []
        for written, name in candidates(found, package):
            module = self._modules.describe_name(name)
            if module is not None:
                described.append([list(written), module])
        return described

    def _source_of(self, namespace: dict[str, Any]) -> source.SourceFile | None:
        key = id(namespace)
        if key not in self._sources:
            file = namespace.get("__file__")
            self._sources[key] = source.source_file(file, namespace) if isinstance(file, str) else None
        return self._sources[key]


# ---------------------------------------------------------------------------------- helpers


def _step_decorators(decorators: Iterable[ast.expr], namespace: dict[str, Any]) -> frozenset[int]:
    """The ids of the decorators that are lokki-sam's `@step`: not code of what they decorate
    (`@step(memory=...)` sizes a Lambda; it computes nothing)."""
    omitted = set()
    for decorator in decorators:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if _static_value(target, namespace) is step:
            omitted.add(id(decorator))
    return frozenset(omitted)


def _static_value(expr: ast.expr, namespace: dict[str, Any]) -> Any:
    """What a name or a dotted name through modules refers to, without running anything."""
    if isinstance(expr, ast.Name):
        return namespace.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _static_value(expr.value, namespace)
        if isinstance(base, types.ModuleType):
            return vars(base).get(expr.attr)
    return None


def _is_code(value: Any) -> bool:
    if isinstance(value, Step | types.FunctionType | type | types.ModuleType | types.BuiltinFunctionType):
        return True
    return _wrapped(value) is not None


def _wrapped(value: Any) -> Any:
    """What a callable wrapper that is not a function (functools.lru_cache's) wraps, or None."""
    if isinstance(value, type) or not callable(value):
        return None
    state = getattr(value, "__dict__", None)
    return state.get("__wrapped__") if isinstance(state, dict) else None


def _library_name(value: Any) -> str:
    return value.__name__ if isinstance(value, types.ModuleType) else public_name(value)


def _class_home(cls: type, home: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None, list[int]]:
    """The file and module namespace a class was defined in, found from the class itself: its
    methods' code, else the namespace it was read from, else its module if that holds it."""
    file: str | None = None
    namespace: dict[str, Any] | None = None
    lines = []
    for attribute in vars(cls).values():
        func = attribute.__func__ if isinstance(attribute, staticmethod | classmethod) else attribute
        func = func.fget if isinstance(func, property) else func
        if not isinstance(func, types.FunctionType) or func.__code__.co_filename.startswith("<"):
            continue
        if not func.__code__.co_qualname.startswith(cls.__qualname__ + "."):
            continue  # a wrapper made elsewhere (dataclass's __repr__ is made in dataclasses.py)
        file = file or func.__code__.co_filename
        namespace = namespace or func.__globals__
        lines.append(func.__code__.co_firstlineno)
    if file is not None:
        return file, namespace, lines
    if home is not None and home.get("__name__") == cls.__module__ and _lookup(home, cls.__qualname__) is cls:
        found = home.get("__file__")
        return (found if isinstance(found, str) else None), home, []
    # Its module by name, if that is the module holding it (two files named flow.py share a name).
    named = sys.modules.get(cls.__module__)
    for module in [named, *(m for m in list(sys.modules.values()) if m is not named)]:
        if not isinstance(module, types.ModuleType) or module.__name__ != cls.__module__:
            continue
        if _lookup(vars(module), cls.__qualname__) is cls:
            found = getattr(module, "__file__", None)
            return (found if isinstance(found, str) else None), vars(module), []
    return None, None, []


def _is_project_class(cls: type, home: dict[str, Any] | None) -> bool:
    file, namespace, _ = _class_home(cls, home)
    return file is not None and namespace is not None and is_project_file(file)


def _lookup(namespace: Mapping[str, Any], qualname: str) -> Any:
    """`qualname` looked up in a namespace and then in classes' own dicts (nothing runs)."""
    if "<locals>" in qualname:
        return None
    first, *rest = qualname.split(".")
    value = namespace.get(first)
    for part in rest:
        value = vars(value).get(part) if isinstance(value, type) else None
    return value


def public_name(obj: Any) -> str:
    """`module.qualname` of a library function or class, by the shortest module that holds it
    (`pathlib.Path` on 3.13 too, where it is defined in `pathlib._local`)."""
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        owner = getattr(obj, "__objclass__", None) or getattr(obj, "__self__", None)
        module = getattr(owner, "__module__", None) if not isinstance(owner, types.ModuleType) else owner.__name__
    if not isinstance(module, str) or not module:
        return str(qualname)
    parts = module.split(".")
    for end in range(1, len(parts)):
        candidate = ".".join(parts[:end])
        loaded = sys.modules.get(candidate)
        if loaded is not None and _lookup(vars(loaded), qualname) is obj:
            return f"{candidate}.{qualname}"
    return f"{module}.{qualname}"


def type_text(annotation: Any) -> str:
    # Qualified names only: a flow module's own module name may differ between the generator and
    # the Lambda (how it was imported), its classes must not change the fingerprint for that.
    if annotation is None:
        return ""
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation)


def _simple(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -(2**53) < value < 2**53 else ["int", hex(value)]
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, complex):
        return ["complex", value.real.hex(), value.imag.hex()]
    if len(value) <= 64:
        return ["bytes", value.hex()]
    return ["bytes", len(value), hashlib.sha256(value).hexdigest()]


def canonical_json(value: Any) -> str:
    """One text for one description: what digests and sort orders are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
