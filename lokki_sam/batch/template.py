"""What the SAM template can hold of Batch steps today.

The state machine already submits their jobs (compile/asl.py), but the resources that supply its
`${...}` job definitions and queue (job definition per step, image, compute environment, queue,
roles) are not generated yet: `generate` says so instead of writing a template that cannot deploy.
"""

from __future__ import annotations

from collections.abc import Sequence

from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph


def refuse_batch_steps(graphs: Sequence[FlowGraph]) -> None:
    for graph in graphs:
        batch = [step.name for step in graph.steps if step.options.on_batch]
        if batch:
            shown = ", ".join(f"'{name}'" for name in batch)
            raise LokkiError(
                f"step(s) {shown} run as AWS Batch jobs, and lokki-sam cannot write their template resources "
                "yet (job definitions, image, job queue)",
                where=f"flow '{graph.name}'",
                hint="`lokki-sam run` runs them locally (each in a subprocess, as its job would) and "
                '`lokki-sam plan` prices them; to deploy now, run them on Lambda (remove compute="batch")',
            )
