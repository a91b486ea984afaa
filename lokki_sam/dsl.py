"""The decorators users write: `@step`, `@flow`, and the chain of `.next()`, `.map()`, `.agg()`.

`@step` wraps a plain function. Inside a `@flow` function, calling a step starts a `Chain`;
`.next()`, `.map()` and `.agg()` extend it. When the flow is decorated, its function is called
once with parameter placeholders and the recorded chain is built into a `FlowGraph` (`build.py`):
pure data that the local runner, the Lambda runtime and the compilers all consume.

Outside a flow definition a step is just its function: `flap("goose")` returns "flappy goose".
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from lokki_sam.build import GraphBuilder, Op, StepCall, call_of
from lokki_sam.errors import FlowDefinitionError, LokkiError
from lokki_sam.ir import FlowGraph
from lokki_sam.options import MapOptions, Retry, StepOptions, check_package, sizing_from_upstream
from lokki_sam.params import params_from_signature
from lokki_sam.placeholder import Placeholder

_DEFINING: contextvars.ContextVar[str | None] = contextvars.ContextVar("lokki_defining", default=None)

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# Step and flow names become CloudFormation logical IDs and ASL state names: ASCII only.
_NAME_RULE = "must start with an ASCII letter and use only a-z, A-Z, 0-9 and _"


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
                f"step names {_NAME_RULE}",
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
        # Positional arguments bind by the signature once the builder knows whether this call
        # receives the previous step's output (then they fill the parameters after the data one).
        return Chain((Op("start", call_of(self, kwargs, args)),))

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
    requirements: Sequence[str] | str | None = None,
    package: str | None = None,
    compute: str | None = None,
    cpu: float | None = None,
    gpu: int | None = None,
    platform: str | None = None,
    job_type: str | None = None,
    vcpu: float | None = None,
    memory_mb: int | None = None,
    timeout_seconds: int | None = None,
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
    requirements: Sequence[str] | str | None = None,
    package: str | None = None,
    compute: str | None = None,
    cpu: float | None = None,
    gpu: int | None = None,
    platform: str | None = None,
    job_type: str | None = None,
    vcpu: float | None = None,
    memory_mb: int | None = None,
    timeout_seconds: int | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Register a function as a pipeline step: `@step` or `@step(retry=Retry(3), memory=1024)`.

    `permissions` are extra IAM policy statements ({"Action": [...], "Resource": ...}) granted to
    this step's Lambda function; `environment` sets its environment variables; `requirements`
    (requirement lines, or a requirements file next to the module) are packaged into a layer of
    this step's function only; `package="image"` builds its function as a container image.

    `compute="batch"` runs the step as an AWS Batch job instead of a Lambda function (beyond
    Lambda's 15 minutes and 10 GB, or with GPUs): `cpu` vCPUs, `memory` MiB, `gpu` GPUs,
    `timeout` seconds, `platform` "fargate" (the default) or "ec2" (the default with a GPU).
    Upstream lokki's names mean the same: `job_type` is `compute`, `vcpu` is `cpu`, `memory_mb`
    is `memory`, `timeout_seconds` is `timeout`; giving both names of one setting is an error.
    """

    def wrap(f: Callable[..., Any]) -> Step:
        where = f"step '{getattr(f, '__name__', f)}'"
        chosen, sized_cpu, sized_memory, sized_timeout = sizing_from_upstream(
            where,
            compute=compute,
            job_type=job_type,
            cpu=cpu,
            vcpu=vcpu,
            memory=memory,
            memory_mb=memory_mb,
            timeout=timeout,
            timeout_seconds=timeout_seconds,
        )
        options = StepOptions.create(
            where=where,
            retry=retry,
            memory=sized_memory,
            timeout=sized_timeout,
            architecture=architecture,
            environment=environment,
            permissions=permissions,
            requirements=requirements,
            package=package,
            compute=chosen,
            cpu=sized_cpu,
            gpu=gpu,
            platform=platform,
        )
        return Step(f, options)

    if func is not None:
        if isinstance(func, Step):
            return func
        return wrap(func)
    return wrap


# ------------------------------------------------------------------------------ chains


def _as_call(target: Any, kwargs: Mapping[str, Any], method: str) -> StepCall:
    if isinstance(target, Step):
        return call_of(target, kwargs)
    if isinstance(target, Chain) and len(target.ops) == 1 and target.ops[0].kind == "start":
        call = target.ops[0].call
        return call_of(call.step, {**dict(call.kwargs), **kwargs}, call.args)
    where = f"flow '{_DEFINING.get()}'" if _DEFINING.get() else None
    if isinstance(target, Chain):
        nested = method == "map" and any(op.kind == "map" for op in target.ops)
        raise FlowDefinitionError(
            f".{method}() takes one step, got the chain {target!r}"
            + (": a map inside a map's body (nested maps) is not supported" if nested else ""),
            where=where,
            hint="extend the chain instead: a().map(b).next(c) (or .map(c)) runs c on each item after b",
        )
    raise FlowDefinitionError(
        f".{method}() takes a step, got {target!r}", where=where, hint="decorate the function with @step"
    )


MAP_OPTIONS = (
    "concurrency",
    "batch_size",
    "tolerated_failure",
    "tolerated_failure_count",
    "mode",
    "execution_type",
    "executor",
)


def _check_map_kwargs(step_: Step, kwargs: Mapping[str, Any], where: str) -> None:
    """`.map(step, k=v)` binds k on the step: a name that is neither its parameter nor a map
    option is most likely a misspelt option, so say both."""
    for key in sorted(kwargs):
        if not step_.accepts(key):
            raise FlowDefinitionError(
                f".map() has no option '{key}' and step '{step_.name}' has no parameter '{key}'",
                where=where,
                hint=f"map options: {', '.join(MAP_OPTIONS)}; the step's parameters: "
                f"{', '.join(step_.signature.parameters) or 'none'}",
            )


def _open_map(ops: tuple[Op, ...]) -> Op | None:
    """The `.map()` that opened the map still open at the end of `ops` (None: no map is open)."""
    opened: Op | None = None
    for op in ops:
        if op.kind == "agg":
            opened = None
        elif op.kind == "map" and opened is None:
            opened = op
    return opened


def _check_body_step(step_: Step, options: MapOptions, where: str) -> None:
    """A step joining a map's body must be able to run in that map's child executions."""
    express = options.mode == "distributed" and options.execution_type == "EXPRESS"
    if express and step_.options.on_batch:
        raise FlowDefinitionError(
            f"step '{step_.name}' runs as an AWS Batch job, which an EXPRESS map cannot wait for "
            "(Step Functions' .sync integrations run in STANDARD workflows only)",
            where=where,
            hint='use execution_type="STANDARD" for this map (the default), or run the step on Lambda',
        )


class Chain:
    """An immutable sequence of step calls under construction inside a `@flow` function."""

    def __init__(self, ops: tuple[Op, ...]) -> None:
        self.ops = ops

    def next(self, target: Step | Chain, **kwargs: Any) -> Chain:
        """Run `target` on this chain's output (inside an open map: on each item's output)."""
        call = _as_call(target, kwargs, "next")
        opened = _open_map(self.ops)
        if opened is not None and opened.map_options is not None:
            _check_body_step(call.step, opened.map_options, f"flow '{_DEFINING.get()}', .next({call.step.name})")
        return Chain((*self.ops, Op("next", call)))

    def map(
        self,
        target: Step | Chain | Sequence[Step | Chain],
        *,
        concurrency: int | None = None,
        batch_size: int = 1,
        tolerated_failure: float | None = None,
        tolerated_failure_count: int | None = None,
        mode: str = "distributed",
        execution_type: str = "STANDARD",
        executor: str | None = None,
        concurrency_limit: int | None = None,
        direct_pass: bool = False,
        **kwargs: Any,
    ) -> Chain:
        """Fan out: run `target` on every item of this chain's output (which must be a list).
        `executor` ("auto", "threads" or "processes") runs this map's batches in local runs (None:
        the run's executor); the cloud runs every batch in its own invocation anyway.

        Upstream lokki's spellings mean the same here: a list of steps is a per-item chain
        (`.map([a, b])` is `.map(a).next(b)`), `concurrency_limit` is `concurrency`, other keyword
        arguments bind to the step (as `.next(step, k=v)` does), and `direct_pass=False` is accepted.
        """
        flow_where = f"flow '{_DEFINING.get()}'"
        targets = list(target) if isinstance(target, list | tuple) else [target]
        if not targets:
            raise FlowDefinitionError(".map() got an empty list of steps", where=flow_where, hint=".map([a, b])")
        if kwargs and len(targets) > 1:
            raise FlowDefinitionError(
                f".map() got a list of steps and keyword arguments ({', '.join(sorted(kwargs))}): "
                "it cannot tell which step they are for",
                where=flow_where,
                hint="bind them on the step they belong to: .map([a(k=1), b])",
            )
        call = _as_call(targets[0], kwargs, "map")
        where = f"{flow_where}, .map({call.step.name})"
        _check_map_kwargs(call.step, kwargs, where)
        if concurrency_limit is not None:  # upstream lokki's name for MaxConcurrency
            if concurrency is not None and concurrency != concurrency_limit:
                raise FlowDefinitionError(
                    f"concurrency={concurrency!r} and concurrency_limit={concurrency_limit!r} disagree",
                    where=where,
                    hint="concurrency_limit is upstream lokki's name for concurrency: give only concurrency",
                )
            concurrency = concurrency_limit
        if direct_pass is not False:
            raise FlowDefinitionError(
                "direct_pass (upstream lokki: keep a map body's values in memory between its steps) is not "
                "supported: lokki-sam stores each body step's output per item, so a failed run resumes "
                "from the last finished step",
                where=where,
                hint="remove direct_pass; batch_size=N runs N items per Lambda invocation instead of one",
            )
        options = MapOptions.create(
            where=where,
            concurrency=concurrency,
            batch_size=batch_size,
            tolerated_failure=tolerated_failure,
            tolerated_failure_count=tolerated_failure_count,
            mode=mode,
            execution_type=execution_type,
            executor=executor,
        )
        rest = tuple(Op("next", _as_call(t, {}, "map")) for t in targets[1:])
        opened = _open_map(self.ops)
        body_options = opened.map_options if opened is not None and opened.map_options is not None else options
        for body_call in (call, *(op.call for op in rest)):
            _check_body_step(body_call.step, body_options, where)
        return Chain((*self.ops, Op("map", call, options), *rest))

    def agg(self, target: Step | Chain, **kwargs: Any) -> Chain:
        """Fan in: run `target` once on the list of the open map's item results."""
        return Chain((*self.ops, Op("agg", _as_call(target, kwargs, "agg"))))

    def __repr__(self) -> str:
        return " -> ".join(f"{op.kind}:{op.call.step.name}" for op in self.ops)


# ------------------------------------------------------------------------------ flows


class Flow:
    """A flow registered with `@flow`; `graph` is built (and validated) at decoration time.

    `@flow(package="image")` makes container images the default packaging of its steps (a step's
    own `package` wins; without either, config `package`)."""

    def __init__(
        self, func: Callable[..., Any], name: str | None, schedule: str | None, package: str | None = None
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        self.schedule = schedule
        functools.update_wrapper(self, func)
        try:
            self.graph = build_graph(func, self.name, schedule)
            if package is not None:  # the default packaging of the flow's steps (compile/images.py)
                self.graph = dataclasses.replace(self.graph, package=check_package(package, f"flow '{self.name}'"))
        except LokkiError as exc:
            if func.__module__ != "__main__":
                raise
            # `python my_flow.py ...`: a definition error is the user's, shown without a traceback.
            print(f"error: {exc.render()}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None

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
def flow(
    *, name: str | None = None, schedule: str | None = None, package: str | None = None
) -> Callable[[Callable[..., Any]], Flow]: ...


def flow(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    schedule: str | None = None,
    package: str | None = None,
) -> Flow | Callable[[Callable[..., Any]], Flow]:
    """Declare a flow: `@flow` or `@flow(name="nightly", schedule="rate(1 day)")`.

    `schedule` is an EventBridge expression (`rate(...)` or `cron(...)`, checked here: see
    `schedule.py`); scheduled runs use the parameters' defaults.
    """
    if name is not None and not _NAME_RE.match(name):
        raise FlowDefinitionError(f"flow name {name!r} {_NAME_RULE}")

    def wrap(f: Callable[..., Any]) -> Flow:
        return Flow(f, name, schedule, package)

    return wrap(func) if func is not None else wrap


def build_graph(func: Callable[..., Any], name: str, schedule: str | None) -> FlowGraph:
    where = f"flow '{name}'"
    if not _NAME_RE.match(name):
        raise FlowDefinitionError(f"flow names {_NAME_RULE}", where=where)
    if schedule is not None:
        from lokki_sam.schedule import check_schedule  # only scheduled flows pay for it (cold start)

        check_schedule(schedule, where=where)
    params = params_from_signature(func)
    placeholders = {p.name: Placeholder(p.name) for p in params}
    token = _DEFINING.set(name)
    try:
        chain = func(**placeholders)
    except FlowDefinitionError as exc:
        if exc.where is None:  # name the flow, as every definition error does
            raise type(exc)(exc.message, where=where, hint=exc.hint) from None
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
    return GraphBuilder(name, func, params, where).build(chain.ops, schedule, func.__doc__ or "")
