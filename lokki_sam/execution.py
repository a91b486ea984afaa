"""The data protocol: run one step (or one batch of map items) against an artifact store.

Both engines call these functions: the local runner orchestrates them with threads, the
Lambda runtime runs one per invocation as Step Functions drives it. Inputs are located by
key from (run, node, fingerprint, item), never passed inline, so both engines see exactly the
same data, and an output made by other code or from other inputs is never read (layout.py).
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lokki_sam import layout, serialization
from lokki_sam.errors import LokkiError, SerializationError, StepFailed, StoreError
from lokki_sam.ir import FlowGraph, MapBlock, Node, Stage
from lokki_sam.protocol import ItemRef
from lokki_sam.store import ArtifactStore

CHUNK_TARGET_BYTES = 1 << 20  # items are grouped into ~1 MiB objects ...
CHUNK_MAX_ITEMS = 1000  # ... of at most this many items, aligned to batch boundaries
SIZE_SAMPLE = 32


class MapSourceError(LokkiError):
    """The step before a .map() returned something that is not a list."""


class MapIncomplete(StepFailed):
    """A map's items lack outputs beyond its tolerance, though the engine let the run go on."""


class StepAborted(StepFailed):
    """A step raised a BaseException that is not an Exception (`sys.exit()`, ...): the run fails."""


@dataclass
class RunContext:
    graph: FlowGraph
    store: ArtifactStore
    run_id: str
    params: Mapping[str, Any]
    # Local runs read each items chunk once; a Lambda invocation reads its own chunk.
    chunk_cache: dict[str, list[Any]] = field(default_factory=dict)
    # Reading a run made by another version of the flow (same steps): that version's node fingerprints.
    fingerprints: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        layout.check_run_id(self.run_id)

    def fp(self, node_id: str) -> str:
        if self.fingerprints is not None:
            return self.fingerprints[node_id]
        return self.graph.fingerprint(node_id)

    def task_output(self, node_id: str) -> str:
        return layout.task_output(self.run_id, node_id, self.fp(node_id))

    def manifest(self, block: MapBlock) -> str:
        return layout.manifest(self.run_id, block.source, self.fp(block.source))

    def items_chunk(self, block: MapBlock, first: int) -> str:
        return layout.items_chunk(self.run_id, block.source, self.fp(block.source), first)

    def batch_output(self, node_id: str, first: int, last: int) -> str:
        return layout.batch_output(self.run_id, node_id, self.fp(node_id), first, last)


def call_step(ctx: RunContext, node: Node, *data: Any) -> Any:
    """Call the user's function with its data argument (if any) and its bound keyword arguments.

    A step that leaves by `sys.exit()` or another BaseException fails (exit 1, step named): it
    must never end a run as if it had succeeded. Ctrl-C stays an interruption."""
    try:
        return node.step.func(*data, **node.kwargs(ctx.params))
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raised {type(exc).__name__}"
        raise StepAborted(
            f"step '{node.id}' {what}: a step must return its result or raise an Exception",
            where=f"flow '{ctx.graph.name}', run {ctx.run_id}",
            hint="return normally, or raise an exception (it is retried per the step's Retry)",
        ) from exc


# ------------------------------------------------------------------------ steps outside maps


def run_task(ctx: RunContext, node: Node, *, reuse: bool = False) -> int | None:
    """Run a step outside any map. If a map fans out over its result, store the items and the
    manifest and return the item count; else store the output and return None.

    With `reuse` (a resumed run), an output already stored under the node's fingerprint is kept
    and the step is not called."""
    fed_map = ctx.graph.map_fed_by(node.id)
    if reuse and stage_done(ctx, node):
        return len(read_manifest(ctx, fed_map)) if fed_map is not None else None
    data = () if node.input_from is None else (read_stage_output(ctx, ctx.graph.get(node.input_from)),)
    result = call_step(ctx, node, *data)
    if fed_map is not None:
        return write_map_items(ctx, fed_map, node, result)
    ctx.store.put(ctx.task_output(node.id), result, what=f"result of step '{node.id}'")
    return None


def write_map_items(ctx: RunContext, block: MapBlock, source: Node, items: Any) -> int:
    if not isinstance(items, list | tuple):
        raise MapSourceError(
            f"step '{source.id}' feeds .map({block.nodes[0].name}) but returned {type(items).__name__}, not a list",
            where=f"flow '{ctx.graph.name}', step '{source.id}'",
            hint="return a list of items to fan out over",
        )
    items = list(items)
    size = chunk_size(items, block.options.batch_size)
    chunks = [(ctx.items_chunk(block, first), items[first : first + size]) for first in range(0, len(items), size)]
    ctx.store.put_many(chunks, what=f"an item of the list returned by step '{source.id}'")
    manifest = [ItemRef(i, layout.chunk_start(i, size)).to_json() for i in range(len(items))]
    ctx.store.put_json(ctx.manifest(block), manifest)  # written last: it marks the source as done
    return len(items)


def chunk_size(items: Sequence[Any], batch_size: int) -> int:
    """Items per stored chunk: a multiple of batch_size near CHUNK_TARGET_BYTES.

    Fewer, larger objects save requests; alignment with batches means one invocation reads
    exactly one chunk when Step Functions batches items in order.
    """
    if not items:
        return batch_size
    # Sample up to SIZE_SAMPLE items, but stop once the sample alone fills a chunk: large items
    # (10 x 10 MB, say) must not be pickled twice just to learn that they are large.
    sampled = total = 0
    try:
        for item in items[:SIZE_SAMPLE]:
            total += len(pickle.dumps(item, protocol=5))
            sampled += 1
            if total >= CHUNK_TARGET_BYTES:
                break
    except Exception:
        return batch_size  # the real write reports the unpicklable item
    per_item = max(1, total // sampled)
    wanted = min(CHUNK_MAX_ITEMS, max(1, CHUNK_TARGET_BYTES // per_item))
    return max(batch_size, (wanted // batch_size) * batch_size)


def read_manifest(ctx: RunContext, block: MapBlock, key: str | None = None) -> list[ItemRef]:
    key = key or ctx.manifest(block)
    raw = ctx.store.get_json(key)
    if not isinstance(raw, list):
        raise StoreError("map manifest is not a JSON list", where=ctx.store.describe(key))
    return [ItemRef.parse(entry) for entry in raw]


def todo_items(ctx: RunContext, block: MapBlock) -> list[ItemRef]:
    """The map's items whose last body step has no stored output (what a resume still runs)."""
    done = done_items(ctx, block.last)
    return [ref for ref in read_manifest(ctx, block) if ref.index not in done]


# --------------------------------------------------------------------------- map item batches


def run_batch(ctx: RunContext, block: MapBlock, node: Node, refs: Sequence[ItemRef]) -> None:
    """Run one step of a map body on a batch of items (one Lambda invocation): read its input
    from the store, call the step per item, write its outputs."""
    if not refs:
        return
    indexes, inputs = load_batch_input(ctx, block, node, refs)
    write_batch_output(ctx, node, indexes, compute_batch(ctx, node, inputs))


def load_batch_input(
    ctx: RunContext, block: MapBlock, node: Node, refs: Sequence[ItemRef]
) -> tuple[list[int], list[Any]]:
    """A batch's input: the items themselves for the first step of the map body, else the
    previous step's outputs for the same items."""
    position = block.nodes.index(node)
    if position == 0:
        return [r.index for r in refs], read_items(ctx, block, refs)
    previous = block.nodes[position - 1]
    indexes: list[int] = []
    outputs: list[Any] = []
    for first, last in layout.contiguous(sorted({r.index for r in refs})):
        got_indexes, got_outputs = read_batch_output(ctx, ctx.batch_output(previous.id, first, last))
        indexes += got_indexes
        outputs += got_outputs
    return indexes, outputs


def read_batch_output(ctx: RunContext, key: str) -> tuple[list[int], list[Any]]:
    return check_batch_output(ctx.store.get(key), where=ctx.store.describe(key))


def check_batch_output(value: Any, *, where: str) -> tuple[list[int], list[Any]]:
    """A stored (indexes, outputs) pair; anything else (a foreign or damaged object) is refused."""
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(part, list) for part in value)
        or len(value[0]) != len(value[1])
    ):
        raise StoreError("not a map batch output: expected (indexes, outputs) of equal length", where=where)
    return value[0], value[1]


def compute_batch(ctx: RunContext, node: Node, inputs: Sequence[Any]) -> list[Any]:
    return [call_step(ctx, node, value) for value in inputs]


def write_batch_output(ctx: RunContext, node: Node, indexes: Sequence[int], outputs: Sequence[Any]) -> None:
    """One object per contiguous run of items, named by the run's first and last index: which
    items are done can then be read from the keys alone."""
    by_index = dict(zip(indexes, outputs, strict=True))
    for first, last in layout.contiguous(sorted(by_index)):
        span = list(range(first, last + 1))
        key = ctx.batch_output(node.id, first, last)
        try:
            ctx.store.put(key, (span, [by_index[i] for i in span]), what=f"results of step '{node.id}'")
        except SerializationError:
            # Name the first offending item and its type, not the (indexes, outputs) wrapper.
            for index in span:
                serialization.dumps(by_index[index], what=f"result of step '{node.id}' for map item {index}")
            raise


def read_items(ctx: RunContext, block: MapBlock, refs: Sequence[ItemRef]) -> list[Any]:
    keys = sorted({ctx.items_chunk(block, r.chunk) for r in refs})
    missing = [k for k in keys if k not in ctx.chunk_cache]
    chunk: list[Any]
    for key, chunk in zip(missing, ctx.store.get_many(missing), strict=True):
        ctx.chunk_cache[key] = chunk
    values = []
    for ref in refs:
        chunk = ctx.chunk_cache[ctx.items_chunk(block, ref.chunk)]
        offset = ref.index - ref.chunk
        if not 0 <= offset < len(chunk):
            raise StoreError(f"map item {ref.index} is not in its chunk (manifest and items disagree)")
        values.append(chunk[offset])
    return values


def batch_output_keys(ctx: RunContext, node: Node) -> list[tuple[str, int, int]]:
    """(key, first, last) of every stored output object of a map step."""
    prefix = layout.output_dir(ctx.run_id, node.id, ctx.fp(node.id))
    found = []
    for key in ctx.store.list_keys(prefix):
        span = layout.batch_range(key)
        if span is not None and "/" not in key[len(prefix) :]:
            found.append((key, *span))
    return found


def done_items(ctx: RunContext, node: Node) -> set[int]:
    """Items a map step has stored an output for, from the object keys alone (no reads)."""
    return {i for _, first, last in batch_output_keys(ctx, node) for i in range(first, last + 1)}


def batch_results(ctx: RunContext, block: MapBlock, node: Node) -> dict[int, Any]:
    """Every stored output of `node` in this map, by item index (objects read in parallel)."""
    keys = [key for key, _, _ in batch_output_keys(ctx, node)]
    results: dict[int, Any] = {}
    for key, value in zip(keys, ctx.store.get_many(keys), strict=True):
        indexes, outputs = check_batch_output(value, where=ctx.store.describe(key))
        results.update(zip(indexes, outputs, strict=True))
    return results


def gather(ctx: RunContext, block: MapBlock) -> list[Any]:
    """The map's item results in item order; items whose batch failed (tolerated) are absent.

    Items without an output beyond the map's tolerance fail the read: an engine that reports a
    map as successful although items failed (LocalStack's Distributed Map does) cannot turn
    missing items into a silently shorter result."""
    results = batch_results(ctx, block, block.last)
    refs = read_manifest(ctx, block)
    missing = [r.index for r in refs if r.index not in results]
    if missing and not block.options.tolerates(len(missing), len(refs)):
        raise MapIncomplete(
            incomplete_message(ctx, block, missing, len(refs)),
            where=f"flow '{ctx.graph.name}', run {ctx.run_id}",
            hint=f"fix what failed, then resume the run (--resume {ctx.run_id}): only the items without an output "
            "run again",
        )
    return [results[r.index] for r in refs if r.index in results]


# --------------------------------------------------------------------------- failed map items

FAILURES_READ = 50  # records read at most to describe a map's failures (the newest ones)


def record_failure(ctx: RunContext, node: Node, indexes: Sequence[int], error: BaseException) -> None:
    """Store why a batch of map items failed in step `node`: the step, the items, the exception's
    class and message, and the user's frames of its traceback. Written under the node's own
    directory, where its function may write; the newest record of an item is the one that counts."""
    if not indexes:
        return
    record = {
        "step": node.id,
        "items": list(indexes),
        "error": type(error).__name__,
        "message": str(error),
        "traceback": user_traceback(error),
    }
    ctx.store.put_json(layout.failure(ctx.run_id, node.id, ctx.fp(node.id), indexes[0]), record)


def failure_records(ctx: RunContext, block: MapBlock) -> list[dict[str, Any]]:
    """The failure records of the map's items that still have no output, newest first (at most
    FAILURES_READ): each as `record_failure` wrote it. Items that succeeded later (a retry, a
    resume) are left out; an unreadable record is skipped (the function's log has the error)."""
    done = done_items(ctx, block.last)
    written: dict[str, float] = {}
    for node in block.nodes:
        prefix = layout.output_dir(ctx.run_id, node.id, ctx.fp(node.id)) + "failures/"
        written.update(ctx.store.list_written(prefix))
    records: list[dict[str, Any]] = []
    seen: set[int] = set()
    for key in sorted(written, key=lambda k: written[k], reverse=True)[:FAILURES_READ]:
        try:
            record = ctx.store.get_json(key)
        except StoreError:
            continue
        items = record.get("items") if isinstance(record, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, int) for i in items):
            continue
        fresh = [i for i in items if i not in done and i not in seen]
        if fresh:
            seen.update(items)
            records.append(record)
    return records


def incomplete_message(ctx: RunContext, block: MapBlock, missing: Sequence[int], total: int) -> str:
    """Which items of a map have no output, and why as far as the run knows: the failure records
    name the step and the exception; an item without a record never raised in its step."""
    records = failure_records(ctx, block)
    recorded = {i for r in records for i in r["items"]}
    lines = [
        f"map '{block.id}' is incomplete: {len(missing)} of {total} item(s) have no output of step "
        f"'{block.last.id}' (items {_shown(missing)}), more than the map tolerates"
    ]
    for record in records[:5]:
        items = record["items"]
        span = str(items[0]) if len(items) == 1 else f"{items[0]}..{items[-1]}"
        lines.append(f"  item {span}: {record.get('error')}: {record.get('message')} (step '{record.get('step')}')")
    if len(records) > 5:
        lines.append(f"  ... and {len(records) - 5}{'+' * (len(records) == FAILURES_READ)} more failed batch(es)")
    unexplained = [i for i in missing if i not in recorded]
    if unexplained and len(records) < FAILURES_READ:  # all records were read: these items have none
        lines.append(
            f"  {len(unexplained)} item(s) have no failure record (items {_shown(unexplained)}): their step did not "
            "raise for them. The engine never ran them or lost their result (LocalStack's Step Functions: "
            "States.Runtime when it cannot reach Lambda), or the invocation timed out or its process died: the "
            "map run's failed children and the function's log say which"
        )
    return "\n".join(lines)


def _shown(items: Sequence[int]) -> str:
    return ", ".join(map(str, items[:20])) + (", ..." if len(items) > 20 else "")


def user_traceback(exc: BaseException) -> str:
    """The last frames of the user's traceback (lokki-sam's own frames dropped)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "lokki_sam" not in f.filename]
    return "".join(traceback.format_list(frames[-5:])).rstrip()


# ---------------------------------------------------------------------------------- outputs


def read_stage_output(ctx: RunContext, stage: Stage) -> Any:
    """What a stage produced: a step's result, or a map's list of item results."""
    if isinstance(stage, MapBlock):
        return gather(ctx, stage)
    fed_map = ctx.graph.map_fed_by(stage.id)
    if fed_map is not None:  # stored as items for the map
        refs = read_manifest(ctx, fed_map)
        return read_items(ctx, fed_map, refs)
    return ctx.store.get(ctx.task_output(stage.id))


def stage_done(ctx: RunContext, stage: Stage) -> bool:
    """Whether a step outside a map has a usable output: stored under its current fingerprint,
    and written after its input was (as `make` decides). An input written later (a resume that
    re-ran failed map items, or recomputed the step before) makes the output stale, so nothing
    computed from an older input is ever reused."""
    assert isinstance(stage, Node)
    written = output_written(ctx, stage)
    if written is None:
        return False
    if stage.input_from is None:
        return True
    source = output_written(ctx, ctx.graph.get(stage.input_from))
    return source is not None and written > source


def output_written(ctx: RunContext, stage: Stage) -> float | None:
    """When a stage's output was last written (a map: its newest item output), None if absent."""
    if isinstance(stage, MapBlock):
        prefix = layout.output_dir(ctx.run_id, stage.last.id, ctx.fp(stage.last.id))
        times = [t for key, t in ctx.store.list_written(prefix).items() if layout.batch_range(key)]
        return max(times, default=None)
    fed_map = ctx.graph.map_fed_by(stage.id)
    return ctx.store.written(ctx.manifest(fed_map) if fed_map else ctx.task_output(stage.id))


def read_result(ctx: RunContext) -> Any:
    return read_stage_output(ctx, ctx.graph.result_stage)
