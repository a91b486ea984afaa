"""The one artifact format: a 6-byte header, then a pickle, compressed only when it pays.

Header: b"LOKK", format version (1 byte), codec (1 byte). Readers refuse unknown versions and
anything without the magic, so a foreign or truncated object fails clearly instead of being
unpickled. Compression: zlib level 1 when a sample of the payload compresses well (see
bench/store.py for the measurements behind this choice; gzip level 9 is several times slower).
"""

from __future__ import annotations

import io
import pickle
import zlib
from typing import Any

from lokki_sam.errors import SerializationError, StoreError

MAGIC = b"LOKK"
FORMAT_VERSION = 1
CODEC_RAW = 0
CODEC_ZLIB = 1
HEADER_SIZE = len(MAGIC) + 2

COMPRESS_MIN_BYTES = 4096  # below this, compression costs more than it saves
SAMPLE_BYTES = 65536
SAMPLE_MAX_RATIO = 0.8  # compress only if a sample shrinks by at least 20 %


def dumps(obj: Any, *, what: str = "value") -> bytes:
    # Pickle straight after the header into one buffer: no second copy of a large payload to
    # prepend the header (10 MB of random bytes: ~25 ms -> ~3 ms, see bench/store.py).
    buf = io.BytesIO()
    buf.write(MAGIC + bytes((FORMAT_VERSION, CODEC_RAW)))
    try:
        pickle.dump(obj, buf, protocol=5)
    except Exception as exc:
        raise SerializationError(
            f"{what} of type {type(obj).__name__} cannot be serialized: {exc}",
            hint="return picklable data (no open files, locks, sockets, generators or lambdas)",
        ) from None
    packed = None
    with buf.getbuffer() as view, view[HEADER_SIZE:] as payload:
        if len(payload) >= COMPRESS_MIN_BYTES and _compresses_well(payload):
            packed = zlib.compress(payload, 1)
    if packed is not None:
        return MAGIC + bytes((FORMAT_VERSION, CODEC_ZLIB)) + packed
    return buf.getvalue()  # shares the buffer, no copy


def loads(data: bytes, *, where: str) -> Any:
    """Decode an artifact; `where` names it (key or path) in errors."""
    if len(data) < HEADER_SIZE or data[: len(MAGIC)] != MAGIC:
        raise StoreError("not a lokki-sam artifact (missing header); refusing to unpickle it", where=where)
    version, codec = data[len(MAGIC)], data[len(MAGIC) + 1]
    if version > FORMAT_VERSION:
        raise StoreError(
            f"artifact format version {version} is newer than this lokki-sam understands ({FORMAT_VERSION})",
            where=where,
            hint="upgrade lokki-sam to read it",
        )
    if version < 1:
        raise StoreError(f"unknown artifact format version {version}", where=where)
    payload = memoryview(data)[HEADER_SIZE:]
    try:
        if codec == CODEC_ZLIB:
            payload = memoryview(zlib.decompress(payload))
        elif codec != CODEC_RAW:
            raise StoreError(f"unknown codec {codec}", where=where)
        return pickle.loads(payload)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"artifact is corrupt or truncated ({type(exc).__name__}: {exc})", where=where) from None


def _compresses_well(payload: bytes | memoryview) -> bool:
    sample = payload[:SAMPLE_BYTES]
    return len(zlib.compress(sample, 1)) <= len(sample) * SAMPLE_MAX_RATIO
