"""How many items each distributed map of an execution has, for progress: read from the state
the map's source step left (its `count`), since a map run's own `itemCounts.total` counts only
the items started so far."""

from __future__ import annotations

import json
from typing import Any

from lokki_sam import names
from lokki_sam.cloud.aws import aws_errors
from lokki_sam.compile.asl import ITEMS
from lokki_sam.ir import FlowGraph
from lokki_sam.protocol import COUNT

SOURCE_RESULT = ITEMS.removeprefix("$.")  # where the source's Task state puts the manifest's location


def map_totals(sfn: Any, arn: str, graph: FlowGraph) -> dict[str, int]:
    """Map label (as map runs name it) -> item count, for the maps whose source has finished."""
    sources = {block.source: names.map_label(block.id) for block in graph.maps if block.options.mode != "inline"}
    found: dict[str, int] = {}
    if not sources:
        return found
    with aws_errors("execution history"):
        pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn, includeExecutionData=True)
        for page in pages:
            for event in page.get("events", ()):
                details = event.get("stateExitedEventDetails") or {}
                label = sources.get(str(details.get("name")))
                count = _count(details.get("output")) if label else None
                if label and count is not None:
                    found[label] = count
    return found


def _count(output: Any) -> int | None:
    try:
        state = json.loads(output) if isinstance(output, str) else None
    except json.JSONDecodeError:
        return None
    result = state.get(SOURCE_RESULT) if isinstance(state, dict) else None
    count = result.get(COUNT) if isinstance(result, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None
