"""lokki-sam: Python data pipelines that run locally and on AWS Step Functions + Lambda."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from lokki_sam.dsl import Flow, Step, flow, step
from lokki_sam.ir import FlowGraph
from lokki_sam.options import Retry, RetryConfig

if TYPE_CHECKING:
    from lokki_sam.local import RunOutcome, run_flow


def __getattr__(name: str) -> Any:
    # The local runner (thread pools, progress) loads on first use: a Lambda cold start that
    # imports lokki_sam for @step/@flow never needs it.
    if name in ("RunOutcome", "run_flow"):
        from lokki_sam import local

        return getattr(local, name)
    raise AttributeError(f"module 'lokki_sam' has no attribute {name!r}")


def main(target: Flow) -> None:
    """Give a flow module its own command line: `python my_flow.py run --limit 2`."""
    # Not re-exported by lokki_sam.cli: a function there named like its submodule `flow_main` was
    # replaced by the submodule on first import, and a second main() call failed.
    from lokki_sam.cli.flow_main import flow_main

    flow_main(target)


__all__ = [
    "Flow",
    "FlowGraph",
    "Retry",
    "RetryConfig",
    "RunOutcome",
    "Step",
    "__version__",
    "flow",
    "main",
    "run_flow",
    "step",
]
