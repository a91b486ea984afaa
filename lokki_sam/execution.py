"""The data protocol: run one step (or one batch of map items) against an artifact store.

Both engines call these functions: the local runner orchestrates them with threads, the Lambda
runtime runs one per invocation as Step Functions drives it. Inputs are located by key, never
passed inline, so both engines see exactly the same data. Every output is stored under the
identity of what it was computed from (`lineage.py`: the node's code, the parameter values it
receives, the content of its input) and a resume reuses an output only when it is stored under the
identity it would be computed from now (`layout.py`). Each step outside a map leaves a pointer
naming the output later steps read.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lokki_sam import layout, lineage, serialization
from lokki_sam.errors import LokkiError, SerializationError, StepFailed, StoreError
from lokki_sam.ir import FlowGraph, MapBlock, Node, Stage
from lokki_sam.lineage import Recipe
from lokki_sam.protocol import ItemRef, is_identity
from lokki_sam.serialization import DIGEST_LENGTH
from lokki_sam.store import ArtifactStore
from lokki_sam.tracebacks import user_frame_summaries

CHUNK_TARGET_BYTES = 1 << 20  # items are grouped into ~1 MiB objects ...
CHUNK_MAX_ITEMS = 1000  # ... of at most this many items, aligned to batch boundaries
SIZE_SAMPLE = 32


class MapSourceError(LokkiError):
    """The step before a .map() returned something that is not a list."""


class MapIncomplete(StepFailed):
    """A map's items lack outputs beyond its tolerance, though the engine let the run go on."""


class StepAborted(StepFailed):
    """A step raised a BaseException that is not an Exception (`sys.exit()`, ...): the run fails."""


class MissingOutput(StoreError):
    """An input a step needs was never stored in this run (or has expired)."""


@dataclass(frozen=True)
class Pointer:
    """What a step outside maps last stored in the run: the identity of that output (its
    directory), its content digest, and what the identity was derived from (for a map source, also
    the recipes of its map's steps), so that a resume can say why it recomputes."""

    identity: str
    digest: str
    execution: str
    provenance: Mapping[str, Any] = field(default_factory=dict)
    count: int | None = None  # a map source: how many items

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.identity, "digest": self.digest, "execution": self.execution}
        out["from"] = dict(self.provenance)
        if self.count is not None:
            out["count"] = self.count
        return out

    @classmethod
    def parse(cls, value: Any, where: str) -> Pointer:
        if (
            not isinstance(value, dict)
            or not is_identity(value.get("id"))
            or not is_identity(value.get("digest"))
            or not isinstance(value.get("from", {}), dict)
        ):
            raise StoreError("not a step pointer (expected id, digest and provenance)", where=where)
        count = value.get("count")
        return cls(value["id"], value["digest"], str(value.get("execution", "")), value.get("from", {}), count)


@dataclass(frozen=True)
class Decision:
    """What a resume did with a stage: how many of its outputs it reused, and why it recomputes
    the others (empty when everything was reused)."""

    stage: str
    reused: int
    total: int
    reason: str = ""
    is_map: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {"stage": self.stage, "reused": self.reused, "total": self.total, "reason": self.reason}
        return out | {"map": True} if self.is_map else out

    @classmethod
    def parse(cls, raw: Any) -> Decision | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("stage"), str):
            return None
        return cls(
            raw["stage"],
            int(raw.get("reused", 0)),
            int(raw.get("total", 0)),
            str(raw.get("reason", "")),
            bool(raw.get("map")),
        )

    def describe(self, run_id: str) -> str:
        """`map-flap: reused 95/100 items from run R; recomputing 5: 5 have no output yet (...)`"""
        if not self.is_map:
            return (
                f"{self.stage}: reused from run {run_id}"
                if self.reused
                else f"{self.stage}: recomputing ({self.reason})"
            )
        if self.reused == self.total:
            return f"{self.stage}: reused all {self.total} item(s) from run {run_id}"
        if not self.reused:
            return f"{self.stage}: recomputing all {self.total} item(s): {self.reason}"
        redo = self.total - self.reused
        reused = f"reused {self.reused}/{self.total} items from run {run_id}"
        return f"{self.stage}: {reused}; recomputing {redo}: {self.reason}"


@dataclass
class RunContext:
    graph: FlowGraph
    store: ArtifactStore
    run_id: str
    params: Mapping[str, Any]
    execution: str = ""  # this execution's name ("": the run's first): salts what cannot be described
    reruns: Mapping[str, int] = field(default_factory=dict)  # node id -> the attempt whose --rerun forces it
    # Reading a run made by another version of the flow (same steps): that version's node fingerprints.
    fingerprints: Mapping[str, str] | None = None
    # "<source node>/<its output's identity>" -> chunk start -> (key, items, their digests)
    chunk_cache: dict[str, dict[int, tuple[str, list[Any], list[str]]]] = field(default_factory=dict)
    pointers: dict[str, Pointer] = field(default_factory=dict)  # read or written by this process
    recipes: dict[str, Recipe] = field(default_factory=dict)
    manifests: dict[str, list[ItemRef]] = field(default_factory=dict)  # read by this process, by key
    # map id -> (item index, item digest) -> the item's identities per step (item_ids)
    item_ids: dict[str, dict[tuple[int, str | None], tuple[str, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layout.check_run_id(self.run_id)
        self.execution = self.execution or self.run_id

    def recipe(self, node_id: str) -> Recipe:
        """The node's recipe in this execution (computed once per node, when first needed)."""
        found = self.recipes.get(node_id)
        if found is None:
            node = self.graph.node(node_id)
            found = lineage.recipe(self.graph, node, self.params, self.execution, self.reruns, self.fingerprints)
            self.recipes[node_id] = found
        return found

    def where(self) -> str:
        return f"flow '{self.graph.name}', run {self.run_id}"


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
            where=ctx.where(),
            hint="return normally, or raise an exception (it is retried per the step's Retry)",
        ) from exc


# ------------------------------------------------------------------------------- pointers


def read_pointer(ctx: RunContext, node_id: str) -> Pointer | None:
    """The output `node_id` last stored in this run (None: it never completed)."""
    if node_id in ctx.pointers:
        return ctx.pointers[node_id]
    key = layout.pointer(ctx.run_id, node_id)
    try:
        raw = ctx.store.get_json(key)
    except StoreError:
        if ctx.store.exists(key):
            raise
        return None
    ctx.pointers[node_id] = found = Pointer.parse(raw, ctx.store.describe(key))
    return found


def require_pointer(ctx: RunContext, node_id: str) -> Pointer:
    found = read_pointer(ctx, node_id)
    if found is None:
        raise MissingOutput(
            f"step '{node_id}' has no output in run {ctx.run_id}",
            where=ctx.store.describe(layout.pointer(ctx.run_id, node_id)),
            hint="run the steps in flow order (a step reads the output of the one before it)",
        )
    return found


def write_pointer(ctx: RunContext, node_id: str, pointer: Pointer) -> None:
    ctx.store.put_json(layout.pointer(ctx.run_id, node_id), pointer.to_json())
    ctx.pointers[node_id] = pointer


# ------------------------------------------------------------------------ steps outside maps


@dataclass
class Input:
    """A step's input: its content digest (None: the first step has none) and how to load it."""

    digest: str | None
    load: Callable[[], tuple[Any, ...]]


def input_of(ctx: RunContext, node: Node) -> Input:
    if node.input_from is None:
        return Input(None, tuple)
    upstream = ctx.graph.get(node.input_from)
    if isinstance(upstream, MapBlock):
        gathered = gather(ctx, upstream)
        return Input(gathered.digest, lambda: (gathered.values,))
    source = require_pointer(ctx, upstream.id)
    key = layout.task_output(ctx.run_id, upstream.id, source.identity)
    return Input(source.digest, lambda: (_get_input(ctx, key, upstream.id),))


def _get_input(ctx: RunContext, key: str, node_id: str) -> Any:
    try:
        return ctx.store.get(key)
    except StoreError as exc:
        if not ctx.store.exists(key):
            raise MissingOutput(
                f"the output of step '{node_id}' is gone from run {ctx.run_id}",
                where=ctx.store.describe(key),
                hint="run artifacts expire (the bucket's lifecycle rule); start a new run",
            ) from None
        raise exc


@dataclass(frozen=True)
class TaskPlan:
    """What running a step outside maps means now: its input, the identity its output gets, and
    whether a resume can keep the output already stored under that identity."""

    node: Node
    recipe: Recipe
    given: Input
    identity: str
    fed: MapBlock | None
    decision: Decision  # reused == 1: keep the stored output (a resume), else compute
    count: int | None = None  # a kept map source's item count

    @property
    def reused(self) -> bool:
        return self.decision.reused == 1


def plan_task(ctx: RunContext, node: Node, *, reuse: bool = False) -> TaskPlan:
    """Decide how to run a step outside any map. With `reuse` (a resumed run), an output already
    stored under the identity it would be computed from now is kept, and the step is not called."""
    recipe = ctx.recipe(node.id)
    fed = ctx.graph.map_fed_by(node.id)
    given = input_of(ctx, node)
    identity = recipe.task(given.digest)
    previous = read_pointer(ctx, node.id) if reuse else None
    if previous is not None and previous.identity == identity and _stored(ctx, node, fed, identity):
        return TaskPlan(node, recipe, given, identity, fed, Decision(node.id, 1, 1), previous.count)
    reason = why_recomputed(ctx, node, previous, recipe, given.digest) if reuse else ""
    return TaskPlan(node, recipe, given, identity, fed, Decision(node.id, 0, 1, reason))


def compute_task(ctx: RunContext, plan: TaskPlan) -> int | None:
    """Call the step and store its output (its items and manifest if it feeds a map), then point
    the run at it. Returns the item count of a map source."""
    node, identity = plan.node, plan.identity
    result = call_step(ctx, node, *plan.given.load())
    provenance: dict[str, Any] = plan.recipe.provenance(plan.given.digest)
    count: int | None = None
    if plan.fed is not None:
        count, digest = write_map_items(ctx, plan.fed, node, identity, result)
        provenance["body"] = {n.id: ctx.recipe(n.id).provenance() for n in plan.fed.nodes}
    else:
        key = layout.task_output(ctx.run_id, node.id, identity)
        digest = ctx.store.put(key, result, what=f"result of step '{node.id}'")
    write_pointer(ctx, node.id, Pointer(identity, digest, ctx.execution, provenance, count))
    return count


def run_task(ctx: RunContext, node: Node, *, reuse: bool = False) -> TaskPlan:
    """`plan_task`, then `compute_task` unless the stored output is kept; returns the plan (with
    the item count of a map source)."""
    plan = plan_task(ctx, node, reuse=reuse)
    if plan.reused:
        return plan
    return dataclasses.replace(plan, count=compute_task(ctx, plan))


def _stored(ctx: RunContext, node: Node, fed: MapBlock | None, identity: str) -> bool:
    if fed is not None:
        return ctx.store.exists(layout.manifest(ctx.run_id, node.id, identity))
    return ctx.store.exists(layout.task_output(ctx.run_id, node.id, identity))


def why_recomputed(
    ctx: RunContext, node: Node, previous: Pointer | None, recipe: Recipe, input_digest: str | None
) -> str:
    """Why a resume recomputes a step instead of reusing its stored output."""
    if previous is None:
        return "it has no output yet"
    before = previous.provenance
    if recipe.salt and before.get("salt") != recipe.salt:
        return recipe.reason
    if before.get("code") != recipe.code:
        return "its code or its place in the flow changed"
    if before.get("params") != recipe.params:
        return "the parameters it receives changed"
    if before.get("input") != input_digest and node.input_from is not None:
        return f"its input from '{node.input_from}' changed"
    return "its stored output is missing"


def write_map_items(ctx: RunContext, block: MapBlock, source: Node, identity: str, items: Any) -> tuple[int, str]:
    """Store a map source's list as items (chunks, then the manifest that marks it done); returns
    the item count and the list's content identity."""
    if not isinstance(items, list | tuple):
        raise MapSourceError(
            f"step '{source.id}' feeds .map({block.nodes[0].name}) but returned {type(items).__name__}, not a list",
            where=f"flow '{ctx.graph.name}', step '{source.id}'",
            hint="return a list of items to fan out over",
        )
    items = list(items)
    size = chunk_size(items, block.options.batch_size)
    firsts = range(0, len(items), size)
    chunks = [
        (layout.items_chunk(ctx.run_id, source.id, identity, first), first, items[first : first + size])
        for first in firsts
    ]
    written = ctx.store.put_sequences(chunks, what=f"an item of the list returned by step '{source.id}'")
    digests = [digest for chunk in written for digest in chunk]
    manifest = [{"c": i - i % size, "d": digest, "i": i} for i, digest in enumerate(digests)]  # ItemRef.to_json
    ctx.store.put_json(layout.manifest(ctx.run_id, source.id, identity), manifest)  # last: it marks the source done
    return len(items), lineage.items_digest(digests)


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


# --------------------------------------------------------------------------- map items


def source_identity(ctx: RunContext, block: MapBlock) -> str:
    return require_pointer(ctx, block.source).identity


def manifest_key(ctx: RunContext, block: MapBlock) -> str:
    return layout.manifest(ctx.run_id, block.source, source_identity(ctx, block))


def read_manifest(ctx: RunContext, block: MapBlock, key: str | None = None) -> list[ItemRef]:
    key = key or manifest_key(ctx, block)
    if key in ctx.manifests:  # a manifest never changes: it lives under its source output's identity
        return ctx.manifests[key]
    raw = ctx.store.get_json(key)
    if not isinstance(raw, list):
        raise StoreError("map manifest is not a JSON list", where=ctx.store.describe(key))
    refs = [ItemRef.parse(entry) for entry in raw]
    if any(ref.digest is None for ref in refs):
        raise StoreError("map manifest entry without its item's digest ('d')", where=ctx.store.describe(key))
    ctx.manifests[key] = refs
    return refs


def complete_refs(ctx: RunContext, block: MapBlock, refs: Sequence[ItemRef]) -> list[ItemRef]:
    """`refs` with the digests the run's manifest records (an event written by hand has none)."""
    known = {ref.index: ref for ref in read_manifest(ctx, block)}
    missing = [ref.index for ref in refs if ref.index not in known or known[ref.index].chunk != ref.chunk]
    if missing:
        raise StoreError(f"map item(s) {missing[:5]} are not in the run's manifest of map '{block.id}'")
    return [known[ref.index] for ref in refs]


def item_ids(ctx: RunContext, block: MapBlock, refs: Sequence[ItemRef]) -> dict[str, list[str]]:
    """The identities the map's steps' outputs have for `refs` when computed now, per step, in the
    order of `refs`: each chained from the item's content digest through the steps before. Each
    item's are derived once per process (the runner asks per batch, then again to gather)."""
    known = ctx.item_ids.setdefault(block.id, {})
    fresh = [ref for ref in refs if (ref.index, ref.digest) not in known]
    if fresh:
        previous = [_digest_of(ref) for ref in fresh]
        chains: list[list[str]] = []
        for node in block.nodes:
            previous = ctx.recipe(node.id).items(previous)
            chains.append(previous)
        for position, ref in enumerate(fresh):
            known[(ref.index, ref.digest)] = tuple(chain[position] for chain in chains)
    rows = [known[(ref.index, ref.digest)] for ref in refs]
    return {node.id: [row[step] for row in rows] for step, node in enumerate(block.nodes)}


def _digest_of(ref: ItemRef) -> str:
    if ref.digest is None:
        raise StoreError(f"map item {ref.index} has no content digest (complete_refs fills it from the manifest)")
    return ref.digest


def read_items(ctx: RunContext, block: MapBlock, refs: Sequence[ItemRef], source: str | None = None) -> list[Any]:
    """The items themselves, each checked against the digest its reference carries (a local run
    reads each chunk once: batches of one item would otherwise pay for it again and again)."""
    identity = source or source_identity(ctx, block)
    chunks = ctx.chunk_cache.setdefault(f"{block.source}/{identity}", {})
    missing = sorted({r.chunk for r in refs} - chunks.keys())
    if missing:
        keys = [layout.items_chunk(ctx.run_id, block.source, identity, c) for c in missing]
        for first, key, stored in zip(missing, keys, ctx.store.get_sequences(keys), strict=True):
            chunks[first] = (key, stored.values, stored.digests)
    values = []
    for ref in refs:
        key, items, digests = chunks[ref.chunk]
        offset = ref.index - ref.chunk
        if not 0 <= offset < len(items) or digests[offset] != ref.digest:
            raise StoreError(
                f"map item {ref.index} is not in its chunk as the manifest says (manifest and items disagree)",
                where=ctx.store.describe(key),
            )
        values.append(items[offset])
    return values


def run_batch(ctx: RunContext, block: MapBlock, node: Node, refs: Sequence[ItemRef], source: str | None = None) -> None:
    """Run one step of a map body on a batch of items (one Lambda invocation): read its input
    from the store, call the step per item, write its outputs under their identities."""
    if not refs:
        return
    refs = sorted(refs, key=lambda r: r.index)
    ids = item_ids(ctx, block, refs)
    position = block.nodes.index(node)
    if position == 0:
        inputs = read_items(ctx, block, refs, source)
    else:
        previous = block.nodes[position - 1]
        found = previous_outputs(ctx, previous, {r.index: i for r, i in zip(refs, ids[previous.id], strict=True)})
        absent = [r.index for r in refs if r.index not in found]
        if absent:
            raise MissingOutput(
                f"map item(s) {layout.contiguous(absent)[0][0]}... have no output of step '{previous.id}' "
                "for their current input",
                where=ctx.where(),
                hint="the map body runs in order: run the step before first",
            )
        inputs = [found[r.index][0] for r in refs]
    outputs = compute_batch(ctx, node, inputs)
    write_batch_output(ctx, node, [r.index for r in refs], ids[node.id], outputs)


def compute_batch(ctx: RunContext, node: Node, inputs: Sequence[Any]) -> list[Any]:
    return [call_step(ctx, node, value) for value in inputs]


def write_batch_output(
    ctx: RunContext, node: Node, indexes: Sequence[int], ids: Sequence[str], outputs: Sequence[Any]
) -> None:
    """One object per contiguous run of items, named by the run's first and last index and a tag
    of the items' identities: which items are done can then be read from the keys alone."""
    by_index = {i: (identity, out) for i, identity, out in zip(indexes, ids, outputs, strict=True)}
    for first, last in layout.contiguous(sorted(by_index)):
        span = list(range(first, last + 1))
        span_ids = [by_index[i][0] for i in span]
        key = layout.batch_output(ctx.run_id, node.id, first, last, lineage.span_tag(span_ids))
        try:
            ctx.store.put_sequence(
                key,
                # The items' identities as one text (a list of 10,000 short strings costs far more to pickle).
                {"first": first, "ids": "".join(span_ids)},
                [by_index[i][1] for i in span],
                what=f"results of step '{node.id}'",
            )
        except SerializationError:
            # Name the first offending item and its type, not the batch.
            for index in span:
                serialization.dumps(by_index[index][1], what=f"result of step '{node.id}' for map item {index}")
            raise


def previous_outputs(ctx: RunContext, node: Node, wanted: Mapping[int, str]) -> dict[int, tuple[Any, str]]:
    """The outputs of the step before, for a batch: the objects that step wrote for exactly these
    items (the same batch, as Step Functions runs a map's steps), read by key, without a listing;
    `find_outputs` where a key is not there (the items were batched otherwise)."""
    keys = []
    for first, last in layout.contiguous(sorted(wanted)):
        tag = lineage.span_tag([wanted[i] for i in range(first, last + 1)])
        keys.append(layout.batch_output(ctx.run_id, node.id, first, last, tag))
    found: dict[int, tuple[Any, str]] = {}
    try:
        for key, stored in zip(keys, ctx.store.get_sequences(keys), strict=True):
            _take(stored, wanted, found, ctx.store.describe(key))
    except StoreError:
        if all(ctx.store.exists(key) for key in keys):
            raise  # there, but damaged
        return find_outputs(ctx, node, wanted)
    return found


def batch_keys(ctx: RunContext, node: Node) -> list[tuple[str, int, int, str]]:
    """(key, first, last, tag) of every stored output object of a map step."""
    prefix = layout.node_dir(ctx.run_id, node.id)
    found = []
    for key in ctx.store.list_keys(prefix):
        span = layout.batch_span(key)
        if span is not None and "/" not in key[len(prefix) :]:
            found.append((key, *span))
    return found


def find_outputs(
    ctx: RunContext, node: Node, wanted: Mapping[int, str], *, keys: list[tuple[str, int, int, str]] | None = None
) -> dict[int, tuple[Any, str]]:
    """The stored outputs of a map step for the items in `wanted` (index -> the identity the
    output must have): value and content digest per item found. Objects whose key tag matches
    their items' wanted identities are taken whole; others (written for other identities, or
    mixing items since recomputed) are read only for items still missing, item by item."""
    exact, partial = _classify(keys if keys is not None else batch_keys(ctx, node), wanted)
    found: dict[int, tuple[Any, str]] = {}
    for key, stored in zip(exact, ctx.store.get_sequences(exact), strict=True):
        _take(stored, wanted, found, ctx.store.describe(key))
    needed = [k for k, first, last in partial if any(i in wanted and i not in found for i in range(first, last + 1))]
    for key, stored in zip(needed, ctx.store.get_sequences(needed), strict=True):
        _take(stored, wanted, found, ctx.store.describe(key))
    return found


def _classify(
    keys: Iterable[tuple[str, int, int, str]], wanted: Mapping[int, str]
) -> tuple[list[str], list[tuple[str, int, int]]]:
    exact: list[str] = []
    partial: list[tuple[str, int, int]] = []
    for key, first, last, tag in keys:
        span = range(first, last + 1)
        if all(i in wanted for i in span) and lineage.span_tag([wanted[i] for i in span]) == tag:
            exact.append(key)
        elif any(i in wanted for i in span):
            partial.append((key, first, last))
    return exact, partial


def _take(stored: Any, wanted: Mapping[int, str], found: dict[int, tuple[Any, str]], where: str) -> None:
    for index, identity, value, digest in zip(*_rows(stored, where), stored.values, stored.digests, strict=True):
        if wanted.get(index) == identity and index not in found:
            found[index] = (value, digest)


def _rows(stored: Any, where: str) -> tuple[range, list[str]]:
    """A batch object's items and their identities (`write_batch_output`), checked against its values."""
    header = stored.header
    first, ids = (header.get("first"), header.get("ids")) if isinstance(header, dict) else (None, None)
    size = DIGEST_LENGTH
    if type(first) is not int or first < 0 or not isinstance(ids, str) or len(ids) != size * len(stored.values):
        raise StoreError("not a map batch output: expected the first item and an identity per value", where=where)
    return range(first, first + len(stored.values)), [ids[i : i + size] for i in range(0, len(ids), size)]


def done_items(ctx: RunContext, block: MapBlock, refs: Sequence[ItemRef] | None = None) -> set[int]:
    """Items of the map whose last step has an output stored under the identity it would have now:
    from the keys alone, reading an object only where a key mixes current and stale items."""
    refs = read_manifest(ctx, block) if refs is None else refs
    wanted = dict(zip((r.index for r in refs), item_ids(ctx, block, refs)[block.last.id], strict=True))
    exact, partial = _classify(batch_keys(ctx, block.last), wanted)
    done = {i for key in exact for i in range(*_span_of(key))}
    still = [k for k, first, last in partial if any(i in wanted and i not in done for i in range(first, last + 1))]
    for key, stored in zip(still, ctx.store.get_sequences(still), strict=True):
        done |= {
            i for i, identity in zip(*_rows(stored, ctx.store.describe(key)), strict=True) if wanted.get(i) == identity
        }
    return done


def _span_of(key: str) -> tuple[int, int]:
    span = layout.batch_span(key)
    assert span is not None
    return span[0], span[1] + 1


def todo_items(ctx: RunContext, block: MapBlock) -> list[ItemRef]:
    """The map's items whose last body step has no output for its current input (what a resume runs)."""
    refs = read_manifest(ctx, block)
    done = done_items(ctx, block, refs)
    return [ref for ref in refs if ref.index not in done]


def map_decision(ctx: RunContext, block: MapBlock, refs: Sequence[ItemRef], done: set[int]) -> Decision:
    """How a resume treats a map: the items it reuses, and why it recomputes the others."""
    todo = [r.index for r in refs if r.index not in done]
    if not todo:
        return Decision(block.id, len(refs), len(refs), is_map=True)
    covered = {i for _, first, last, _ in batch_keys(ctx, block.last) for i in range(first, last + 1)}
    stale = [i for i in todo if i in covered]
    parts = []
    if len(stale) < len(todo):
        parts.append(f"{len(todo) - len(stale)} have no output yet (failed or not run)")
    if stale:
        parts.append(f"{len(stale)} have outputs of {_stale_cause(ctx, block)}")
    return Decision(block.id, len(refs) - len(todo), len(refs), "; ".join(parts), is_map=True)


def _stale_cause(ctx: RunContext, block: MapBlock) -> str:
    """What changed for a map's stale items: the code, parameters or salt of its steps as the
    source's pointer recorded them when the items were made, else their input."""
    source = read_pointer(ctx, block.source)
    before = (source.provenance.get("body") or {}) if source is not None else {}
    for node in block.nodes:
        recipe, was = ctx.recipe(node.id), before.get(node.id) or {}
        if recipe.salt and was.get("salt") != recipe.salt:
            return f"a step that must run again (step '{node.id}': {recipe.reason})"
        if was and was.get("code") != recipe.code:
            return f"other code (step '{node.id}' changed)"
        if was and was.get("params") != recipe.params:
            return f"other parameters (step '{node.id}')"
    return "another input (the list they come from changed)"


# ---------------------------------------------------------------------------------- gather


@dataclass(frozen=True)
class Gathered:
    values: list[Any]  # the item results present, in item order
    digest: str  # the content identity of exactly those (lineage.map_digest)
    missing: list[int]  # items without a result (tolerated failures)


def gather(ctx: RunContext, block: MapBlock) -> Gathered:
    """The map's item results in item order; items whose batch failed (tolerated) are absent.

    Items without an output beyond the map's tolerance fail the read: an engine that reports a
    map as successful although items failed (LocalStack's Distributed Map does) cannot turn
    missing items into a silently shorter result."""
    refs = read_manifest(ctx, block)
    wanted = dict(zip((r.index for r in refs), item_ids(ctx, block, refs)[block.last.id], strict=True))
    found = find_outputs(ctx, block.last, wanted)
    missing = [r.index for r in refs if r.index not in found]
    if missing and not block.options.tolerates(len(missing), len(refs)):
        raise MapIncomplete(
            incomplete_message(ctx, block, missing, len(refs)),
            where=ctx.where(),
            hint=f"fix what failed, then resume the run (--resume {ctx.run_id}): only the items without an output "
            "run again",
        )
    present = [r.index for r in refs if r.index in found]
    digest = lineage.map_digest((i, found[i][1]) for i in present)
    return Gathered([found[i][0] for i in present], digest, missing)


# --------------------------------------------------------------------------- failed map items

FAILURES_READ = 50  # records read at most to describe a map's failures (the newest ones)


def record_failure(
    ctx: RunContext,
    block: MapBlock,
    node: Node,
    refs: Sequence[ItemRef],
    error: BaseException,
    user_frames: str | None = None,
) -> None:
    """Store why a batch of map items failed in step `node`: the step, the items, the exception's
    class and message, and the user's frames of its traceback (`user_frames` when the error was
    raised in another process and rebuilt here). Written under the node's own directory, where its
    function may write, keyed by the items' identities at that step (a record made for other
    inputs is another key)."""
    if not refs:
        return
    ids = item_ids(ctx, block, refs)[node.id]
    record = {
        "step": node.id,
        "items": [r.index for r in refs],
        "execution": ctx.execution,
        "error": type(error).__name__,
        "message": str(error),
        "traceback": user_traceback(error) if user_frames is None else user_frames,
    }
    ctx.store.put_json(layout.failure(ctx.run_id, node.id, refs[0].index, lineage.span_tag(ids)), record)


def failure_records(ctx: RunContext, block: MapBlock) -> list[dict[str, Any]]:
    """The failure records of the map's items that still have no output, newest first (at most
    FAILURES_READ): each as `record_failure` wrote it. Items that succeeded later (a retry, a
    resume) are left out; an unreadable record is skipped (the function's log has the error)."""
    done = done_items(ctx, block)
    written: dict[str, float] = {}
    for node in block.nodes:
        written.update(ctx.store.list_written(layout.node_dir(ctx.run_id, node.id) + "failures/"))
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
    return "".join(traceback.format_list(user_frame_summaries(exc)[-5:])).rstrip()


# ---------------------------------------------------------------------------------- outputs


def item_outputs(ctx: RunContext, block: MapBlock, node: Node) -> dict[int, Any]:
    """A map step's outputs for the items of the current source, by item index (those present)."""
    refs = read_manifest(ctx, block)
    wanted = dict(zip((r.index for r in refs), item_ids(ctx, block, refs)[node.id], strict=True))
    found = find_outputs(ctx, node, wanted)
    return {i: found[i][0] for i in sorted(found)}


def read_stage_output(ctx: RunContext, stage: Stage) -> Any:
    """What a stage produced: a step's result, or a map's list of item results."""
    if isinstance(stage, MapBlock):
        return gather(ctx, stage).values
    fed_map = ctx.graph.map_fed_by(stage.id)
    if fed_map is not None:  # stored as items for the map
        return read_items(ctx, fed_map, read_manifest(ctx, fed_map))
    return _get_input(ctx, layout.task_output(ctx.run_id, stage.id, require_pointer(ctx, stage.id).identity), stage.id)


def read_result(ctx: RunContext) -> Any:
    return read_stage_output(ctx, ctx.graph.result_stage)


def record_decision(ctx: RunContext, node_id: str, decision: Decision) -> None:
    """Keep what a resumed execution decided for a stage (read back by `invoke --resume`)."""
    ctx.store.put_json(layout.decision(ctx.run_id, node_id, ctx.execution, decision.stage), decision.to_json())


def read_decisions(ctx: RunContext, execution: str) -> list[Decision]:
    """The decisions a resumed execution recorded, in flow order."""
    out = []
    for stage in ctx.graph.stages:
        writer = stage.source if isinstance(stage, MapBlock) else stage.id
        key = layout.decision(ctx.run_id, writer, execution, stage.id)
        try:
            raw = json.loads(ctx.store.get_bytes(key))
        except (StoreError, ValueError):
            continue
        decision = Decision.parse(raw)
        if decision is not None:
            out.append(decision)
    return out
