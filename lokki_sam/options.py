"""Step, map and retry options, each value checked where it enters.

`Retry` is built by users, so it checks itself; `StepOptions.create` and `MapOptions.create` are
the checking constructors that `@step` and `.map()` call, so the builder never re-checks options.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lokki_sam.errors import FlowDefinitionError
from lokki_sam.names import GENERATED_SIDS, WILDCARD_REASON_KEY

ARCHITECTURES = ("x86_64", "arm64")
EXECUTION_TYPES = ("STANDARD", "EXPRESS")
MAP_MODES = ("distributed", "inline")
PACKAGES = ("zip", "image")  # how a step's function is packaged: a zip with layers, or a container image
COMPUTES = ("lambda", "batch")  # where a step runs: an AWS Lambda function, or an AWS Batch job
# What runs a map's batches in a local run; auto: one thread first, then threads or processes.
EXECUTORS = ("auto", "threads", "processes")
LAMBDA_MAX_TIMEOUT = 900
# Environment variables that look like secrets (by name or value) must hold a reference, never the value.
_SECRET_REFERENCE_RE = re.compile(r"^(/[A-Za-z0-9_.\-/]+|arn:aws[a-z-]*:(ssm|secretsmanager):\S+)$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


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


def RetryConfig(
    retries: int = 0,
    delay: float = 1.0,
    backoff: float = 1.0,
    max_delay: float = 60.0,
    exceptions: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
) -> Retry:
    """Upstream lokki's `RetryConfig`, with its field names and defaults (no retry, a constant
    1 s wait, at most 60 s): the same policy as a `Retry`. `retries` counts retries after the
    first attempt there too; retry n waits min(delay * backoff**(n-1), max_delay). Unlike
    upstream, `backoff` must be at least 1 (a Step Functions BackoffRate)."""
    chosen = (exceptions,) if isinstance(exceptions, type) else tuple(exceptions)
    return Retry(retries=retries, interval=delay, backoff=backoff, max_delay=max_delay, exceptions=chosen)


@dataclass(frozen=True)
class StepOptions:
    """Per-step settings used by the runners (retry) and the SAM renderer (the rest).

    Build it with `StepOptions.create(...)`, which checks every value where it enters."""

    retry: Retry | None = None
    memory: int | None = None
    timeout: int | None = None
    architecture: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    permissions: tuple[Mapping[str, Any], ...] = ()
    # The step's own dependencies: requirement lines, or the path of a requirements file (relative
    # to the step's module), packaged into a Lambda layer of the functions that need them.
    requirements: tuple[str, ...] | str = ()
    # "zip" or "image" (a container image: no 250 MB limit); None: the flow's, else config `package`.
    package: str | None = None
    # "lambda" or "batch" (an AWS Batch job: `memory` and `timeout` then size the job, and `cpu`,
    # `gpu` and `platform` apply; None in any of them: lokki.toml's `[batch]`). Switching a step
    # between the two changes where it runs, never its result: same protocol, store and keys.
    compute: str = "lambda"
    cpu: float | None = None
    gpu: int | None = None
    platform: str | None = None  # "fargate" or "ec2"; None: EC2 with a GPU, else Fargate

    @property
    def on_batch(self) -> bool:
        return self.compute == "batch"

    @classmethod
    def create(
        cls,
        *,
        where: str,
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
    ) -> StepOptions:
        compute = _check_choice(compute, "compute", COMPUTES, where) or "lambda"
        if compute == "lambda":
            memory, timeout = _check_lambda_sizing(
                where, cpu=cpu, gpu=gpu, platform=platform, memory=memory, timeout=timeout
            )
        else:
            _check_batch_sizing(
                where, cpu=cpu, gpu=gpu, platform=platform, memory=memory, timeout=timeout, package=package
            )
        return cls(
            retry=Retry.parse(retry, where=where),
            memory=memory,
            timeout=timeout,
            architecture=_check_choice(architecture, "architecture", ARCHITECTURES, where),
            environment=_check_environment(environment, where),
            permissions=_check_permissions(permissions, where),
            requirements=_check_requirements(requirements, where),
            package=check_package(package, where),
            compute=compute,
            cpu=cpu,
            gpu=gpu,
            platform=platform,
        )


@dataclass(frozen=True)
class MapOptions:
    """Fan-out settings: `concurrency` -> MaxConcurrency, `batch_size` -> ItemBatcher,
    `tolerated_failure` (percent) / `tolerated_failure_count` -> ToleratedFailure*; `executor`
    is local runs' only: threads or processes (None: the run's)."""

    concurrency: int | None = None
    batch_size: int = 1
    tolerated_failure: float | None = None
    tolerated_failure_count: int | None = None
    mode: str = "distributed"
    execution_type: str = "STANDARD"
    executor: str | None = None

    @classmethod
    def create(
        cls,
        *,
        where: str,
        concurrency: int | None = None,
        batch_size: int = 1,
        tolerated_failure: float | None = None,
        tolerated_failure_count: int | None = None,
        mode: str = "distributed",
        execution_type: str = "STANDARD",
        executor: str | None = None,
    ) -> MapOptions:
        """A checked MapOptions (what `.map()` builds)."""
        options = cls(
            concurrency, batch_size, tolerated_failure, tolerated_failure_count, mode, execution_type, executor
        )
        options._check(where)
        return options

    def _check(self, where: str) -> None:
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
        if self.executor is not None and self.executor not in EXECUTORS:
            raise FlowDefinitionError(
                f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}",
                where=where,
                hint="threads suit steps that wait (I/O); processes use every core for Python code",
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


def _check_requirements(value: Sequence[str] | str | None, where: str) -> tuple[str, ...] | str:
    if value is None:
        return ()
    from lokki_sam.dependencies import check_requirements  # only flows that declare some pay for it

    return check_requirements(value, where)


def check_package(value: str | None, where: str) -> str | None:
    """A step's or flow's `package`: "zip", "image" or None (inherit)."""
    if value is not None and value not in PACKAGES:
        raise FlowDefinitionError(
            f"package must be one of {', '.join(PACKAGES)}, got {value!r}",
            where=where,
            hint='package="image" builds the function as a container image (no 250 MB limit); "zip" is the default',
        )
    return value


def sizing_from_upstream(
    where: str,
    *,
    compute: str | None,
    job_type: str | None,
    cpu: float | None,
    vcpu: float | None,
    memory: int | None,
    memory_mb: int | None,
    timeout: int | None,
    timeout_seconds: int | None,
) -> tuple[str | None, float | None, int | None, int | None]:
    """(compute, cpu, memory, timeout) from `@step`'s two spellings of each setting: upstream
    lokki's (`job_type`, `vcpu`, `memory_mb`, `timeout_seconds`) and lokki-sam's. Either may be
    used; both names of one setting together are refused, even with equal values."""
    pairs = (
        (compute, "compute", job_type, "job_type"),
        (cpu, "cpu", vcpu, "vcpu"),
        (memory, "memory", memory_mb, "memory_mb"),
        (timeout, "timeout", timeout_seconds, "timeout_seconds"),
    )
    for ours, ours_name, theirs, theirs_name in pairs:
        if ours is not None and theirs is not None:
            raise FlowDefinitionError(
                f"{ours_name} and {theirs_name} are one setting (lokki-sam's name and upstream lokki's): give one",
                where=where,
                hint=f"keep {ours_name}={ours!r} or {theirs_name}={theirs!r}",
            )
    if job_type is not None and job_type not in COMPUTES:
        raise FlowDefinitionError(
            f"job_type must be one of {', '.join(COMPUTES)}, got {job_type!r}",
            where=where,
            hint='job_type="batch" (or compute="batch") runs the step as an AWS Batch job',
        )
    return (
        compute if compute is not None else job_type,
        cpu if cpu is not None else vcpu,
        memory if memory is not None else memory_mb,
        timeout if timeout is not None else timeout_seconds,
    )


def _check_lambda_sizing(
    where: str, *, cpu: float | None, gpu: int | None, platform: str | None, memory: int | None, timeout: int | None
) -> tuple[int | None, int | None]:
    """A Lambda step's memory and timeout; the Batch-only settings are refused with what to write."""
    if cpu is not None:
        raise FlowDefinitionError(
            "cpu (vcpu) has no meaning on AWS Lambda: its CPU grows with memory (one vCPU at 1769 MB)",
            where=where,
            hint='set memory=... instead, or run the step as an AWS Batch job: compute="batch"',
        )
    for value, name in ((gpu, "gpu"), (platform, "platform")):
        if value is not None:
            raise FlowDefinitionError(
                f"{name} is a setting of AWS Batch jobs; this step runs on AWS Lambda",
                where=where,
                hint=f'add compute="batch" to run it as a Batch job, or remove {name}',
            )
    return (
        _check_range(memory, "memory", 128, 10240, where),
        _check_range(timeout, "timeout", 1, LAMBDA_MAX_TIMEOUT, where),
    )


def _check_batch_sizing(
    where: str,
    *,
    cpu: float | None,
    gpu: int | None,
    platform: str | None,
    memory: int | None,
    timeout: int | None,
    package: str | None,
) -> None:
    """A Batch step's size, as far as the step itself gives it (lokki.toml's `[batch]` fills the
    rest when the flow is generated, planned or run: `lokki_sam.batch.sizing`)."""
    from lokki_sam.batch import sizing  # only flows with Batch steps pay for it (cold start)

    platform = _check_choice(platform, "platform", sizing.PLATFORMS, where)
    runs_on = sizing.platform_of(platform, gpu)
    problems = [
        (sizing.gpu_problem(gpu, runs_on) if gpu is not None else None, "gpu"),
        (sizing.cpu_problem(cpu, runs_on) if cpu is not None else None, "cpu"),
        (sizing.memory_problem(memory, runs_on) if memory is not None else None, "memory"),
        (sizing.timeout_problem(timeout) if timeout is not None else None, "timeout"),
    ]
    if runs_on == "fargate" and cpu is not None and memory is not None and not any(p for p, _ in problems):
        problems.append((sizing.pair_problem(cpu, memory), "cpu and memory"))
    fargate_pairs = (
        f'Fargate\'s vCPU/memory pairs: {sizing.describe_fargate()}; or platform="ec2" (whole vCPUs, any memory)'
    )
    hints = {
        "gpu": 'a GPU job runs on EC2: drop platform="fargate" (gpu=N alone chooses EC2)',
        "cpu": fargate_pairs,
        "memory": fargate_pairs,
        "cpu and memory": fargate_pairs,
        "timeout": "split the work into map items, or checkpoint it and let a resume continue",
    }
    for problem, setting in problems:
        if problem is not None:
            hint = hints[setting] if runs_on == "fargate" or setting in ("gpu", "timeout") else None
            raise FlowDefinitionError(f"{problem} (an AWS Batch step)", where=where, hint=hint)
    if package == "zip":
        raise FlowDefinitionError(
            'package="zip" cannot hold an AWS Batch job: a Batch step always runs as a container image',
            where=where,
            hint='remove package (or use package="image")',
        )


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
    from lokki_sam.secret_check import name_looks_secret, value_looks_secret  # steps with an environment only

    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
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
        by_name = name_looks_secret(key) and not _SECRET_REFERENCE_RE.match(value)
        if by_name or value_looks_secret(value):
            why = "its name says it is a secret" if by_name else "its value looks like a credential"
            raise FlowDefinitionError(
                f"environment variable {key} holds a literal secret ({why}); "
                "templates and Lambda configurations must never hold secret values",
                where=where,
                hint="pass a reference instead (an SSM parameter name like '/my/param', or a Secrets Manager "
                "or SSM ARN), grant the step read access with `permissions`, and read the value at run time "
                "(a CloudFormation dynamic reference would still copy the value into the function's configuration)",
            )
    return tuple(sorted(env.items()))


def _check_permissions(perms: list[Mapping[str, Any]] | None, where: str) -> tuple[Mapping[str, Any], ...]:
    """IAM statements for the step's role. A wildcard action (`*`, `s3:*`) or resource (`*`) is
    refused unless the statement says why (`WildcardReason`), which the template then shows; the
    Sids lokki-sam writes are reserved, so no statement can pass for a generated one."""
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
        unknown = set(perm) - {"Effect", "Action", "Resource", "Condition", "Sid", WILDCARD_REASON_KEY}
        if unknown:
            raise FlowDefinitionError(f"unknown IAM statement key(s) {sorted(unknown)}", where=where)
        if perm.get("Sid") in GENERATED_SIDS:
            raise FlowDefinitionError(
                f"the Sid {perm['Sid']!r} is one lokki-sam uses for its own statements",
                where=where,
                hint="give your statement another Sid (or none)",
            )
        wildcards = [f"action {a!r}" for a in _as_list(perm["Action"]) if a == "*" or str(a).endswith(":*")]
        wildcards += [f"resource {r!r}" for r in _as_list(perm["Resource"]) if r == "*"]
        reason = perm.get(WILDCARD_REASON_KEY)
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise FlowDefinitionError(f"{WILDCARD_REASON_KEY} must be a sentence saying why", where=where)
        if wildcards and reason is None:
            raise FlowDefinitionError(
                f"a permission with a wildcard ({', '.join(wildcards)}) grants more than one step needs",
                where=where,
                hint="name the actions and resource ARNs; if the wildcard really is needed, add "
                f'"{WILDCARD_REASON_KEY}": "why" to the statement (the template shows it)',
            )
        checked.append(dict(perm))
    return tuple(checked)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
