"""Which step of a map body failed for which item, read from the run's artifacts.

Used when the execution history does not say (an emulator without map-run APIs, or child
histories without state names): an item is done by a step when a batch output of that step
covers it, so the failing step is the first one of the map body that did not cover the item.
"""

from __future__ import annotations

import bisect

from lokki_sam import layout
from lokki_sam.execution import RunContext, read_manifest
from lokki_sam.ir import FlowGraph, MapBlock
from lokki_sam.store import ArtifactStore


def batch_starts(store: ArtifactStore, run_id: str, block: MapBlock, node_id: str) -> list[int]:
    """First item index of every stored batch output of `node_id` (from the keys alone)."""
    keys = store.list_keys(layout.batch_output_dir(run_id, block.id, node_id))
    return sorted(int(key.rsplit("/", 1)[-1].split(".")[0]) for key in keys if key.endswith(".pkl"))


def covered(starts: list[int], index: int, batch_size: int) -> bool:
    at = bisect.bisect_right(starts, index) - 1
    return at >= 0 and starts[at] <= index < starts[at] + batch_size


def failed_item(
    store: ArtifactStore, graph: FlowGraph, run_id: str, block: MapBlock, item: int | None
) -> tuple[str, int] | None:
    """(step id, item index) of the first item (or of `item`) the map body did not complete."""
    size = block.options.batch_size
    starts = {node.id: batch_starts(store, run_id, block, node.id) for node in block.nodes}
    if item is None:
        refs = read_manifest(RunContext(graph, store, run_id, {}), block)
        item = next((r.index for r in refs if not covered(starts[block.last.id], r.index, size)), None)
        if item is None:
            return None
    for node in block.nodes:
        if not covered(starts[node.id], item, size):
            return node.id, item
    return None
