"""Recorded step calls -> a FlowGraph: node ids, data wiring, bindings and the shape checks.

The DSL (`dsl.py`) records what a flow function does as a tuple of `Op`s; `GraphBuilder.build`
turns them into the immutable graph of `ir.py`, refusing shapes lokki-sam cannot run.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from lokki_sam.errors import FlowDefinitionError
from lokki_sam.ir import Binding, Const, FlowGraph, MapBlock, Nested, Node, ParamRef, Stage
from lokki_sam.options import MapOptions
from lokki_sam.params import Param
from lokki_sam.placeholder import Placeholder, find_placeholders, is_plain_structure

if TYPE_CHECKING:
    from lokki_sam.dsl import Step


@dataclass(frozen=True)
class StepCall:
    step: Step
    kwargs: tuple[tuple[str, Any], ...] = ()
    args: tuple[Any, ...] = ()  # positional arguments, bound by the signature when the node is built


@dataclass(frozen=True)
class Op:
    kind: Literal["start", "next", "map", "agg"]
    call: StepCall
    map_options: MapOptions | None = None


def call_of(step: Step, kwargs: Mapping[str, Any], args: tuple[Any, ...] = ()) -> StepCall:
    return StepCall(step, tuple(sorted(kwargs.items())), tuple(args))


def source_file_of(func: Callable[..., Any]) -> str | None:
    """The absolute path of the file `func` is defined in: its module's `__file__` (from the
    function's own globals, never a module found by name), else its code's file name."""
    file = func.__globals__.get("__file__") if hasattr(func, "__globals__") else None
    if not isinstance(file, str):
        code = getattr(func, "__code__", None)
        file = code.co_filename if code is not None else None
    if not file or (file.startswith("<") and file.endswith(">")):  # <stdin>, <string>: no file
        return None
    return os.path.abspath(file)


def module_object_of(func: Callable[..., Any]) -> ModuleType | None:
    """The module whose namespace `func.__globals__` is. While a module runs its top level (where
    a flow is decorated) it is the one in sys.modules under its name; it counts only if its
    namespace is that very dict, so a module of the same name from another file never does."""
    namespace = getattr(func, "__globals__", None)
    module = sys.modules.get(str(getattr(func, "__module__", "")))
    return module if module is not None and vars(module) is namespace else None


def definition_site(step: Step) -> str:
    """`file:line` of a step's function (relative to the working directory when inside it)."""
    code = getattr(inspect.unwrap(step.func), "__code__", None)
    if code is None:
        return f"{step.module}.{step.name}"
    file = code.co_filename
    relative = os.path.relpath(file) if os.path.isabs(file) else file
    return f"{relative if not relative.startswith('..') else file}:{code.co_firstlineno}"


class GraphBuilder:
    def __init__(self, name: str, flow_func: Callable[..., Any], params: tuple[Param, ...], where: str) -> None:
        self.name = name
        self.module = str(flow_func.__module__)
        self.source_file = source_file_of(flow_func)
        self.module_object = module_object_of(flow_func)
        self.params = params
        self.where = where
        self.used_names: dict[str, int] = {}
        self.steps_by_name: dict[str, Step] = {}
        self.delivered: set[str] = set()

    def build(self, ops: tuple[Op, ...], schedule: str | None, doc: str) -> FlowGraph:
        stages: list[Stage] = []
        open_map: tuple[str, MapOptions, list[Node]] | None = None
        previous: str | None = None
        for op in ops:
            step_name = op.call.step.name
            if op.kind == "start" and stages:
                raise FlowDefinitionError(
                    f"step '{step_name}' starts a second chain",
                    where=self.where,
                    hint="chain steps with .next(step) instead of calling them",
                )
            if op.kind == "map" and open_map is not None:
                # .map() on an open map extends the per-item chain, like .next() (upstream lokki's
                # MapBlock.map); fan-out settings belong to the map's first .map().
                assert op.map_options is not None
                if op.map_options != MapOptions():
                    raise FlowDefinitionError(
                        f".map({step_name}, ...) on an open map extends its per-item chain: "
                        "map options belong to the map's first .map()",
                        where=self.where,
                        hint="move concurrency, batch_size, tolerated_failure... to the first .map() of the map",
                    )
            elif op.kind == "map":
                assert op.map_options is not None and previous is not None
                node = self._node(op.call, input_from=None, starts_map=True)
                open_map = (previous, op.map_options, [node])
                continue
            if op.kind == "agg":
                if open_map is None:
                    raise FlowDefinitionError(
                        f".agg({step_name}) without an open map",
                        where=self.where,
                        hint="use .next() for a sequential step; .agg() closes a .map()",
                    )
                block = self._close(open_map)
                stages.append(block)
                open_map = None
                node = self._node(op.call, input_from=block.id)
                stages.append(node)
                previous = node.id
                continue
            if open_map is not None:  # .next() or .map() inside a map: extend the item chain
                _, _, body = open_map
                node = self._node(op.call, input_from=body[-1].id, in_map=body[0].in_map)
                body.append(node)
                continue
            node = self._node(op.call, input_from=previous)
            stages.append(node)
            previous = node.id
        if open_map is not None:
            stages.append(self._close(open_map))
        self._check_params_delivered()
        return FlowGraph(
            self.name,
            self.module,
            self.params,
            tuple(stages),
            schedule,
            doc.strip(),
            source_file=self.source_file,
            module_object=self.module_object,
        )

    def _close(self, open_map: tuple[str, MapOptions, list[Node]]) -> MapBlock:
        source, options, body = open_map
        assert body[0].in_map is not None
        return MapBlock(body[0].in_map, source, tuple(body), options)

    def _node(
        self, call: StepCall, *, input_from: str | None, in_map: str | None = None, starts_map: bool = False
    ) -> Node:
        """A node for `call`; `starts_map` makes it the first step of a new map, whose id derives from it."""
        step_ = call.step
        self._claim_name(step_)
        count = self.used_names.get(step_.name, 0) + 1
        self.used_names[step_.name] = count
        node_id = step_.name if count == 1 else f"{step_.name}-{count}"
        if starts_map:
            in_map = f"map-{node_id}"
        where = f"{self.where}, step '{step_.name}'"
        takes_input = input_from is not None or in_map is not None
        data_param = step_.data_parameter
        if takes_input and data_param is None:
            raise FlowDefinitionError(
                "this step receives the previous step's output but declares no positional parameter for it",
                where=where,
                hint=f"def {step_.name}(data, ...):",
            )
        bindings: dict[str, Binding] = {}
        for key, value in self._arguments(call, takes_input, data_param, where):
            if takes_input and key == data_param:
                raise FlowDefinitionError(
                    f"argument '{key}' is where the step receives its input; it cannot also be bound",
                    where=where,
                )
            if not step_.accepts(key):
                raise FlowDefinitionError(
                    f"step has no parameter '{key}'",
                    where=where,
                    hint=f"its parameters are: {', '.join(step_.signature.parameters) or 'none'}",
                )
            bindings[key] = self._binding(value, key, where)
        # Flow parameters reach any step that declares a parameter of the same name, and every
        # step that takes **kwargs (as upstream lokki passes them).
        takes_any = any(sp.kind is sp.VAR_KEYWORD for sp in step_.signature.parameters.values())
        for p in self.params:
            if p.name in bindings or (takes_input and p.name == data_param):
                continue
            if (p.name in step_.signature.parameters and step_.accepts(p.name)) or takes_any:
                bindings[p.name] = ParamRef(p.name)
                self.delivered.add(p.name)
        for sp in step_.signature.parameters.values():
            if sp.kind in (sp.VAR_POSITIONAL, sp.VAR_KEYWORD) or sp.default is not sp.empty:
                continue
            if sp.name in bindings or (takes_input and sp.name == data_param):
                continue
            raise FlowDefinitionError(
                f"required parameter '{sp.name}' gets no value",
                where=where,
                hint=f"bind it at the call site ({step_.name}({sp.name}=...)) "
                f"or add a flow parameter named '{sp.name}'",
            )
        if not takes_input and data_param is not None and data_param not in bindings:
            sig_param = step_.signature.parameters[data_param]
            if sig_param.default is sig_param.empty and sig_param.kind is not sig_param.VAR_POSITIONAL:
                raise FlowDefinitionError(f"first step's parameter '{data_param}' gets no value", where=where)
        return Node(node_id, step_, tuple(sorted(bindings.items())), input_from, in_map)

    def _claim_name(self, step_: Step) -> None:
        """A step name is one Lambda function, one set of options and requirements, one key in the
        artifact layout: two different step objects may not share it (the same object used twice may)."""
        known = self.steps_by_name.setdefault(step_.name, step_)
        if known is step_:
            return
        first, second = definition_site(known), definition_site(step_)
        shown = f"{first} and {second}" if first != second else f"{first} (decorated twice)"
        raise FlowDefinitionError(
            f"two different steps are named '{step_.name}': {shown}",
            where=self.where,
            hint=f"a step name is one Lambda function, so rename one of them: @step on a function with its own "
            f"name (`def {step_.name}_orders(...)`), or on an alias that calls the other "
            f"(`@step def other_{step_.name}(data): return module.{step_.name}(data)`: outside a flow a step is its "
            "plain function)",
        )

    def _arguments(
        self, call: StepCall, takes_input: bool, data_param: str | None, where: str
    ) -> list[tuple[str, Any]]:
        """The call's keyword arguments, with positional ones bound by the step's signature: after
        the data parameter when the step receives the previous output, from the first otherwise."""
        if not call.args:
            return list(call.kwargs)
        signature = call.step.signature
        parameters = list(signature.parameters.values())
        if takes_input and data_param is not None:
            parameters = [p for p in parameters if p.name != data_param]
        try:
            bound = signature.replace(parameters=parameters).bind_partial(*call.args, **dict(call.kwargs))
        except TypeError as exc:
            shown = ", ".join(p.name for p in parameters) or "none"
            raise FlowDefinitionError(
                f"positional argument(s) do not fit the step's signature: {exc}",
                where=where,
                hint=f"the parameters a call here can set: {shown}"
                + (f" ('{data_param}' receives the previous step's output)" if takes_input else ""),
            ) from None
        if any(p.kind is p.VAR_POSITIONAL for p in parameters if p.name in bound.arguments):
            raise FlowDefinitionError(
                "positional arguments cannot go to the step's *args", where=where, hint="pass them by name"
            )
        return sorted(bound.arguments.items())

    def _binding(self, value: Any, key: str, where: str) -> Binding:
        """A call-site argument as a binding: a parameter, a literal, or a plain structure
        (lists, tuples, sets, dicts) with parameters inside, filled in for every run."""
        if isinstance(value, Placeholder):
            self.delivered.add(value.name)
            return ParamRef(value.name)
        inside = find_placeholders(value)
        if not inside:
            return Const(value)
        names = sorted({p.name for p in inside})
        if not is_plain_structure(value):
            shown = ", ".join(f"'{n}'" for n in names)
            raise FlowDefinitionError(
                f"argument '{key}' holds flow parameter {shown} inside a {type(value).__name__}, "
                "which lokki-sam cannot fill in at run time",
                where=where,
                hint=f"pass the parameter itself ({key}={names[0]}) or in a list, tuple, set or dict, "
                "and build the object inside the step",
            )
        self.delivered.update(names)
        return Nested(_to_refs(value))

    def _check_params_delivered(self) -> None:
        unused = [p.name for p in self.params if p.name not in self.delivered]
        if unused:
            raise FlowDefinitionError(
                f"flow parameter(s) {', '.join(unused)} reach no step",
                where=self.where,
                hint="pass them at a call site (fetch(limit=limit)) or declare a step parameter of the same name",
            )


def _to_refs(value: Any) -> Any:
    """A plain structure with its placeholders replaced by ParamRefs."""
    if isinstance(value, Placeholder):
        return ParamRef(value.name)
    if isinstance(value, dict):
        return {k: _to_refs(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_to_refs(v) for v in value)
    return value
