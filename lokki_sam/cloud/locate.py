"""Which step of a map body failed for which item, read from the run's artifacts.

Used when the execution history does not say (an emulator without map-run APIs, or child
histories without state names): an item is done by a step when one of that step's stored
outputs covers it (the keys name the items they cover), so the failing step is the first one of
the map body without an output for the item.
"""

from __future__ import annotations

from lokki_sam.execution import RunContext, batch_keys, read_manifest
from lokki_sam.ir import FlowGraph, MapBlock
from lokki_sam.store import ArtifactStore


def failed_item(
    store: ArtifactStore, graph: FlowGraph, run_id: str, block: MapBlock, item: int | None
) -> tuple[str, int] | None:
    """(step id, item index) of the first item (or of `item`) the map body did not complete.

    Best effort, from the keys alone (which items each stored object covers), whatever inputs
    the outputs were computed from: the failure records say more where the runtime wrote them."""
    ctx = RunContext(graph, store, run_id, {})
    done = {
        node.id: {i for _, first, last, _ in batch_keys(ctx, node) for i in range(first, last + 1)}
        for node in block.nodes
    }
    if item is None:
        item = next((r.index for r in read_manifest(ctx, block) if r.index not in done[block.last.id]), None)
        if item is None:
            return None
    for node in block.nodes:
        if item not in done[node.id]:
            return node.id, item
    return None
