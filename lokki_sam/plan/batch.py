"""AWS Batch steps in a plan: the jobs one run submits, their Fargate vCPU- and GB-seconds at list
price, and the Batch limits the run would meet.

One job per Task outside maps and, in a distributed map, one per child execution (an item, or a
batch of `batch_size` items: compile/asl.py). Fargate bills a job's vCPUs and memory per second
from the start of its image download to the end of the task, with a one-minute minimum; the
durations are this machine's (`--measure`), without the image pull and start (tens of seconds on
AWS, not counted). EC2 jobs bill the instances of the compute environment, which a plan cannot
know: their jobs are counted, not priced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lokki_sam.batch import sizing
from lokki_sam.batch.sizing import JobSize
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.plan.limits import Limit
from lokki_sam.plan.model import per_call
from lokki_sam.plan.sizing import MapSize

# Fargate, https://aws.amazon.com/fargate/pricing/ (read 2026, us-east-1, Linux): per vCPU-hour
# $0.04048 (x86) / $0.03238 (ARM), per GB-hour $0.004445 / $0.00356, per second, one-minute minimum.
FARGATE_VCPU_HOUR_USD = {"x86_64": 0.04048, "arm64": 0.03238}
FARGATE_GB_HOUR_USD = {"x86_64": 0.004445, "arm64": 0.00356}
FARGATE_MIN_SECONDS = 60
# AWS Batch quotas that cannot be changed, https://docs.aws.amazon.com/batch/latest/userguide/service_limits.html
# (read 2026): SubmitJob "50" transactions per second per account, "Maximum job payload size (for
# SubmitJob API operations) 30 KiB", "Maximum array size for array jobs 10000" (lokki-sam submits
# no array jobs: one job per map child), "Maximum number of jobs in SUBMITTED state 1000000".
SUBMIT_JOB_TPS = 50
MAX_SUBMIT_PAYLOAD_BYTES = 30 * 1024
MAX_SUBMITTED_JOBS = 1_000_000


@dataclass(frozen=True)
class BatchJobs:
    """The jobs one Batch step submits in one run."""

    node: str
    map: str | None
    jobs: int
    size: JobSize
    architecture: str
    job_seconds: float | None  # billed seconds over all jobs; None: durations unknown

    @property
    def vcpu_seconds(self) -> float | None:
        return None if self.job_seconds is None else self.job_seconds * self.size.cpu

    @property
    def gb_seconds(self) -> float | None:
        return None if self.job_seconds is None else self.job_seconds * self.size.memory / 1024

    @property
    def usd(self) -> float | None:
        """Fargate's charge; None when durations are unknown or the job runs on EC2."""
        if self.vcpu_seconds is None or self.gb_seconds is None or self.size.platform != "fargate":
            return None
        vcpu = self.vcpu_seconds / 3600 * FARGATE_VCPU_HOUR_USD[self.architecture]
        return vcpu + self.gb_seconds / 3600 * FARGATE_GB_HOUR_USD[self.architecture]


def jobs(
    graph: FlowGraph,
    sizes: Mapping[str, MapSize],
    defaults: Mapping[str, Any],
    seconds: Mapping[str, Sequence[float]] | None,
) -> list[BatchJobs]:
    """Every Batch step's jobs in one run (`defaults`: the config's values, `[batch]` among them)."""
    out = []
    for stage in graph.stages:
        block = stage if isinstance(stage, MapBlock) else None
        nodes = stage.nodes if isinstance(stage, MapBlock) else (stage,)
        count = _children(stage, sizes) if isinstance(stage, MapBlock) else 1
        for node in nodes:
            if node.step.options.on_batch:
                out.append(_jobs(graph, node, block, count, defaults, seconds))
    return out


def _children(block: MapBlock, sizes: Mapping[str, MapSize]) -> int:
    items = sizes[block.id].items
    return items if block.options.mode == "inline" else -(-items // block.options.batch_size)


def _jobs(
    graph: FlowGraph,
    node: Node,
    block: MapBlock | None,
    count: int,
    defaults: Mapping[str, Any],
    seconds: Mapping[str, Sequence[float]] | None,
) -> BatchJobs:
    opts = node.step.options
    where = f"flow '{graph.name}', step '{node.step.name}'"
    size = sizing.job_size(opts.cpu, opts.memory, opts.gpu, opts.timeout, opts.platform, defaults, where)
    found = per_call(seconds.get(node.id) if seconds else None, count)
    billed: float | None = None
    if found is not None:
        values, repeat = found
        billed = sum(max(FARGATE_MIN_SECONDS, math.ceil(v)) for v in values) * repeat
    architecture = opts.architecture or str(defaults.get("architecture") or "x86_64")
    return BatchJobs(node.id, block.id if block else None, count, size, architecture, billed)


def limits(
    graph: FlowGraph, found: Sequence[BatchJobs], params: Mapping[str, Any], defaults: Mapping[str, Any]
) -> list[Limit]:
    """What a run's Batch jobs meet: the SubmitJob rate, its payload size, the SUBMITTED queue and
    the compute environment's vCPUs (the stack's `[batch] max_vcpus`)."""
    out: list[Limit] = []
    for jobs_ in found:
        if jobs_.map is None:
            continue
        block = graph.get(jobs_.map)
        assert isinstance(block, MapBlock)
        at_once = min(jobs_.jobs, block.options.concurrency or jobs_.jobs)
        out.append(
            Limit(
                "Batch SubmitJob rate",
                jobs_.node,
                at_once,
                SUBMIT_JOB_TPS,
                "jobs at once",
                at_once <= SUBMIT_JOB_TPS or None,
                f"the map's children submit up to {at_once} jobs together; Batch takes {SUBMIT_JOB_TPS} a second "
                "(the Task retries Batch.AWSBatchException with backoff): .map(..., concurrency=50) spreads them",
            )
        )
        vcpus = at_once * jobs_.size.cpu
        out.append(
            Limit(
                "Batch vCPUs at once",
                jobs_.node,
                vcpus,
                int(defaults["batch_max_vcpus"]),
                "vCPUs",
                vcpus <= int(defaults["batch_max_vcpus"]) or None,
                "jobs beyond the compute environment's vCPUs wait in the queue: raise [batch] max_vcpus, "
                "or set the map's concurrency",
            )
        )
        out.append(
            Limit(
                "Batch jobs submitted",
                jobs_.node,
                jobs_.jobs,
                MAX_SUBMITTED_JOBS,
                "jobs",
                jobs_.jobs <= MAX_SUBMITTED_JOBS,
                "raise the map's batch_size: one job runs a batch of items",
                note="one job per map child, no array jobs (so the 10,000-job array size does not apply)",
            )
        )
    if found:
        batches = {j.node: _batch_size(graph, j) for j in found}
        node = max(batches, key=lambda n: batches[n])
        payload = _payload_bytes(params, batches[node])
        out.append(
            Limit(
                "Batch SubmitJob payload",
                node,
                payload,
                MAX_SUBMIT_PAYLOAD_BYTES,
                "bytes",
                payload <= MAX_SUBMIT_PAYLOAD_BYTES,
                "the job's environment carries the flow's parameters: pass large values as an S3 key instead",
            )
        )
    return out


def _batch_size(graph: FlowGraph, jobs_: BatchJobs) -> int:
    block = graph.get(jobs_.map) if jobs_.map else None
    return block.options.batch_size if isinstance(block, MapBlock) else 1


def _payload_bytes(params: Mapping[str, Any], batch: int) -> int:
    """A SubmitJob request's size, estimated: its fixed parts, the parameters as JSON, and a batch's
    item indexes and chunk starts (up to 10 digits each)."""
    fixed = 1024  # names, ARNs, the stamp
    return fixed + len(json.dumps(dict(params), default=str)) + 2 * batch * 11
