"""Python source as the interpreter runs it, serialised the same on every Python.

Code is described by its syntax trees, not its text: comments, blank lines, line breaks,
indentation and redundant parentheses do not count; string literals count exactly (a blank line
inside a triple-quoted string is part of the string). `dump` serialises a tree itself instead of
using `ast.dump`, whose output differs between versions (3.12 adds `type_params`, 3.13 leaves out
empty fields): positions, `Constant.kind`, type comments and empty fields are left out, and an
f-string's literal parts are joined (3.12.1 adds empty ones), so Python 3.11, 3.12 and 3.13 give
one text for one source (checked on every file of the standard library and the dev dependencies).
"""

from __future__ import annotations

import ast
import hashlib
import json
import linecache
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from types import CodeType
from typing import Any

# Fields of compound statements that hold statements (or handlers and match cases holding them):
# a module-level statement inside one is described with the header around it.
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")
_NOT_CODE = frozenset({"kind", "type_comment"})


def dump(node: ast.AST, omit: frozenset[int] = frozenset(), fields: frozenset[str] = frozenset()) -> str:
    """`node` as text, equal on every Python for one source. `omit` holds the ids of nodes left
    out of the lists they are in (a decorator that is not code of the function); `fields` names
    fields of `node` itself left out (the bodies of a compound statement's header)."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, ast.AST):
            out.append(type(value).__name__ + "(")
            for field in value._fields:
                if field in _NOT_CODE or (value is node and field in fields):
                    continue
                item = getattr(value, field, None)
                if isinstance(value, ast.JoinedStr) and field == "values":
                    item = _joined(value.values)
                elif isinstance(item, list):
                    item = [i for i in item if id(i) not in omit]
                if (item is None and not isinstance(value, ast.Constant)) or item == []:
                    continue
                out.append(field + "=")
                walk(item)
                out.append(",")
            out.append(")")
        elif isinstance(value, list):
            out.append("[")
            for item in value:
                walk(item)
                out.append(",")
            out.append("]")
        else:
            out.append(literal(value))

    walk(node)
    return "".join(out)


def literal(value: Any) -> str:
    """A constant exactly, in a form every Python writes alike (ints in hex: no digit limit)."""
    if value is None or value is Ellipsis or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, complex):
        return f"complex({value.real.hex()},{value.imag.hex()})"
    if isinstance(value, bytes):
        return "b" + value.hex()
    raise TypeError(f"not a constant of Python source: {type(value).__name__}")


def _joined(values: list[ast.expr]) -> list[ast.expr]:
    """An f-string's parts with adjacent literal text joined and empty literal text dropped."""
    parts: list[ast.expr] = []
    text: list[str] = []
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            text.append(value.value)
            continue
        if "".join(text):
            parts.append(ast.Constant("".join(text)))
        text = []
        parts.append(value)
    if "".join(text):
        parts.append(ast.Constant("".join(text)))
    return parts


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def loaded_names(nodes: Iterable[ast.AST], omit: frozenset[int] = frozenset()) -> set[str]:
    """Names the code reads (global or not: the caller looks them up), outside omitted subtrees."""
    names: set[str] = set()
    for node in _walk(nodes, omit):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            names.add(node.id)
    return names


def imports(nodes: Iterable[ast.AST]) -> list[tuple[int, str, tuple[str, ...]]]:
    """The import statements in `nodes` (function bodies included): (level, module, names)."""
    found: set[tuple[int, str, tuple[str, ...]]] = set()
    for node in _walk(nodes, frozenset()):
        if isinstance(node, ast.Import):
            found.update((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add((node.level, node.module or "", tuple(alias.name for alias in node.names)))
    return sorted(found)


def _walk(nodes: Iterable[ast.AST], omit: frozenset[int]) -> Iterator[ast.AST]:
    todo = [n for n in nodes if id(n) not in omit]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node) if id(child) not in omit)


@dataclass(frozen=True)
class Reads:
    """What code reads: the names it loads, and the imports in it as (level, module, names)."""

    names: frozenset[str]
    imports: tuple[tuple[int, str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Statement:
    """A module-level statement that names a variable: the digest of its tree and of the headers
    of the blocks around it (`if`, `try`, `for`, `with`...), the names those read, and for an
    import the (level, module) it imports from."""

    digest: str
    loads: tuple[str, ...]
    imports: tuple[int, str] | None


class SourceFile:
    """One file's syntax tree, with what describing code needs from it found once."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self._digests: dict[tuple[int, frozenset[int]], str] = {}
        self._reads: dict[tuple[tuple[int, ...], frozenset[int]], Reads] = {}
        self._decorators: dict[tuple[int, ...], tuple[ast.expr, ...]] = {}

    def digest_of(self, node: ast.AST, omit: frozenset[int] = frozenset()) -> str:
        key = (id(node), omit)
        if key not in self._digests:
            self._digests[key] = digest(dump(node, omit))
        return self._digests[key]

    def reads(self, nodes: Sequence[ast.AST], omit: frozenset[int] = frozenset()) -> Reads:
        """The names `nodes` read and the modules they import (found once per file text)."""
        key = (tuple(id(n) for n in nodes), omit)
        if key not in self._reads:
            self._reads[key] = Reads(frozenset(loaded_names(nodes, omit)), tuple(imports(nodes)))
        return self._reads[key]

    def decorators(self, nodes: Sequence[ast.AST]) -> tuple[ast.expr, ...]:
        """Every decorator in `nodes`, of the definitions themselves and of those inside them."""
        key = tuple(id(n) for n in nodes)
        if key not in self._decorators:
            self._decorators[key] = tuple(
                decorator
                for node in _walk(nodes, frozenset())
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                for decorator in node.decorator_list
            )
        return self._decorators[key]

    @cached_property
    def digest(self) -> str:
        return self.digest_of(self.tree)

    @cached_property
    def imports(self) -> list[tuple[int, str, tuple[str, ...]]]:
        return imports([self.tree])

    @cached_property
    def _functions(self) -> dict[tuple[int, str], list[ast.AST]]:
        """(first line, name) -> the definitions starting there: a code object's co_firstlineno is
        its first decorator's line; every lambda is named `<lambda>`."""
        found: dict[tuple[int, str], list[ast.AST]] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found.setdefault((first, node.name), []).append(node)
            elif isinstance(node, ast.Lambda):
                found.setdefault((node.lineno, "<lambda>"), []).append(node)
        return found

    def code_nodes(self, code: CodeType) -> Sequence[ast.AST]:
        """The definitions of `code` (several lambdas on its line: all of them)."""
        return self._functions.get((code.co_firstlineno, code.co_name), [])

    @cached_property
    def _classes(self) -> dict[str, list[ast.ClassDef]]:
        found: dict[str, list[ast.ClassDef]] = {}

        def visit(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    found.setdefault(prefix + child.name, []).append(child)
                    visit(child, prefix + child.name + ".")
                elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    visit(child, prefix + child.name + ".<locals>.")
                else:
                    visit(child, prefix)

        visit(self.tree, "")
        return found

    def class_nodes(self, qualname: str, lines: Iterable[int]) -> Sequence[ast.ClassDef]:
        """The definitions of the class `qualname`; where it is defined more than once (in an
        if/else), the ones holding one of `lines` (its methods' first lines), else all."""
        candidates = self._classes.get(qualname, [])
        wanted = set(lines)
        if len(candidates) > 1 and wanted:
            holding = [c for c in candidates if any(c.lineno <= line <= (c.end_lineno or c.lineno) for line in wanted)]
            return holding or candidates
        return candidates

    @cached_property
    def bindings(self) -> Mapping[str, tuple[Statement, ...]]:
        """Every name used in a module-level statement (in blocks too, not in functions or
        classes) -> the statements naming it, in order: what binds it, and what changes it
        (`X = ...`, `X += ...`, `X["k"] = ...`, `X.update(...)`, `import X`)."""
        found: dict[str, list[Statement]] = {}

        def add(names: Iterable[str], statement: Statement) -> None:
            for name in sorted(set(names)):
                found.setdefault(name, []).append(statement)

        def visit(node: ast.AST, headers: tuple[str, ...], loads: frozenset[str]) -> None:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                return  # described as code, by whoever reads the name
            blocks = [f for f in _BLOCKS if getattr(node, f, None)]
            if not blocks:
                own = digest(json.dumps([dump(node), headers]))
                if isinstance(node, ast.Import | ast.ImportFrom):
                    for alias in node.names:
                        if isinstance(node, ast.ImportFrom):
                            source = (node.level, node.module or "")
                        else:
                            source = (0, alias.name if alias.asname else alias.name.split(".")[0])
                        add([alias.asname or alias.name.split(".")[0]], Statement(own, tuple(sorted(loads)), source))
                    return
                names = _names_in(node)
                add(names, Statement(own, tuple(sorted(loads | loaded_names([node]))), None))
                return
            header = dump(node, fields=frozenset(blocks))
            inner_loads = loads | {n for n in _header_names(node, blocks, ast.Load)}
            inner = (*headers, header)
            add(_header_bound(node, blocks), Statement(digest(json.dumps(inner)), tuple(sorted(inner_loads)), None))
            for field in blocks:
                for child in getattr(node, field):
                    visit(child, inner, frozenset(inner_loads))

        for statement in self.tree.body:
            visit(statement, (), frozenset())
        return {name: tuple(statements) for name, statements in found.items()}


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _header_names(node: ast.AST, blocks: list[str], ctx: type[ast.expr_context]) -> Iterator[str]:
    for field in node._fields:
        if field in blocks:
            continue
        value = getattr(node, field, None)
        for part in value if isinstance(value, list) else [value]:
            if isinstance(part, ast.AST):
                yield from (n.id for n in ast.walk(part) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx))


def _header_bound(node: ast.AST, blocks: list[str]) -> set[str]:
    """Names a block header binds: `for X in`, `with ... as X`, `except E as X`, `case [X]`."""
    bound = set(_header_names(node, blocks, ast.Store))
    if isinstance(node, ast.ExceptHandler) and node.name:
        bound.add(node.name)
    if isinstance(node, ast.match_case):
        for part in ast.walk(node.pattern):
            for name in (getattr(part, "name", None), getattr(part, "rest", None)):
                if isinstance(name, str):
                    bound.add(name)
    return bound


def source_file(filename: str, namespace: dict[str, Any] | None = None) -> SourceFile | None:
    """The parsed source of `filename` as the interpreter finds it (through the module's loader
    when given its namespace), re-read when the file changed; None without Python source."""
    if not filename:
        return None
    linecache.checkcache(filename)  # `<...>` names are kept only if registered (IPython's cells)
    text = "".join(linecache.getlines(filename, namespace))
    return parse(text) if text else None


@lru_cache(maxsize=512)
def parse(text: str) -> SourceFile | None:
    try:
        return SourceFile(ast.parse(text))
    except (SyntaxError, ValueError):
        return None
