"""The key layout shared by the local runner and the Lambda runtime.

Keys are relative to a store root (a local directory, or an S3 bucket + flow prefix):

    {run}/run.json                          run record (local runs)
    {run}/{node}/output.pkl                 output of a step outside any map
    {run}/{map}/manifest.json               the Distributed Map's ItemReader input: [{"i": 0}, ...]
    {run}/{map}/items/{first:08d}.pkl       items [first, first + batch_size) as one list
    {run}/{map}/{node}/{first:08d}.pkl      (indexes, outputs) of one batch for a step in the map
    {run}/{map}/failures/{first:08d}.json   why a batch failed (local runs)

Every write goes to a key derived from (run, step, item), so a retried invocation overwrites
its own output and nothing else.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

from lokki_sam.errors import StoreError

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def new_run_id(flow_name: str) -> str:
    """`<flow>-<UTC time>-<random>`: sortable by start time, unique across machines."""
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


def task_output(run: str, node: str) -> str:
    return f"{run}/{node}/output.pkl"


def manifest(run: str, map_id: str) -> str:
    return f"{run}/{map_id}/manifest.json"


def items_chunk(run: str, map_id: str, first: int) -> str:
    return f"{run}/{map_id}/items/{first:08d}.pkl"


def batch_output_dir(run: str, map_id: str, node: str) -> str:
    return f"{run}/{map_id}/{node}/"


def batch_output(run: str, map_id: str, node: str, first: int) -> str:
    return f"{run}/{map_id}/{node}/{first:08d}.pkl"


def failure(run: str, map_id: str, first: int) -> str:
    return f"{run}/{map_id}/failures/{first:08d}.json"


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
