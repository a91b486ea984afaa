"""The store path before issue 15, kept runnable so benchmarks compare before/after in one run.

Format version 1 (header + whole pickle, zlib 1 when a 64 KiB sample compresses well), written
with one `write`/`put_object` of the whole byte string and read with one `read`/`get_object().read()`.
`use_baseline()` patches it into lokki_sam.store (for whole-process runs: bench/baseline_run.py).
Current readers still read what it writes.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zlib
from typing import Any

from lokki_sam.store import ArtifactStore, LocalStore, S3Store

HEADER = b"LOKK" + bytes((1,))


def dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    buf.write(HEADER + b"\x00")
    pickle.dump(obj, buf, protocol=5)
    with buf.getbuffer() as view, view[6:] as payload:
        sample = payload[:65536]
        if len(payload) >= 4096 and len(zlib.compress(sample, 1)) <= len(sample) * 0.8:
            return HEADER + b"\x01" + zlib.compress(payload, 1)
    return buf.getvalue()


def loads(data: bytes) -> Any:
    assert data[:5] == HEADER, "not a version 1 artifact"
    payload = memoryview(data)[6:]
    if data[5] == 1:
        payload = memoryview(zlib.decompress(payload))
    return pickle.loads(payload)


def local_put_bytes(store: LocalStore, key: str, data: bytes) -> None:
    """LocalStore.put_bytes as it was (temp file + rename)."""
    path = store._path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def put(store: ArtifactStore, key: str, obj: Any, *, what: str = "value") -> None:
    data = dumps(obj)
    if isinstance(store, S3Store):
        store.client.put_object(Bucket=store.bucket, Key=store.full_key(key), Body=data)
    else:
        assert isinstance(store, LocalStore)
        local_put_bytes(store, key, data)


def get(store: ArtifactStore, key: str) -> Any:
    if isinstance(store, S3Store):
        body = store.client.get_object(Bucket=store.bucket, Key=store.full_key(key))["Body"].read()
        return loads(body)
    assert isinstance(store, LocalStore)
    return loads(store._path(key).read_bytes())


def use_baseline() -> None:
    """Make every store in this process put/get the way it did before issue 15."""
    ArtifactStore.put = put  # type: ignore[method-assign]
    ArtifactStore.get = get  # type: ignore[method-assign]
