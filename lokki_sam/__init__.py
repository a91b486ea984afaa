"""lokki-sam: Python data pipelines that run locally and on AWS Step Functions + Lambda."""

from __future__ import annotations

__version__ = "0.1.0"

from lokki_sam.graph import Flow, FlowGraph, Retry, Step, flow, step
from lokki_sam.local import RunOutcome, run_flow


def main(target: Flow) -> None:
    """Give a flow module its own command line: `python my_flow.py run --limit 2`."""
    from lokki_sam.cli import flow_main

    flow_main(target)


__all__ = ["Flow", "FlowGraph", "Retry", "RunOutcome", "Step", "__version__", "flow", "main", "run_flow", "step"]
