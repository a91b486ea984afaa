"""Batch steps in a local run: each runs in a subprocess through the job's own entry point
(`python -m lokki_sam.batch`), against the run's local store, with the environment the state
machine would give its job. What it computes is what a Lambda step or the cloud computes (the
same protocol, store and keys); its declared size is reported, not enforced.

The local runner calls `run_task` for a Batch step outside maps and `compute_batch` for a Batch
step in a map's body; every other step keeps running in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lokki_sam import __version__, execution, names, runlog
from lokki_sam.batch import job, sizing
from lokki_sam.errors import LokkiError
from lokki_sam.execution import RunContext
from lokki_sam.ir import FlowGraph, MapBlock, Node
from lokki_sam.protocol import PROTOCOL_VERSION, ItemRef, MapEvent, Stamp, TaskEvent
from lokki_sam.store import LocalStore

STDERR_SHOWN = 4000  # characters of a failed job's stderr in the error (its end: the traceback)


class BatchStepFailed(Exception):
    """A Batch step's job failed: its stderr (the user's traceback) is the message. Not a LokkiError:
    in a map it is one batch's failure, which the map may tolerate, as a Lambda step's exception is.
    The step's Retry already ran inside the job: the runner does not retry it again."""


def announce(graph: FlowGraph, report: Callable[[str], None]) -> None:
    """Before a local run: each Batch step's size, checked and reported (lokki.toml's `[batch]`
    of the current directory completes it, as the CLI reads it)."""
    if any(step.options.on_batch for step in graph.steps):
        from lokki_sam.config import load_config

        for line in describe_sizes(graph, load_config().values):
            report(line)


def describe_sizes(graph: FlowGraph, defaults: Mapping[str, Any]) -> list[str]:
    """One line per Batch step with its job size (its own settings completed by `[batch]`);
    a size AWS Batch would refuse is an error here, before anything runs."""
    lines = []
    for step in graph.steps:
        options = step.options
        if not options.on_batch:
            continue
        where = f"flow '{graph.name}', step '{step.name}'"
        size = sizing.job_size(
            options.cpu, options.memory, options.gpu, options.timeout, options.platform, defaults, where
        )
        gpu = f", {size.gpu} GPU" if size.gpu else ""
        lines.append(
            f"step '{step.name}' runs as an AWS Batch job: here in a subprocess, its declared "
            f"{sizing.shown_number(size.cpu)} vCPU, {size.memory} MiB{gpu} ({size.platform}), timeout "
            f"{size.timeout} s reported, not enforced"
        )
    return lines


def run_task(ctx: RunContext, node: Node) -> None:
    """A Batch step outside maps, as its job would run it (the runner skips a finished one)."""
    event = TaskEvent(node.id, ctx.execution, _params(ctx)).to_payload()
    _run(ctx, node, event)
    ctx.pointers.pop(node.id, None)  # the job pointed the run at its output: read it from the store


def compute_batch(
    ctx: RunContext, block: MapBlock, node: Node, refs: Sequence[ItemRef], values: list[Any]
) -> list[Any]:
    """A Batch step of a map's body on one batch of items (`values`: the previous step's outputs,
    in memory), as its job would run it: the previous outputs are stored under this batch's keys
    first (where the job reads them), and the job's outputs are read back for the next step."""
    position = block.nodes.index(node)
    indexes = [r.index for r in refs]
    ids = execution.item_ids(ctx, block, refs)
    if position > 0:
        previous = block.nodes[position - 1]
        execution.write_batch_output(ctx, previous, indexes, ids[previous.id], values)
    source = execution.source_identity(ctx, block)
    event = MapEvent(node.id, block.id, tuple(refs), ctx.execution, _params(ctx), source)
    _run(ctx, node, event.to_payload(batched=len(refs) > 1))
    found = execution.previous_outputs(ctx, node, dict(zip(indexes, ids[node.id], strict=True)))
    return [found[i][0] for i in indexes]


def _params(ctx: RunContext) -> dict[str, Any]:
    """The run's parameters as the execution input carries them, with the steps --rerun forced."""
    from lokki_sam.params import to_record

    params: dict[str, Any] = to_record(ctx.params, where=ctx.where())
    if ctx.reruns:
        params[names.RERUN_INPUT_KEY] = dict(ctx.reruns)
    return params


def _run(ctx: RunContext, node: Node, event: dict[str, Any]) -> None:
    graph = ctx.graph
    where = f"flow '{graph.name}', run {ctx.run_id}"
    if not isinstance(ctx.store, LocalStore):
        raise LokkiError(
            f"step '{node.id}' runs as an AWS Batch job, which a local run starts in a subprocess on a local "
            f"store; this run's store is {ctx.store.describe('')}",
            where=where,
            hint="run the flow with a local store (lokki-sam run --store DIR)",
        )
    if graph.module == "__main__":
        raise LokkiError(
            f"step '{node.id}' runs as an AWS Batch job, in a subprocess that imports the flow's module; "
            "a flow started as a script (`python flow.py run`) has no module to import",
            where=where,
            hint="run it with `lokki-sam run flow.py`",
        )
    stamp = Stamp(PROTOCOL_VERSION, graph.fingerprints.flow, graph.fingerprint(node.id)).to_json()
    env = _environment(ctx, node, ctx.store, {**event, "lokki": stamp})
    done = subprocess.run(
        [sys.executable, "-m", "lokki_sam.batch"], env=env, capture_output=True, text=True, check=False
    )
    sys.stdout.write(done.stdout)  # the step's prints, where an in-process step's go
    if done.returncode == 0:
        sys.stderr.write(done.stderr)
        return
    stderr = done.stderr.strip()[-STDERR_SHOWN:]
    if done.returncode == 1:
        raise BatchStepFailed(f"{stderr}\n(in the Batch job's subprocess of step '{node.id}', exit code 1)")
    raise LokkiError(f"step '{node.id}': its Batch job's subprocess exited {done.returncode}:\n{stderr}", where=where)


def _environment(ctx: RunContext, node: Node, store: LocalStore, event: dict[str, Any]) -> dict[str, str]:
    """The job's environment: the process's own (AWS's and the user's variables a step may read),
    the function settings a job definition holds, the Task's references, and this interpreter's
    import path, so the subprocess imports the flow's module exactly as this process did."""
    env = dict(os.environ)
    env.update(
        {
            names.ENV_MODULE: ctx.graph.module,
            names.ENV_FLOW: ctx.graph.name,
            names.ENV_STEP: node.step.name,
            names.ENV_BUCKET: "local",  # unused with a local store, but a job's environment has one
            names.ENV_PREFIX: "local",
            names.ENV_VERSION: __version__,
            job.ENV_LOCAL_STORE: str(store.root),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)),
            # The job's run log records (start, finish) are the cloud's: the local run reports itself.
            runlog.ENV_LOG_LEVEL: "WARNING",
        }
    )
    env.update(job.environment_for(event))
    return env
