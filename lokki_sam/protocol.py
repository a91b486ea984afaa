"""The payloads the state machine and the Lambda runtime exchange, one class per shape.

The ASL compiler writes these payloads as templates (`asl_template`), the runtime parses them
(`parse`), and the sample events are the templates resolved; all three use the keys defined
here, so they cannot drift apart.

    TaskEvent       {"node", "run_id", "params", "lokki"}             a step outside maps
    MapEvent        {"node", "map", "input": <item or batch>, "lokki"}   a step of a map body
      lokki         {"protocol", "flow", "step"}                      the Stamp: protocol version and fingerprints
      item          {"i", "c", "d", "run_id", "params", "source"}     one map item (ItemSelector)
      batch         {"Items": [item, ...], "BatchInput": {"run_id", "params", "source"}}   (ItemBatcher)
      all items     {"AllItems": true, "run_id", "params"}           every item of the run (sample events only)
    MapSourceResult {"Bucket", "Key", "count", "id"} (+ "Items" for an INLINE map)   what a map source returns

An item carries its index, the first index of its chunk object and its content digest (`d`, see
lineage.py); `source` is the identity of the map source's output the items come from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from lokki_sam.errors import LokkiError
from lokki_sam.serialization import DIGEST_LENGTH

# The payload contract's version: a runtime refuses a state machine written for another one.
PROTOCOL_VERSION = 3

NODE, MAP, INPUT, RUN_ID, PARAMS, STAMP = "node", "map", "input", "run_id", "params", "lokki"
INDEX, CHUNK, DIGEST, SOURCE = "i", "c", "d", "source"
ITEMS, BATCH_INPUT, ALL_ITEMS = "Items", "BatchInput", "AllItems"
BUCKET, KEY, COUNT, IDENTITY = "Bucket", "Key", "count", "id"


class ProtocolError(LokkiError):
    """An event does not have the shape the state machine sends (a misrouted or hand-written event)."""


def _path_key(key: str) -> str:
    return f"{key}.$"


@dataclass(frozen=True, slots=True)
class ItemRef:
    """One map item: its index, the first index of the chunk object that holds it, and its content
    digest (what the identities of its outputs derive from)."""

    index: int
    chunk: int
    digest: str | None  # None only in hand-written events: the runtime takes it from the manifest

    @classmethod
    def parse(cls, value: Any) -> ItemRef:
        index = value.get(INDEX) if type(value) is dict else None
        chunk = value.get(CHUNK) if type(value) is dict else None
        digest = value.get(DIGEST) if type(value) is dict else None
        if (
            type(index) is not int  # bool is not an index
            or type(chunk) is not int
            # A digest is only ever hashed or compared with a chunk's, never part of a key: its length is enough.
            or not (digest is None or (type(digest) is str and len(digest) == DIGEST_LENGTH))
        ):
            raise ProtocolError(
                f"malformed map item reference {value!r}",
                hint='expected {"i": <index>, "c": <chunk>, "d": <digest>} as the map source writes them',
            )
        if not 0 <= chunk <= index:
            raise ProtocolError(f"map item reference {value!r} is inconsistent (chunk after item)")
        return cls(index, chunk, digest)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {INDEX: self.index, CHUNK: self.chunk}
        return out if self.digest is None else out | {DIGEST: self.digest}


_IDENTITY = re.compile(r"[0-9a-f]{16,64}")


def is_identity(value: Any) -> bool:
    """An identity or content digest as lineage.py makes them (lowercase hex): nothing else may
    become part of a key."""
    return isinstance(value, str) and _IDENTITY.fullmatch(value) is not None


# Payload classes are NamedTuples: as immutable and typed as frozen dataclasses, and ten times
# cheaper to define, which every Lambda cold start pays.
class Stamp(NamedTuple):
    """What every Task payload carries besides its data: the protocol version, and the flow's and
    the node's fingerprints as the generator computed them (the runtime compares with its own)."""

    protocol: Any
    flow: Any
    node: Any

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> Stamp:
        value = event.get(STAMP)
        if not isinstance(value, Mapping):
            return cls(None, None, None)
        return cls(value.get("protocol"), value.get("flow"), value.get("step"))

    def to_json(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "flow": self.flow, "step": self.node}


class TaskEvent(NamedTuple):
    """What a Task outside any map sends its step's function."""

    node: str
    run_id: Any
    params: Any

    @staticmethod
    def asl_template(node: str, run_id_path: str, params_path: str, stamp: Stamp) -> dict[str, Any]:
        return {NODE: node, _path_key(RUN_ID): run_id_path, _path_key(PARAMS): params_path, STAMP: stamp.to_json()}

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> TaskEvent:
        return cls(_node(event), event.get(RUN_ID), event.get(PARAMS))

    def to_payload(self) -> dict[str, Any]:
        return {NODE: self.node, RUN_ID: self.run_id, PARAMS: self.params}


class MapEvent(NamedTuple):
    """What a Task of a map body sends: one item, or a batch of items from the ItemBatcher."""

    node: str
    map: str
    items: tuple[ItemRef, ...] | None  # None: every item of the map (a sample event for `sam local invoke`)
    run_id: Any
    params: Any
    source: str | None = None  # the identity of the source output (None: the runtime reads the source's pointer)

    @staticmethod
    def asl_template(node: str, map_id: str, stamp: Stamp) -> dict[str, Any]:
        # The child's input is one item (or a batch); each Task passes it on unchanged.
        return {NODE: node, MAP: map_id, _path_key(INPUT): "$", STAMP: stamp.to_json()}

    @staticmethod
    def item_selector(item_path: str, context: Mapping[str, str]) -> dict[str, Any]:
        """What each item of a map receives: its own reference (at `item_path`) plus the run's context."""
        refs = {_path_key(key): f"{item_path}.{key}" for key in (INDEX, CHUNK, DIGEST)}
        return {**refs, **context}

    @staticmethod
    def context_template(run_id_path: str, params_path: str, source_path: str) -> dict[str, str]:
        return {_path_key(RUN_ID): run_id_path, _path_key(PARAMS): params_path, _path_key(SOURCE): source_path}

    @staticmethod
    def is_map_event(event: Mapping[str, Any]) -> bool:
        return event.get(MAP) is not None

    @staticmethod
    def target(event: Mapping[str, Any]) -> tuple[str, str]:
        """(node, map) the event is for: checked before its items are read."""
        map_id = event.get(MAP)
        if not isinstance(map_id, str):
            raise ProtocolError(f"the event's '{MAP}' must be a map id (a string), got {map_id!r}")
        return _node(event), map_id

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> MapEvent:
        node, map_id = cls.target(event)
        value = event.get(INPUT)
        refs: tuple[ItemRef, ...] | None
        context: Any
        if isinstance(value, Mapping) and value.get(ALL_ITEMS) is True:
            context, refs = value, None
        elif isinstance(value, Mapping) and ITEMS in value:
            items = value[ITEMS]
            if not isinstance(items, list) or not items:
                raise ProtocolError(f"a batch needs a non-empty '{ITEMS}' list")
            context = value.get(BATCH_INPUT)
            if not isinstance(context, Mapping) or RUN_ID not in context:
                context = items[0]  # items carry the context too (emulators without BatchInput)
            refs = tuple(ItemRef.parse(item) for item in items)
        elif isinstance(value, Mapping):
            context, refs = value, (ItemRef.parse(value),)
        else:
            raise ProtocolError(f"a map step's '{INPUT}' must be an item or a batch, got {value!r}")
        if not isinstance(context, Mapping) or RUN_ID not in context:
            raise ProtocolError(f"the event has no '{RUN_ID}'")
        source = context.get(SOURCE)
        if source is not None and not is_identity(source):
            raise ProtocolError(f"the event's '{SOURCE}' must be an identity (hex), got {source!r}")
        return cls(node, map_id, refs, context[RUN_ID], context.get(PARAMS), source)

    def to_payload(self, *, batched: bool) -> dict[str, Any]:
        context: dict[str, Any] = {RUN_ID: self.run_id, PARAMS: self.params}
        if self.source is not None:
            context[SOURCE] = self.source

        def item(ref: ItemRef) -> dict[str, Any]:
            return {**ref.to_json(), **context}

        if self.items is None:
            value: Any = {ALL_ITEMS: True, **context}
        elif batched:
            value = {ITEMS: [item(r) for r in self.items], BATCH_INPUT: context}
        else:
            (only,) = self.items
            value = item(only)
        return {NODE: self.node, MAP: self.map, INPUT: value}


class MapSourceResult(NamedTuple):
    """What the step feeding a map returns: where the map's manifest is (and, INLINE, the manifest)."""

    bucket: str
    key: str
    size: int  # the item count (`count` in the payload)
    identity: str  # the source output's identity (`id`): the items' chunks are under it
    items: list[dict[str, Any]] | None = None

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {BUCKET: self.bucket, KEY: self.key, COUNT: self.size, IDENTITY: self.identity}
        if self.items is not None:
            out[ITEMS] = self.items
        return out

    @staticmethod
    def result_selector(inline: bool) -> dict[str, str]:
        """ASL ResultSelector keeping exactly this shape from the Lambda's `Payload`."""
        keys = (BUCKET, KEY, COUNT, IDENTITY, *((ITEMS,) if inline else ()))
        return {_path_key(k): f"$.Payload.{k}" for k in keys}


def _node(event: Mapping[str, Any]) -> str:
    node = event.get(NODE)
    if not isinstance(node, str):
        raise ProtocolError(f"the event must name a node (a string), got {node!r}")
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
