"""Map sizes and step durations, from running the flow locally the way Lambda would run it.

The run goes stage by stage on a temporary LocalStore through `lokki_sam.execution`, as the Lambda
handler does: one call per task, and per map batch one call per body step (a fresh RunContext
each, as each invocation has its own). Sizing stops after the last map source it needs; with
`measure` it runs the whole flow and keeps every call's duration. The chunking of a map's items
is the store's own (`execution.write_map_items`), so the planned PUTs are the ones S3 will get.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam import execution, layout
from lokki_sam.errors import LokkiError
from lokki_sam.execution import CHUNK_MAX_ITEMS, RunContext
from lokki_sam.installed import check_installed
from lokki_sam.ir import FlowGraph, MapBlock, Node, Stage
from lokki_sam.protocol import ItemRef
from lokki_sam.retry import call_with_retry
from lokki_sam.serialization import DIGEST_LENGTH
from lokki_sam.store import LocalStore


class PlanError(LokkiError):
    """`lokki-sam plan` cannot size or measure the flow as asked (bad --items, a step failing locally)."""


@dataclass(frozen=True)
class MapSize:
    """A map's items as the cloud run will see them; `estimated` when --items gave the count."""

    items: int
    chunks: int  # objects the source writes its items in (one PUT each)
    manifest_bytes: int  # the manifest JSON the ItemReader reads (the state itself for INLINE maps)
    source: str  # "local run" or "--items"

    @property
    def estimated(self) -> bool:
        return self.source == "--items"


@dataclass
class Measurement:
    """Per node, the local duration of each call (one Lambda invocation each), in call order; per
    node, the largest object it read or wrote (local bytes: S3 compresses, so an upper bound)."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    largest: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)  # attempts the step's Retry made again


def sized_by_items(n: int, batch_size: int) -> MapSize:
    """The manifest and chunks for `n` items without running anything: chunks as the store cuts
    items of up to ~1 KiB (CHUNK_MAX_ITEMS a chunk, aligned to batches); the manifest exactly."""
    size = max(batch_size, (CHUNK_MAX_ITEMS // batch_size) * batch_size)
    return MapSize(n, -(-n // size), manifest_bytes(n, size), "--items")


def manifest_bytes(n: int, chunk: int) -> int:
    """Length of the manifest `execution.write_map_items` writes for n items in chunks of `chunk`,
    in closed form (a plan of 10**12 items is as quick as one of 10).

    Entry i is `{"c":<chunk start>,"d":"<digest>","i":<i>}` (sorted keys, no spaces: ArtifactStore.put_json),
    entries are joined by commas inside `[]`. The chunk start of items k*chunk .. k*chunk+chunk-1
    is k*chunk, so the chunk starts' digits are those of the multiples of `chunk`, each `chunk`
    times, the last chunk holding the remainder."""
    if n == 0:
        return 2  # []
    entry = len('{"c":,"d":"","i":}') + DIGEST_LENGTH  # and the item's digest, always as long
    chunks = -(-n // chunk)
    last = layout.chunk_start(n - 1, chunk)  # the last chunk's start, (chunks - 1) * chunk
    starts = chunk * digits_of_multiples(chunks - 1, chunk) + (n - last) * len(str(last))
    return 2 + n * entry + digits_of_multiples(n, 1) + starts + (n - 1)


def digits_of_multiples(count: int, step: int) -> int:
    """`sum(len(str(k * step)) for k in range(count))`, one term per number of digits."""
    total = below = 0
    digits = 1
    while below < count:
        upto = min(count, -(-(10**digits) // step))  # the k with k * step < 10**digits
        total += (upto - below) * digits
        below, digits = upto, digits + 1
    return total


class LocalPass:
    """One local run on a temporary store; `close()` removes it."""

    def __init__(self, graph: FlowGraph, params: Mapping[str, Any]) -> None:
        self.graph = graph
        self.params = params
        self._tmp = tempfile.TemporaryDirectory(prefix="lokki-plan-")
        self.store = LocalStore(self._tmp.name)
        self.run_id = layout.new_run_id(graph.name)
        self.measured = Measurement()
        self._purpose = ""
        _ = graph.fingerprints  # computed once here, not inside the first timed call

    def close(self) -> None:
        self._tmp.cleanup()

    def _ctx(self) -> RunContext:
        return RunContext(self.graph, self.store, self.run_id, self.params)

    # ------------------------------------------------------------------------------ running

    def run(self, stages: Sequence[Stage], purpose: str) -> None:
        """Run `stages` in order; `purpose` says why in the error if a step fails."""
        check_installed(self.graph)
        self._purpose = purpose
        for stage in stages:
            if isinstance(stage, MapBlock):
                self._map(stage)
            else:
                self._call(stage, functools.partial(self._task, stage))

    def _map(self, block: MapBlock) -> None:
        refs = execution.read_manifest(self._ctx(), block)
        # An INLINE map runs one item per iteration; a distributed one one batch per child.
        size = 1 if block.options.mode == "inline" else block.options.batch_size
        for first in range(0, len(refs), size):
            batch: list[ItemRef] = refs[first : first + size]
            for node in block.nodes:
                self._call(node, functools.partial(self._batch, block, node, batch))

    # Each call (each attempt of it) gets a fresh RunContext, as each Lambda invocation has its own.
    def _task(self, node: Node) -> None:
        execution.run_task(self._ctx(), node)

    def _batch(self, block: MapBlock, node: Node, batch: list[ItemRef]) -> None:
        execution.run_batch(self._ctx(), block, node, batch)

    def _call(self, node: Node, call: Callable[[], None]) -> None:
        """One invocation, retried as the step's Retry says (a flaky step is measured as it runs
        in the cloud); its duration is the successful attempt's, as each attempt is billed apart."""
        began = time.perf_counter()

        def attempt() -> None:
            nonlocal began
            began = time.perf_counter()
            call()

        def retried(number: int, error: BaseException, wait: float) -> None:
            self.measured.retries[node.id] = self.measured.retries.get(node.id, 0) + 1

        try:
            call_with_retry(attempt, node.step.options.retry, on_retry=retried)
        except LokkiError:
            raise
        except Exception as exc:
            raise PlanError(
                f"step '{node.id}' failed when run locally {self._purpose}: {type(exc).__name__}: {exc}",
                where=f"flow '{self.graph.name}'",
                hint=self._hint(),
            ) from None
        self.measured.seconds.setdefault(node.id, []).append(time.perf_counter() - began)

    def _hint(self) -> str:
        maps = ", ".join(m.id for m in self.graph.maps)
        if self._purpose.startswith("to size"):
            return f"give the map sizes instead (--items N, or --items MAP=N for {maps}), or fix the step"
        return "plan without --measure, or debug the step with `lokki-sam run`"

    # ------------------------------------------------------------------------------ reading

    def map_size(self, block: MapBlock) -> MapSize:
        ctx = self._ctx()
        items_dir = layout.output_dir(self.run_id, block.source, execution.source_identity(ctx, block)) + "items/"
        chunks = len(self.store.list_keys(items_dir))
        manifest = self.store.get_bytes(execution.manifest_key(ctx, block))
        return MapSize(len(execution.read_manifest(ctx, block)), chunks, len(manifest), "local run")

    def largest_objects(self) -> dict[str, int]:
        """Per node, the largest object under its own directory (what it wrote)."""
        found: dict[str, int] = {}
        for node in self.graph.nodes:
            node_dir = Path(self._tmp.name) / layout.node_dir(self.run_id, node.id)
            sizes = [p.stat().st_size for p in node_dir.rglob("*") if p.is_file()] if node_dir.is_dir() else []
            found[node.id] = max(sizes, default=0)
        return found


def stages_to_size(graph: FlowGraph, wanted: Sequence[MapBlock]) -> tuple[Stage, ...]:
    """The stages up to (and including) the source of the last map in `wanted`."""
    if not wanted:
        return ()
    position = {stage.id: i for i, stage in enumerate(graph.stages)}
    last = max(position[m.source] for m in wanted)
    return graph.stages[: last + 1]
