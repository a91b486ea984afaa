"""Compression codecs for artifact frames: the codec ids stored in the header, and their code.

zstd is optional: the standard library's `compression.zstd` (Python 3.14+) or the
`backports.zstd` package (the same module for older Pythons). It is imported on first use, never
at import (a Lambda cold start pays for it only when an artifact needs it). Without it, writers
fall back to zlib; a reader that meets a zstd artifact without it fails naming the fix.
"""

from __future__ import annotations

import zlib
from functools import cache
from typing import Any

from lokki_sam.errors import StoreError

RAW = 0
ZLIB = 1
ZSTD = 2
NAMES = {RAW: "raw", ZLIB: "zlib", ZSTD: "zstd"}
ZLIB_LEVEL = 1  # zlib 1 vs 6/9: several times faster for a few % of size (bench/store.py)
ZSTD_LEVEL = 1  # zstd 1 vs 3: ~2x faster and a better ratio on our samples (bench/store.py)


class Codec:
    """A codec and its module (zlib, or the zstd module). A plain class: a dataclass costs import time."""

    __slots__ = ("id", "module", "name")

    def __init__(self, codec_id: int, name: str, module: Any) -> None:
        self.id = codec_id
        self.name = name
        self.module = module

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        if self.id == ZSTD:
            return bytes(self.module.compress(data, ZSTD_LEVEL))
        return zlib.compress(data, ZLIB_LEVEL)

    def decompress(self, data: bytes | bytearray | memoryview, raw_size: int) -> bytes:
        if self.id == ZSTD:
            return bytes(self.module.decompress(data))
        return zlib.decompress(data, bufsize=max(raw_size, 1))


@cache
def zstd_module() -> Any:
    """The zstd module, or None when neither compression.zstd nor backports.zstd is installed."""
    try:
        from compression import zstd  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found,unused-ignore,no-redef]
        except ImportError:
            return None
    return zstd


def codec(codec_id: int, *, where: str, reading: bool = True) -> Codec:
    """The codec for an id read from (or about to be written to) an artifact header."""
    if codec_id == ZLIB:
        return Codec(ZLIB, "zlib", zlib)
    if codec_id == ZSTD:
        module = zstd_module()
        if module is None:
            raise StoreError(
                "artifact is compressed with zstd, which this Python cannot decompress"
                if reading
                else "zstd was asked for, but this Python has no zstd module",
                where=where,
                hint="pip install backports.zstd (Python < 3.14; lokki-sam[cli] includes it), or use Python 3.14+",
            )
        return Codec(ZSTD, "zstd", module)
    raise StoreError(f"unknown codec {codec_id}", where=where)


def best_compressing() -> int:
    """The codec for stores where bytes cost (S3): zstd when installed, else zlib."""
    return ZSTD if zstd_module() is not None else ZLIB
