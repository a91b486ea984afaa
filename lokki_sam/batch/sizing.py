"""What AWS Batch accepts as a job's size, checked where a step or lokki.toml declares one.

Fargate (the default platform) offers fixed vCPU/memory pairs (AWS's Fargate task-size table,
the same for Batch jobs on Fargate); EC2 (chosen when a GPU is asked, or by `platform="ec2"`)
takes whole vCPUs, any memory and GPUs. Batch's job timeout starts at 60 s; a Standard
workflow, the only kind whose `.sync` Task can wait for a job, lasts at most a year.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lokki_sam.errors import FlowDefinitionError

PLATFORMS = ("fargate", "ec2")
MIN_TIMEOUT = 60  # Batch's JobTimeout.attemptDurationSeconds minimum
MAX_TIMEOUT = 365 * 24 * 3600  # a Standard workflow's longest execution: a .sync Task waits no longer
MIN_MEMORY = 4  # MiB: Batch's floor for a container on EC2

# vCPUs -> the memory values (MiB) Fargate offers with them.
FARGATE: dict[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1024, 4096 + 1, 1024)),
    1: tuple(range(2048, 8192 + 1, 1024)),
    2: tuple(range(4096, 16384 + 1, 1024)),
    4: tuple(range(8192, 30720 + 1, 1024)),
    8: tuple(range(16384, 61440 + 1, 4096)),
    16: tuple(range(32768, 122880 + 1, 8192)),
}
FARGATE_MEMORY = frozenset(m for values in FARGATE.values() for m in values)


def platform_of(platform: str | None, gpu: int | None) -> str:
    """The platform a Batch step runs on: the one it names, else EC2 for a GPU, else Fargate."""
    if platform is not None:
        return platform
    return "ec2" if gpu else "fargate"


def cpu_problem(cpu: Any, platform: str) -> str | None:
    """Why `cpu` is not a vCPU count the platform accepts, or None."""
    if not _is_number(cpu):
        return f"cpu must be a number of vCPUs, got {cpu!r}"
    if platform == "fargate" and cpu not in FARGATE:
        return f"Fargate offers {_shown(FARGATE)} vCPUs, not {shown_number(cpu)}"
    if platform == "ec2" and (not float(cpu).is_integer() or cpu < 1):
        return f"on EC2 a job takes whole vCPUs (1 or more), not {shown_number(cpu)}"
    return None


def any_cpu_problem(cpu: Any) -> str | None:
    """Why `cpu` fits neither platform (the `[batch] cpu` default, before the platform is known)."""
    fargate, ec2 = cpu_problem(cpu, "fargate"), cpu_problem(cpu, "ec2")
    return None if fargate is None or ec2 is None else f"{fargate}; {ec2}"


def job_queue_problem(queue: str) -> str | None:
    """Why `queue` names no job queue (a name, or a job queue ARN), or None."""
    if queue.startswith("arn:"):
        if not re.fullmatch(r"arn:aws[a-z-]*:batch:[a-z0-9-]+:\d{12}:job-queue/[A-Za-z0-9][A-Za-z0-9_-]{0,127}", queue):
            return "a job queue ARN looks like arn:aws:batch:REGION:ACCOUNT:job-queue/NAME"
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", queue):
        return "a job queue name has 1 to 128 letters, digits, '-' and '_', starting with a letter or digit"
    return None


def ids_problem(kind: str) -> Callable[[list[str]], str | None]:
    """A check of a list of VPC resource ids of `kind` (`subnet`, `sg`): `subnet-0abc...`."""

    def problem(ids: list[str]) -> str | None:
        bad = [i for i in ids if not re.fullmatch(rf"{kind}-[0-9a-f]{{8,17}}", str(i))]
        if not ids:
            return f"give at least one id ({kind}-...), or leave the key out"
        return f"not {kind} ids ({kind}- and 8 or 17 hex digits): {', '.join(map(repr, bad))}" if bad else None

    return problem


def memory_problem(memory: Any, platform: str) -> str | None:
    if not _is_int(memory):
        return f"memory must be an integer number of MiB, got {memory!r}"
    if platform == "fargate" and memory not in FARGATE_MEMORY:
        return f"Fargate offers no job size with {memory} MiB of memory (512 to 122880 MiB, in set steps)"
    if memory < MIN_MEMORY:
        return f"a Batch job needs at least {MIN_MEMORY} MiB, not {memory!r}"
    return None


def pair_problem(cpu: float, memory: int) -> str | None:
    """Why Fargate does not offer `cpu` vCPUs with `memory` MiB, or None (both already valid alone)."""
    offered = FARGATE.get(cpu, ())
    if memory in offered:
        return None
    with_memory = [shown_number(c) for c, values in FARGATE.items() if memory in values]
    return f"Fargate offers {shown_number(cpu)} vCPU with {_range(offered)} MiB, not {memory} MiB" + (
        f"; {memory} MiB comes with {' or '.join(map(str, with_memory))} vCPU" if with_memory else ""
    )


def timeout_problem(timeout: Any) -> str | None:
    if not _is_int(timeout) or not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        return (
            f"a Batch job's timeout is an integer from {MIN_TIMEOUT} (Batch's minimum) to {MAX_TIMEOUT} "
            f"seconds (a Standard workflow's year), got {timeout!r}"
        )
    return None


def gpu_problem(gpu: Any, platform: str) -> str | None:
    if not _is_int(gpu) or gpu < 1:
        return f"gpu must be an integer >= 1 (GPUs per job), got {gpu!r}"
    if platform == "fargate":
        return "Fargate has no GPUs: a GPU job runs on EC2"
    return None


def describe_fargate() -> str:
    """Fargate's table in one line, for messages and docs."""
    return "; ".join(f"{shown_number(cpu)} vCPU: {_range(values)}" for cpu, values in FARGATE.items())


def _range(values: tuple[int, ...]) -> str:
    if len(values) <= 3:
        return ", ".join(map(str, values))
    return f"{values[0]}-{values[-1]} in steps of {values[1] - values[0]}"


def _shown(table: dict[float, Any]) -> str:
    return ", ".join(str(shown_number(c)) for c in table)


def shown_number(value: float) -> int | float:
    """2.0 -> 2, 0.5 -> 0.5: vCPUs as people write them."""
    return int(value) if float(value).is_integer() else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class JobSize:
    """What one job of a Batch step asks for, the step's options completed by `[batch]`."""

    platform: str
    cpu: float
    memory: int  # MiB
    gpu: int
    timeout: int  # seconds


def job_size(
    cpu: float | None,
    memory: int | None,
    gpu: int | None,
    timeout: int | None,
    platform: str | None,
    defaults: Mapping[str, Any],
    where: str,
) -> JobSize:
    """A Batch step's job size: its own settings, else lokki.toml's `[batch]` ones (`defaults`:
    config values). A default that does not fit the step's own settings (`[batch] memory = 2048`
    with `cpu=4` on Fargate) is an error naming both, before anything is generated or run."""
    runs_on = platform or ("ec2" if gpu else defaults["batch_platform"])
    size = JobSize(
        runs_on,
        cpu if cpu is not None else defaults["batch_cpu"],
        memory if memory is not None else defaults["batch_memory"],
        gpu or 0,
        timeout if timeout is not None else defaults["batch_timeout"],
    )
    problem = cpu_problem(size.cpu, runs_on) or memory_problem(size.memory, runs_on)
    if problem is None and runs_on == "fargate":
        problem = pair_problem(size.cpu, size.memory)
    if problem is not None:
        own = [f"{name}={shown_number(v)}" for name, v in (("cpu", cpu), ("memory", memory)) if v is not None]
        taken = [f"[batch] {name}" for name, v in (("cpu", cpu), ("memory", memory)) if v is None]
        raise FlowDefinitionError(
            f"{problem}: the step gives {', '.join(own) or 'no size'}"
            + (f", lokki.toml's {' and '.join(taken)} the rest" if taken else ""),
            where=where,
            hint="give the step both cpu and memory, or change [batch] in lokki.toml; "
            f"Fargate's vCPU/memory pairs: {describe_fargate()}",
        )
    return size
