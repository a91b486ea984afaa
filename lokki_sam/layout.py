"""The key layout shared by the local runner and the Lambda runtime.

Keys are relative to a store root (a local directory, or an S3 bucket + the stack's flow prefix):

    {run}/run.json                                      run record (local runs)
    {run}/lock                                          who is running the run now (local runs)
    {run}/step={node}/current.json                      the output the run's latest execution used (a pointer)
    {run}/step={node}/{id}/output.pkl                   output of a step outside any map
    {run}/step={node}/{id}/manifest.json                a map source's items, as the ItemReader reads them
    {run}/step={node}/{id}/items/{first:08d}.pkl        a map source's items [first, first + chunk)
    {run}/step={node}/{id}/todo/{execution}.json        the items a resumed execution still runs
    {run}/step={node}/{first:08d}-{last:08d}-{tag}.pkl  a map step's outputs for items first..last
    {run}/step={node}/failures/{first:08d}-{tag}.json   why a batch of items failed in this step (any engine)
    {run}/step={node}/decisions/{execution}/{stage}.json  what a resumed execution reused, and why not

`id` is the identity of what the output was computed from (`lineage.py`: the node's code, the
parameter values it receives and the content of its input), and a batch's `tag` hashes its items'
identities. So an output computed from other code or other inputs is under another key and is never
read; a resume reuses exactly the outputs whose key is the one it would write now.

Collision-free by construction: everything a node writes lives under its own `step={node}/`
directory, and `=` appears in no fixed name, run id or identity, so no step name (`items`,
`failures`, `run`...) can meet a fixed name. Every write goes to a key derived from (run, node,
identity, items), so a retried invocation overwrites its own output and nothing else, and IAM can
scope each function's writes to its own nodes' directories (`node_pattern`). The pointer is the one
key a node rewrites: it names the identity later steps read (written after the output it names).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lokki_sam.errors import StoreError

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
NODE_SEGMENT = "step="
_BATCH_RE = re.compile(r"/(\d{8,})-(\d{8,})-([0-9a-f]+)\.pkl$")


def new_run_id(flow_name: str) -> str:
    """`<flow>-<UTC time>-<random>`: sortable by start time, unique across machines."""
    import datetime as dt  # not at import: a Lambda cold start never makes run ids
    import secrets

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{flow_name}-{stamp}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id) or ".." in run_id:
        raise StoreError(
            f"invalid run id {run_id!r}",
            hint="run ids use letters, digits, '-', '_', '.', ':' (at most 128 characters)",
        )
    return run_id


def run_record(run: str) -> str:
    return f"{run}/run.json"


def run_lock(run: str) -> str:
    return f"{run}/lock"


def node_dir(run: str, node: str) -> str:
    return f"{run}/{NODE_SEGMENT}{node}/"


def pointer(run: str, node: str) -> str:
    return f"{node_dir(run, node)}current.json"


def output_dir(run: str, node: str, identity: str) -> str:
    return f"{node_dir(run, node)}{identity}/"


def task_output(run: str, node: str, identity: str) -> str:
    return f"{output_dir(run, node, identity)}output.pkl"


def manifest(run: str, source: str, identity: str) -> str:
    return f"{output_dir(run, source, identity)}manifest.json"


def items_chunk(run: str, source: str, identity: str, first: int) -> str:
    return f"{output_dir(run, source, identity)}items/{first:08d}.pkl"


def todo_manifest(run: str, source: str, identity: str, execution: str) -> str:
    return f"{output_dir(run, source, identity)}todo/{execution}.json"


def batch_output(run: str, node: str, first: int, last: int, tag: str) -> str:
    """The outputs of a map step for the contiguous items first..last (both included)."""
    return f"{node_dir(run, node)}{first:08d}-{last:08d}-{tag}.pkl"


def batch_span(key: str) -> tuple[int, int, str] | None:
    """(first, last, tag) of a batch output key, None for any other key."""
    found = _BATCH_RE.search(key)
    return (int(found.group(1)), int(found.group(2)), found.group(3)) if found else None


def failure(run: str, node: str, first: int, tag: str) -> str:
    return f"{node_dir(run, node)}failures/{first:08d}-{tag}.json"


def decision(run: str, node: str, execution: str, stage: str) -> str:
    """What a resumed execution decided for `stage` (recorded by `node`, the step that runs it or
    the source of its map): reused or recomputed, and why."""
    return f"{node_dir(run, node)}decisions/{execution}/{stage}.json"


def node_pattern(node: str) -> str:
    """Every key a node writes, under any run, as an IAM resource pattern relative to the prefix.

    '/step=<node>/' occurs in a key only as that node's directory: run ids have no '/' or '=',
    and nothing below a node's directory contains '='."""
    return f"*/{NODE_SEGMENT}{node}/*"


def manifest_patterns(source: str) -> list[str]:
    """The manifests a map's ItemReader reads (fresh and resumed executions)."""
    return [f"*/{NODE_SEGMENT}{source}/*/manifest.json", f"*/{NODE_SEGMENT}{source}/*/todo/*.json"]


def contiguous(indexes: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted, distinct item indexes as (first, last) runs: [0, 1, 2, 5] -> [(0, 2), (5, 5)]."""
    runs: list[tuple[int, int]] = []
    for index in indexes:
        if runs and index == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs


def chunk_start(index: int, batch_size: int) -> int:
    return index - index % batch_size


def check_key(key: str) -> str:
    """Refuse keys that could escape the store root (absolute, '..', empty segments)."""
    if (
        not isinstance(key, str)
        or not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in ("", ".", "..") for part in key.rstrip("/").split("/"))
    ):
        raise StoreError(f"refusing store key {key!r}: it is not a plain relative key inside the store")
    return key
