"""Decorators and the immutable flow graph they build.

`@step` wraps a plain function. Inside a `@flow` function, calling a step starts a `Chain`;
`.next()`, `.map()` and `.agg()` extend it. When the flow is decorated, its function is called
once with parameter placeholders and the resulting chain is turned into a `FlowGraph`: pure
data that the local runner, the Lambda runtime and the compilers all consume.

Outside a flow definition a step is just its function: `flap("goose")` returns "flappy goose".
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from lokki_sam.errors import FlowDefinitionError
from lokki_sam.params import Param, params_from_signature

_DEFINING: contextvars.ContextVar[str | None] = contextvars.ContextVar("lokki_defining", default=None)

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
ARCHITECTURES = ("x86_64", "arm64")
EXECUTION_TYPES = ("STANDARD", "EXPRESS")
MAP_MODES = ("distributed", "inline")
# Environment variables whose name says "secret" must hold a reference, never the value itself.
_SECRET_NAME_RE = re.compile(r"(?i)(secret|passw(or)?d|token|api_?key|private_?key|credential)")
_SECRET_REFERENCE_RE = re.compile(r"^(/[A-Za-z0-9_.\-/]+|arn:aws[a-z-]*:(ssm|secretsmanager):\S+)$")


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Retry:
    """Retry policy with Step Functions semantics.

    `retries` is the number of retries after the first attempt (ASL MaxAttempts). The n-th retry
    waits min(interval * backoff**(n-1), max_delay) seconds; with `jitter` the wait is drawn
    uniformly from [0, that] (ASL JitterStrategy FULL). Only exceptions that are instances of
    `exceptions` are retried.
    """

    retries: int = 3
    interval: float = 1.0
    backoff: float = 2.0
    max_delay: float | None = None
    exceptions: tuple[type[BaseException], ...] = (Exception,)
    jitter: bool = False

    def __post_init__(self) -> None:
        where = "Retry"
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise FlowDefinitionError(f"retries must be an integer >= 0, got {self.retries!r}", where=where)
        if self.retries > 99_999_999:
            raise FlowDefinitionError("retries must be at most 99999999 (the ASL limit)", where=where)
        if not _is_number(self.interval) or self.interval < 0:
            raise FlowDefinitionError(f"interval must be a number >= 0, got {self.interval!r}", where=where)
        if not _is_number(self.backoff) or self.backoff < 1:
            raise FlowDefinitionError(f"backoff must be a number >= 1, got {self.backoff!r}", where=where)
        if self.max_delay is not None and (not _is_number(self.max_delay) or self.max_delay <= 0):
            raise FlowDefinitionError(f"max_delay must be a number > 0, got {self.max_delay!r}", where=where)
        exceptions = self.exceptions
        if isinstance(exceptions, type):
            exceptions = (exceptions,)
            object.__setattr__(self, "exceptions", exceptions)
        if not exceptions or not all(isinstance(e, type) and issubclass(e, BaseException) for e in exceptions):
            raise FlowDefinitionError(
                f"exceptions must be exception classes, got {self.exceptions!r}",
                where=where,
                hint="e.g. Retry(exceptions=(ConnectionError, TimeoutError))",
            )
        object.__setattr__(self, "exceptions", tuple(exceptions))

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry `retry_number` (1-based), without jitter."""
        wait = self.interval * self.backoff ** (retry_number - 1)
        return min(wait, self.max_delay) if self.max_delay is not None else wait

    @classmethod
    def parse(cls, value: Any, *, where: str) -> Retry | None:
        """Accept a Retry, an int (number of retries) or an upstream-lokki style dict."""
        if value is None or isinstance(value, Retry):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(retries=value)
        if isinstance(value, Mapping):
            aliases = {"delay": "interval", "backoff_rate": "backoff", "max_attempts": "retries"}
            kwargs = {aliases.get(str(k), str(k)): v for k, v in value.items()}
            allowed = set(cls.__dataclass_fields__)
            unknown = sorted(set(kwargs) - allowed)
            if unknown:
                raise FlowDefinitionError(
                    f"unknown retry option(s) {', '.join(unknown)}",
                    where=where,
                    hint=f"use {', '.join(sorted(str(a) for a in allowed))}",
                )
            if "exceptions" in kwargs and isinstance(kwargs["exceptions"], list):
                kwargs["exceptions"] = tuple(kwargs["exceptions"])
            return cls(**kwargs)
        raise FlowDefinitionError(f"retry must be a Retry, an int or a dict, got {type(value).__name__}", where=where)


@dataclass(frozen=True)
class StepOptions:
    """Per-step settings used by the runners (retry) and the SAM renderer (the rest)."""

    retry: Retry | None = None
    memory: int | None = None
    timeout: int | None = None
    architecture: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    permissions: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class MapOptions:
    """Fan-out settings: `concurrency` -> MaxConcurrency, `batch_size` -> ItemBatcher,
    `tolerated_failure` (percent) / `tolerated_failure_count` -> ToleratedFailure*."""

    concurrency: int | None = None
    batch_size: int = 1
    tolerated_failure: float | None = None
    tolerated_failure_count: int | None = None
    mode: str = "distributed"
    execution_type: str = "STANDARD"

    def validate(self, where: str) -> None:
        if self.concurrency is not None and (not _is_int(self.concurrency) or self.concurrency < 1):
            raise FlowDefinitionError(f"concurrency must be an integer >= 1, got {self.concurrency!r}", where=where)
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise FlowDefinitionError(f"batch_size must be an integer >= 1, got {self.batch_size!r}", where=where)
        pct = self.tolerated_failure
        if pct is not None and (not _is_number(pct) or not 0 <= pct <= 100):
            raise FlowDefinitionError(f"tolerated_failure is a percentage between 0 and 100, got {pct!r}", where=where)
        count = self.tolerated_failure_count
        if count is not None and (not _is_int(count) or count < 0):
            raise FlowDefinitionError(f"tolerated_failure_count must be an integer >= 0, got {count!r}", where=where)
        if self.mode not in MAP_MODES:
            raise FlowDefinitionError(f"mode must be one of {', '.join(MAP_MODES)}, got {self.mode!r}", where=where)
        if self.execution_type not in EXECUTION_TYPES:
            raise FlowDefinitionError(
                f"execution_type must be one of {', '.join(EXECUTION_TYPES)}, got {self.execution_type!r}",
                where=where,
            )
        if self.mode == "inline" and self.batch_size != 1:
            raise FlowDefinitionError(
                "batch_size needs mode='distributed' (an INLINE map has no ItemBatcher)", where=where
            )

    def tolerates(self, failed: int, total: int) -> bool:
        """Step Functions semantics: the map fails when failures exceed either threshold."""
        if failed == 0:
            return True
        if self.tolerated_failure is None and self.tolerated_failure_count is None:
            return False
        if self.tolerated_failure_count is not None and failed > self.tolerated_failure_count:
            return False
        pct = self.tolerated_failure
        return pct is None or not total or failed * 100 / total <= pct


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# ------------------------------------------------------------------------------------ steps


class Step:
    """A user function registered with `@step`."""

    def __init__(self, func: Callable[..., Any], options: StepOptions) -> None:
        if not callable(func) or not hasattr(func, "__name__"):
            raise FlowDefinitionError(f"@step needs a function, got {func!r}")
        self.func = func
        self.name: str = func.__name__
        self.module: str = func.__module__
        self.options = options
        self.signature = inspect.signature(func)
        functools.update_wrapper(self, func)
        where = f"step '{self.name}'"
        if not _NAME_RE.match(self.name):
            raise FlowDefinitionError(
                "step names must start with a letter and use letters, digits and _",
                where=where,
            )
        if inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func):
            raise FlowDefinitionError(
                "steps must be plain functions (not async, not generators)",
                where=where,
                hint="return a list instead of yielding items",
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _DEFINING.get() is None:
            return self.func(*args, **kwargs)
        if args:
            raise FlowDefinitionError(
                "inside a flow, pass step arguments by name",
                where=f"flow '{_DEFINING.get()}', step '{self.name}'",
                hint=f"{self.name}(limit=limit)",
            )
        return Chain((_Op("start", StepCall(self, tuple(sorted(kwargs.items())))),))

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    @property
    def data_parameter(self) -> str | None:
        """The parameter that receives the previous step's output (the first positional one)."""
        for p in self.signature.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL):
                return p.name
            break
        return None

    def accepts(self, name: str) -> bool:
        params = self.signature.parameters
        if name in params and params[name].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.VAR_POSITIONAL,
        ):
            return True
        return any(p.kind is p.VAR_KEYWORD for p in params.values())


@overload
def step(func: Callable[..., Any], /) -> Step: ...


@overload
def step(
    *,
    retry: Retry | int | Mapping[str, Any] | None = None,
    memory: int | None = None,
    timeout: int | None = None,
    architecture: str | None = None,
    environment: Mapping[str, str] | None = None,
    permissions: list[Mapping[str, Any]] | None = None,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    func: Callable[..., Any] | None = None,
    /,
    *,
    retry: Retry | int | Mapping[str, Any] | None = None,
    memory: int | None = None,
    timeout: int | None = None,
    architecture: str | None = None,
    environment: Mapping[str, str] | None = None,
    permissions: list[Mapping[str, Any]] | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Register a function as a pipeline step: `@step` or `@step(retry=Retry(3), memory=1024)`.

    `permissions` are extra IAM policy statements ({"Action": [...], "Resource": ...}) granted to
    this step's Lambda function; `environment` sets its environment variables.
    """

    def wrap(f: Callable[..., Any]) -> Step:
        where = f"step '{getattr(f, '__name__', f)}'"
        options = StepOptions(
            retry=Retry.parse(retry, where=where),
            memory=_check_range(memory, "memory", 128, 10240, where),
            timeout=_check_range(timeout, "timeout", 1, 900, where),
            architecture=_check_choice(architecture, "architecture", ARCHITECTURES, where),
            environment=_check_environment(environment, where),
            permissions=_check_permissions(permissions, where),
        )
        return Step(f, options)

    if func is not None:
        if isinstance(func, Step):
            return func
        return wrap(func)
    return wrap


def _check_range(value: int | None, name: str, low: int, high: int, where: str) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not low <= value <= high:
        raise FlowDefinitionError(f"{name} must be an integer from {low} to {high}, got {value!r}", where=where)
    return value


def _check_choice(value: str | None, name: str, choices: tuple[str, ...], where: str) -> str | None:
    if value is not None and value not in choices:
        raise FlowDefinitionError(f"{name} must be one of {', '.join(choices)}, got {value!r}", where=where)
    return value


def _check_environment(env: Mapping[str, str] | None, where: str) -> tuple[tuple[str, str], ...]:
    if not env:
        return ()
    for key, value in env.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", key):
            raise FlowDefinitionError(f"environment variable name {key!r} is not valid", where=where)
        if key.startswith(("LOKKI_", "AWS_")):
            raise FlowDefinitionError(
                f"environment variable {key} is reserved (LOKKI_* and AWS_* are set by lokki-sam and Lambda)",
                where=where,
            )
        if not isinstance(value, str):
            raise FlowDefinitionError(
                f"environment variable {key} must be a string, got {type(value).__name__}",
                where=where,
                hint="for secrets pass an SSM parameter or Secrets Manager name, never the value",
            )
        if _SECRET_NAME_RE.search(key) and not _SECRET_REFERENCE_RE.match(value):
            raise FlowDefinitionError(
                f"environment variable {key} looks like a secret but its value is a literal; "
                "templates and Lambda configurations must never hold secret values",
                where=where,
                hint="pass a reference instead (an SSM parameter name like '/my/param', or a Secrets Manager "
                "or SSM ARN), grant the step read access with `permissions`, and read the value at run time "
                "(a CloudFormation dynamic reference would still copy the value into the function's configuration)",
            )
    return tuple(sorted(env.items()))


def _check_permissions(perms: list[Mapping[str, Any]] | None, where: str) -> tuple[Mapping[str, Any], ...]:
    if not perms:
        return ()
    checked = []
    for perm in perms:
        if not isinstance(perm, Mapping) or "Action" not in perm or "Resource" not in perm:
            raise FlowDefinitionError(
                f"each permission must be an IAM statement with Action and Resource, got {perm!r}",
                where=where,
                hint='{"Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::my-bucket/*"}',
            )
        unknown = set(perm) - {"Effect", "Action", "Resource", "Condition", "Sid"}
        if unknown:
            raise FlowDefinitionError(f"unknown IAM statement key(s) {sorted(unknown)}", where=where)
        checked.append(dict(perm))
    return tuple(checked)


# ------------------------------------------------------------------------------ chain builder


@dataclass(frozen=True)
class ParamRef:
    """Placeholder for a flow parameter while the flow function runs at definition time."""

    name: str

    def __repr__(self) -> str:
        return f"<flow parameter {self.name}>"

    def __bool__(self) -> bool:
        raise FlowDefinitionError(
            f"flow parameter '{self.name}' has no value while the flow is being defined",
            hint=f"pass it straight to a step, e.g. fetch({self.name}={self.name}); "
            "the flow function only wires steps together",
        )


@dataclass(frozen=True)
class StepCall:
    step: Step
    kwargs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class _Op:
    kind: Literal["start", "next", "map", "agg"]
    call: StepCall
    map_options: MapOptions | None = None


def _as_call(target: Any, kwargs: Mapping[str, Any], method: str) -> StepCall:
    if isinstance(target, Step):
        return StepCall(target, tuple(sorted(kwargs.items())))
    if isinstance(target, Chain) and len(target.ops) == 1 and target.ops[0].kind == "start":
        call = target.ops[0].call
        return StepCall(call.step, tuple(sorted({**dict(call.kwargs), **kwargs}.items())))
    raise FlowDefinitionError(
        f".{method}() takes a step, got {target!r}",
        where=f"flow '{_DEFINING.get()}'" if _DEFINING.get() else None,
        hint="decorate the function with @step",
    )


class Chain:
    """An immutable sequence of step calls under construction inside a `@flow` function."""

    def __init__(self, ops: tuple[_Op, ...]) -> None:
        self.ops = ops

    def next(self, target: Step | Chain, **kwargs: Any) -> Chain:
        """Run `target` on this chain's output (inside an open map: on each item's output)."""
        return Chain((*self.ops, _Op("next", _as_call(target, kwargs, "next"))))

    def map(
        self,
        target: Step | Chain,
        *,
        concurrency: int | None = None,
        batch_size: int = 1,
        tolerated_failure: float | None = None,
        tolerated_failure_count: int | None = None,
        mode: str = "distributed",
        execution_type: str = "STANDARD",
    ) -> Chain:
        """Fan out: run `target` on every item of this chain's output (which must be a list)."""
        options = MapOptions(concurrency, batch_size, tolerated_failure, tolerated_failure_count, mode, execution_type)
        return Chain((*self.ops, _Op("map", _as_call(target, {}, "map"), options)))

    def agg(self, target: Step | Chain, **kwargs: Any) -> Chain:
        """Fan in: run `target` once on the list of the open map's item results."""
        return Chain((*self.ops, _Op("agg", _as_call(target, kwargs, "agg"))))

    def __repr__(self) -> str:
        return " -> ".join(f"{op.kind}:{op.call.step.name}" for op in self.ops)


# --------------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Const:
    value: Any


Binding = Const | ParamRef


@dataclass(frozen=True)
class Node:
    """One invocation site of a step. `id` is unique in the flow (`name`, `name-2`, ...).

    `input_from` says where the data argument comes from: None (first step), the id of the
    previous node, or the id of the map whose item results an agg receives.
    """

    id: str
    step: Step
    bindings: tuple[tuple[str, Binding], ...]
    input_from: str | None
    in_map: str | None = None

    @property
    def name(self) -> str:
        return self.step.name

    def kwargs(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments for one call, given the run's resolved flow parameters."""
        result: dict[str, Any] = {}
        for key, binding in self.bindings:
            result[key] = params[binding.name] if isinstance(binding, ParamRef) else binding.value
        return result


@dataclass(frozen=True)
class MapBlock:
    """A fan-out over the list produced by `source`; `nodes` run on every item in order."""

    id: str
    source: str
    nodes: tuple[Node, ...]
    options: MapOptions

    @property
    def last(self) -> Node:
        return self.nodes[-1]


Stage = Node | MapBlock


@dataclass(frozen=True)
class FlowGraph:
    name: str
    module: str
    params: tuple[Param, ...]
    stages: tuple[Stage, ...]
    schedule: str | None = None
    description: str = ""
    _index: dict[str, Stage] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for stage in self.stages:
            self._index[stage.id] = stage
            if isinstance(stage, MapBlock):
                for node in stage.nodes:
                    self._index[node.id] = node

    def get(self, stage_id: str) -> Stage:
        try:
            return self._index[stage_id]
        except KeyError:
            raise KeyError(f"flow '{self.name}' has no step or map '{stage_id}'") from None

    def node(self, node_id: str) -> Node:
        stage = self.get(node_id)
        if not isinstance(stage, Node):
            raise KeyError(f"'{node_id}' is a map, not a step")
        return stage

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every node in execution order, map bodies included."""
        out: list[Node] = []
        for stage in self.stages:
            out.extend(stage.nodes if isinstance(stage, MapBlock) else (stage,))
        return tuple(out)

    @property
    def steps(self) -> tuple[Step, ...]:
        """Distinct steps in first-use order (one Lambda function each)."""
        seen: dict[str, Step] = {}
        for node in self.nodes:
            seen.setdefault(node.step.name, node.step)
        return tuple(seen.values())

    @property
    def maps(self) -> tuple[MapBlock, ...]:
        return tuple(s for s in self.stages if isinstance(s, MapBlock))

    def map_fed_by(self, node_id: str) -> MapBlock | None:
        """The map that fans out over `node_id`'s output, if any."""
        for stage in self.stages:
            if isinstance(stage, MapBlock) and stage.source == node_id:
                return stage
        return None

    @property
    def result_stage(self) -> Stage:
        return self.stages[-1]


# ---------------------------------------------------------------------------------- flows


class Flow:
    """A flow registered with `@flow`; `graph` is built (and validated) at decoration time."""

    def __init__(self, func: Callable[..., Any], name: str | None, schedule: str | None) -> None:
        self.func = func
        self.name = name or func.__name__
        self.schedule = schedule
        functools.update_wrapper(self, func)
        self.graph = build_graph(func, self.name, schedule)

    def __repr__(self) -> str:
        return f"<flow {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise FlowDefinitionError(
            f"flow '{self.name}' is not called directly",
            hint=f"run it with `lokki-sam run`, lokki_sam.run_flow({self.name}, ...) or main({self.name})",
        )


@overload
def flow(func: Callable[..., Any], /) -> Flow: ...


@overload
def flow(*, name: str | None = None, schedule: str | None = None) -> Callable[[Callable[..., Any]], Flow]: ...


def flow(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    schedule: str | None = None,
) -> Flow | Callable[[Callable[..., Any]], Flow]:
    """Declare a flow: `@flow` or `@flow(name="nightly", schedule="rate(1 day)")`.

    `schedule` is an EventBridge expression (`rate(...)` or `cron(...)`); scheduled runs use the
    parameters' defaults.
    """
    if schedule is not None and not re.match(r"^(rate|cron)\(.+\)$", schedule):
        raise FlowDefinitionError(
            f"schedule {schedule!r} is not an EventBridge expression",
            hint='use "rate(1 day)" or "cron(0 6 * * ? *)"',
        )
    if name is not None and not _NAME_RE.match(name):
        raise FlowDefinitionError(f"flow name {name!r} must start with a letter and use letters, digits and _")

    def wrap(f: Callable[..., Any]) -> Flow:
        return Flow(f, name, schedule)

    return wrap(func) if func is not None else wrap


def build_graph(func: Callable[..., Any], name: str, schedule: str | None) -> FlowGraph:
    where = f"flow '{name}'"
    if not _NAME_RE.match(name):
        raise FlowDefinitionError("flow names must start with a letter and use letters, digits and _", where=where)
    params = params_from_signature(func)
    placeholders = {p.name: ParamRef(p.name) for p in params}
    token = _DEFINING.set(name)
    try:
        chain = func(**placeholders)
    except FlowDefinitionError:
        raise
    except Exception as exc:
        raise FlowDefinitionError(
            f"the flow function raised {type(exc).__name__}: {exc}",
            where=where,
            hint="a flow function only wires steps: return first_step(...).next(...).map(...).agg(...)",
        ) from None
    finally:
        _DEFINING.reset(token)
    if chain is None:
        raise FlowDefinitionError(
            "the flow function returned None", where=where, hint="add `return` before the step chain"
        )
    if not isinstance(chain, Chain):
        raise FlowDefinitionError(
            f"the flow function must return a step chain, got {type(chain).__name__}",
            where=where,
            hint="return first_step(...).next(...)",
        )
    return _GraphBuilder(name, func.__module__, params, where).build(chain, schedule, func.__doc__ or "")


class _GraphBuilder:
    def __init__(self, name: str, module: str, params: tuple[Param, ...], where: str) -> None:
        self.name = name
        self.module = module
        self.params = params
        self.where = where
        self.used_names: dict[str, int] = {}
        self.delivered: set[str] = set()

    def build(self, chain: Chain, schedule: str | None, doc: str) -> FlowGraph:
        stages: list[Stage] = []
        open_map: tuple[str, MapOptions, list[Node]] | None = None
        previous: str | None = None
        for op in chain.ops:
            step_name = op.call.step.name
            if op.kind == "start" and stages:
                raise FlowDefinitionError(
                    f"step '{step_name}' starts a second chain",
                    where=self.where,
                    hint="chain steps with .next(step) instead of calling them",
                )
            if op.kind == "map":
                if open_map is not None:
                    raise FlowDefinitionError(
                        f".map({step_name}) inside an open map: nested maps are not supported",
                        where=self.where,
                        hint="close the first map with .agg(step) before mapping again, "
                        "or use .next() to run more steps on each item",
                    )
                assert op.map_options is not None and previous is not None
                op.map_options.validate(f"{self.where}, .map({step_name})")
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
            if open_map is not None:  # .next() inside a map: extend the item chain
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
        return FlowGraph(self.name, self.module, self.params, tuple(stages), schedule, doc.strip())

    def _close(self, open_map: tuple[str, MapOptions, list[Node]]) -> MapBlock:
        source, options, body = open_map
        assert body[0].in_map is not None
        return MapBlock(body[0].in_map, source, tuple(body), options)

    def _node(
        self, call: StepCall, *, input_from: str | None, in_map: str | None = None, starts_map: bool = False
    ) -> Node:
        """A node for `call`; `starts_map` makes it the first step of a new map, whose id derives from it."""
        step_ = call.step
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
        for key, value in call.kwargs:
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
            bindings[key] = value if isinstance(value, ParamRef) else Const(value)
            if isinstance(value, ParamRef):
                self.delivered.add(value.name)
        # Flow parameters reach any step that declares a parameter of the same name.
        for p in self.params:
            if p.name in bindings or (takes_input and p.name == data_param):
                continue
            if p.name in step_.signature.parameters and step_.accepts(p.name):
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

    def _check_params_delivered(self) -> None:
        unused = [p.name for p in self.params if p.name not in self.delivered]
        if unused:
            raise FlowDefinitionError(
                f"flow parameter(s) {', '.join(unused)} reach no step",
                where=self.where,
                hint="pass them at a call site (fetch(limit=limit)) or declare a step parameter of the same name",
            )
