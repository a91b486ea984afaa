"""What a Batch Task state tells the job it starts, and how the job turns it back into an event.

A Lambda step receives its event as the invocation payload; a Batch job has no payload, only its
environment. The state machine therefore passes the same references through
`ContainerOverrides.Environment` (never data), and the job rebuilds exactly the event the Lambda
handler would have received, so both run one protocol (`lokki_sam.runtime.handle`):

    LOKKI_NODE      the node to run
    LOKKI_RUN_ID    the execution name ($$.Execution.Name; a resume's is `<run>.resume-<n>`)
    LOKKI_PARAMS    the flow parameters, as JSON
    LOKKI_STAMP     the Stamp as JSON (protocol version, flow and node fingerprints)
    LOKKI_MAP       the map a map-body node runs in (absent outside maps)
    LOKKI_ITEMS     the map items' indexes, as JSON: one index, or a list (a batch of items)
    LOKKI_CHUNKS    the first index of the chunk holding each item, in the same shape
    LOKKI_DIGESTS   each item's content digest, in the same shape (what its outputs' identities derive from)
    LOKKI_SOURCE    the identity of the map source's output the items come from

The job's own settings (module, flow, step, bucket, prefix, version) are the job definition's
environment, named as a function's are (`names.ENV_*`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lokki_sam.errors import LokkiError
from lokki_sam.protocol import (
    BATCH_INPUT,
    CHUNK,
    DIGEST,
    INDEX,
    INPUT,
    ITEMS,
    MAP,
    NODE,
    PARAMS,
    RUN_ID,
    SOURCE,
    STAMP,
    Stamp,
)

ENV_NODE = "LOKKI_NODE"
ENV_RUN_ID = "LOKKI_RUN_ID"
ENV_PARAMS = "LOKKI_PARAMS"
ENV_STAMP = "LOKKI_STAMP"
ENV_MAP = "LOKKI_MAP"
ENV_ITEMS = "LOKKI_ITEMS"
ENV_CHUNKS = "LOKKI_CHUNKS"
ENV_DIGESTS = "LOKKI_DIGESTS"
ENV_SOURCE = "LOKKI_SOURCE"
# Not from the state machine: `lokki-sam run` points a Batch step's subprocess at its local run directory.
ENV_LOCAL_STORE = "LOKKI_LOCAL_STORE"
EVENT_VARIABLES = (
    ENV_NODE,
    ENV_RUN_ID,
    ENV_PARAMS,
    ENV_STAMP,
    ENV_MAP,
    ENV_ITEMS,
    ENV_CHUNKS,
    ENV_DIGESTS,
    ENV_SOURCE,
)


class JobEnvironmentError(LokkiError):
    """The job's environment is not what a lokki-sam state machine passes (a job started by hand?)."""


def asl_environment(node: str, map_id: str | None, stamp: Stamp, *, batched: bool) -> list[dict[str, str]]:
    """`ContainerOverrides.Environment` of the Task state that runs `node` as a Batch job.

    Outside maps the state input holds `params`; in a map child it is one item (`i`, `c`,
    `run_id`, `params`) or, with an ItemBatcher, `{"Items": [...], "BatchInput": {...}}`, whose
    indexes `$.Items[*].i` lists without copying the context once per item."""
    entries = [
        {"Name": ENV_NODE, "Value": node},
        {"Name": ENV_STAMP, "Value": json.dumps(stamp.to_json(), sort_keys=True, separators=(",", ":"))},
    ]
    if map_id is None:
        context = {ENV_RUN_ID: "$$.Execution.Name", ENV_PARAMS: "States.JsonToString($.params)"}
    else:
        entries.append({"Name": ENV_MAP, "Value": map_id})
        where = f"$.{BATCH_INPUT}." if batched else "$."
        items = f"$.{ITEMS}[*]." if batched else "$."
        context = {
            ENV_RUN_ID: f"{where}{RUN_ID}",
            ENV_PARAMS: f"States.JsonToString({where}{PARAMS})",
            ENV_ITEMS: f"States.JsonToString({items}{INDEX})",
            ENV_CHUNKS: f"States.JsonToString({items}{CHUNK})",
            ENV_DIGESTS: f"States.JsonToString({items}{DIGEST})",
            ENV_SOURCE: f"{where}{SOURCE}",
        }
    entries += [{"Name": name, "Value.$": path} for name, path in context.items()]
    return entries


def stamped_node(parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """`{"node", "lokki"}` of a Batch Task's Parameters (its ContainerOverrides.Environment), as a
    Lambda Task's payload carries them; None for another Task."""
    overrides = parameters.get("ContainerOverrides")
    entries = overrides.get("Environment") if isinstance(overrides, Mapping) else None
    if not isinstance(entries, list):
        return None
    values = {e.get("Name"): e.get("Value") for e in entries if isinstance(e, Mapping)}
    node, stamp = values.get(ENV_NODE), values.get(ENV_STAMP)
    if not isinstance(node, str) or not isinstance(stamp, str):
        return None
    try:
        return {NODE: node, STAMP: json.loads(stamp)}
    except ValueError:
        return None


def event_from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    """The Lambda event the job's environment stands for (a TaskEvent or a MapEvent payload)."""
    missing = [name for name in (ENV_NODE, ENV_RUN_ID, ENV_STAMP) if not env.get(name)]
    if missing:
        raise JobEnvironmentError(
            f"environment variable(s) {', '.join(missing)} not set",
            where="lokki_sam.batch",
            hint="the state machine `lokki-sam generate` writes passes them in ContainerOverrides; "
            "to run a step by hand, use `lokki-sam run`",
        )
    event: dict[str, Any] = {NODE: env[ENV_NODE], STAMP: _json(env, ENV_STAMP)}
    run_id, params = env[ENV_RUN_ID], _json(env, ENV_PARAMS) if env.get(ENV_PARAMS) else {}
    map_id = env.get(ENV_MAP)
    if not map_id:
        return {**event, RUN_ID: run_id, PARAMS: params}
    indexes, chunks = _json(env, ENV_ITEMS), _json(env, ENV_CHUNKS)
    digests = _json(env, ENV_DIGESTS) if env.get(ENV_DIGESTS) else None
    shapes = [isinstance(part, list) for part in (indexes, chunks, digests) if part is not None]
    lengths = {len(part) for part in (indexes, chunks, digests) if isinstance(part, list)}
    if len(set(shapes)) > 1 or len(lengths) > 1:
        raise JobEnvironmentError(
            f"{ENV_ITEMS}, {ENV_CHUNKS} and {ENV_DIGESTS} do not match: {indexes!r}, {chunks!r} and {digests!r}"
        )
    context: dict[str, Any] = {RUN_ID: run_id, PARAMS: params}
    if env.get(ENV_SOURCE):
        context[SOURCE] = env[ENV_SOURCE]
    if isinstance(indexes, list):
        found = digests if isinstance(digests, list) else [None] * len(indexes)
        items = [_item(i, c, d) for i, c, d in zip(indexes, chunks, found, strict=True)]
        value: dict[str, Any] = {ITEMS: items, BATCH_INPUT: context}
    else:
        value = {**_item(indexes, chunks, digests), **context}
    return {**event, MAP: map_id, INPUT: value}


def _item(index: Any, chunk: Any, digest: Any) -> dict[str, Any]:
    return {INDEX: index, CHUNK: chunk} | ({DIGEST: digest} if digest is not None else {})


def environment_for(event: Mapping[str, Any]) -> dict[str, str]:
    """The inverse of `event_from_environment`: the variables a state machine would set for
    `event` (what `lokki-sam run` gives a Batch step's local subprocess)."""
    env = {
        ENV_NODE: str(event[NODE]),
        ENV_STAMP: json.dumps(event[STAMP], sort_keys=True, separators=(",", ":")),
    }
    if event.get(MAP) is None:
        return {**env, ENV_RUN_ID: str(event[RUN_ID]), ENV_PARAMS: json.dumps(event.get(PARAMS) or {})}
    value = event[INPUT]
    if ITEMS in value:
        context = value[BATCH_INPUT]
        indexes: Any = [item[INDEX] for item in value[ITEMS]]
        chunks: Any = [item[CHUNK] for item in value[ITEMS]]
        digests: Any = [item.get(DIGEST) for item in value[ITEMS]]
    else:
        context, indexes, chunks, digests = value, value[INDEX], value[CHUNK], value.get(DIGEST)
    out = {
        **env,
        ENV_MAP: str(event[MAP]),
        ENV_RUN_ID: str(context[RUN_ID]),
        ENV_PARAMS: json.dumps(context.get(PARAMS) or {}),
        ENV_ITEMS: json.dumps(indexes),
        ENV_CHUNKS: json.dumps(chunks),
        ENV_DIGESTS: json.dumps(digests),
    }
    if context.get(SOURCE):
        out[ENV_SOURCE] = str(context[SOURCE])
    return out


def _json(env: Mapping[str, str], name: str) -> Any:
    try:
        return json.loads(env[name])
    except (KeyError, ValueError) as exc:
        raise JobEnvironmentError(f"{name} is not JSON: {env.get(name)!r} ({exc})") from None
