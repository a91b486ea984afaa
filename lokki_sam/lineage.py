"""What every stored output was computed from: identities chained like a Merkle tree.

An output is stored under the identity of exactly what it was computed from (`layout.py`):

    task output          id = H(recipe, content digest of its input | nothing for the first step)
    map item, 1st step   id = H(recipe, content digest of the item)
    map item, next step  id = H(recipe, id of the item's output of the step before)
    an agg's input       the map's digest: H(index and content digest of every item result present)

where a node's *recipe* is its code fingerprint (`fingerprint.py`), the values of the flow parameters
it receives, and a salt that is empty unless the node must be recomputed whatever it was computed
from (`--rerun`, or code that cannot be described). Content digests are the SHA-256 of an output's
pickle, taken as it is written (`serialization.dump`), so a recomputed step whose output is the same
leaves everything after it valid, and an edited or reshaped list invalidates exactly the map items
whose input changed. A resume reuses an output only if it is stored under the identity it would be
computed from now: nothing computed from other code, parameters or inputs can be read by mistake.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph, Nested, Node, ParamRef
from lokki_sam.params import to_record
from lokki_sam.serialization import DIGEST_LENGTH

TAG_LENGTH = 16  # hex characters of a span tag in batch keys (layout.batch_output)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:DIGEST_LENGTH]


@dataclass(frozen=True)
class Recipe:
    """How one node computes, in one execution: what its outputs' identities are derived from."""

    node: str
    code: str  # the node's code fingerprint
    params: str  # digest of the parameter values it receives
    salt: str = ""  # non-empty: recomputed whatever its inputs ("rerun@2", "opaque@<execution>")
    reason: str = ""  # why, for messages, when salted
    _prefix: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prefix", hashlib.sha256(f"{self.code}\0{self.params}\0{self.salt}\0".encode()))

    def task(self, input_digest: str | None) -> str:
        """The identity of a step's output computed from an input of this digest (None: no input)."""
        return self._derive("task:" + (input_digest or "-"))

    def item(self, previous: str) -> str:
        """The identity of a map item's output: from the item's digest (first step of the map body)
        or from the item's identity at the step before."""
        return self._derive(previous)

    def items(self, previous: Sequence[str]) -> list[str]:
        return [self._derive(p) for p in previous]

    def provenance(self, input_digest: str | None = None) -> dict[str, str]:
        """What an identity was derived from, recorded so that a resume can say why it differs."""
        out = {"code": self.code, "params": self.params, "salt": self.salt}
        if input_digest is not None:
            out["input"] = input_digest
        return out

    def _derive(self, text: str) -> str:
        hasher = self._prefix.copy()
        hasher.update(text.encode())
        digest: str = hasher.hexdigest()
        return digest[:DIGEST_LENGTH]


def recipe(
    graph: FlowGraph,
    node: Node,
    params: Mapping[str, Any],
    execution: str,
    reruns: Mapping[str, int] | None = None,
    fingerprints: Mapping[str, str] | None = None,
) -> Recipe:
    """A node's recipe for one execution of a run. `reruns` (node id -> the resume attempt that
    asked for it) salts the nodes a `--rerun` forced, for good: a later resume must not go back to
    the outputs computed before the rerun. A node whose code cannot be described is salted with the
    execution, so it is recomputed once per execution and never reused across executions.
    `fingerprints`: another version's node fingerprints (reading a run that version made)."""
    code = (fingerprints if fingerprints is not None else graph.fingerprints.nodes)[node.id]
    opaque: Mapping[str, str] = graph.fingerprints.opaque if fingerprints is None else {}
    salt, reason = "", ""
    if node.id in (reruns or {}):
        salt, reason = f"rerun@{(reruns or {})[node.id]}", "--rerun"
    if node.id in opaque:
        salt, reason = f"{salt}|opaque@{execution}".lstrip("|"), f"not describable: {opaque[node.id]}"
    return Recipe(node.id, code, params_digest(node, params), salt, reason)


def rerun_nodes(graph: FlowGraph, names_given: Sequence[str]) -> list[str]:
    """The nodes `--rerun` forces: those named (a step name means every node of that step; a map id
    its steps) and every node after the first of them, in flow order."""
    if not names_given:
        return []
    order = [node.id for node in graph.nodes]
    by_name: dict[str, list[str]] = {}
    for node in graph.nodes:
        by_name.setdefault(node.id, []).append(node.id)
        by_name.setdefault(node.step.name, []).append(node.id)
    for block in graph.maps:
        by_name.setdefault(block.id, []).extend(n.id for n in block.nodes)
    unknown = [name for name in names_given if name not in by_name]
    if unknown:
        raise LokkiError(
            f"--rerun {', '.join(unknown)}: flow '{graph.name}' has no such step",
            hint=f"its steps: {', '.join(dict.fromkeys(n.step.name for n in graph.nodes))}",
        )
    first = min(order.index(node) for name in names_given for node in by_name[name])
    return order[first:]


def params_digest(node: Node, params: Mapping[str, Any]) -> str:
    """The values of the flow parameters `node` receives, as recorded (exact, deterministic)."""
    names = sorted(received_params(node))
    if not names:
        return "-"
    record = to_record({name: params[name] for name in names}, where=f"step '{node.id}'")
    return _hash(json.dumps(record, sort_keys=True, separators=(",", ":")))


def received_params(node: Node) -> set[str]:
    found: set[str] = set()
    for _, binding in node.bindings:
        if isinstance(binding, ParamRef):
            found.add(binding.name)
        elif isinstance(binding, Nested):
            found |= _refs_in(binding.value)
    return found


def _refs_in(value: Any) -> set[str]:
    if isinstance(value, ParamRef):
        return {value.name}
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple | set) else ()
    return {name for item in items for name in _refs_in(item)}


def map_digest(results: Iterable[tuple[int, str]]) -> str:
    """The content identity of a map's results as an agg receives them: which items are present
    (a tolerated failure leaves one out) and each one's content digest, in item order."""
    return _hash("map", *(f"{index}:{digest}" for index, digest in results))


def items_digest(digests: Sequence[str]) -> str:
    """The content identity of a list stored as map items (a map source's output)."""
    return _hash("items", *digests)


def span_tag(ids: Sequence[str]) -> str:
    """What a batch object's key carries of its items' identities: a resume reads from the keys
    alone which items are done, and an object stored for other identities never matches."""
    return _hash("span", *ids)[:TAG_LENGTH]
