"""The one artifact format: a 6-byte header, then a pickle in checksummed frames.

Header: b"LOKK", format version (1 byte), codec (1 byte). Readers refuse unknown versions and
anything without the magic, so a foreign object fails clearly instead of being unpickled.

Version 2 (version 1 was one pickle in one piece): after the header, the pickle (protocol 5) cut into frames of
at most FRAME_BYTES raw bytes. A frame is `kind, stored size, raw size, CRC32 of the stored bytes`
(13 bytes, little endian) then the stored bytes: kind 0 stores them as they are, kind 1 compressed
with the header's codec. An end frame (kind 0xFF, the total raw size and the frame count) closes
the artifact. So a truncated or damaged artifact fails a CRC, a size or the end frame and is a
StoreError naming it, never a wrong value. Frames also let both directions stream: `dump` writes
them to a file as the pickler produces them, `load` unpickles from a file frame by frame, so the
store holds the object plus a few frames, not two or three copies of it.

Version 1 (written before): the header, then the whole pickle, raw or zlib-compressed. Still read.

Codec policy, measured with bench/store.py (figures in bench/README.md), chosen per store:
- local directories: raw. A page-cache write+read runs at ~700 MB/s on our 2-core machine and the
  raw store at ~500 MB/s round trip, while the fastest codec here (zstd 1) compresses text at
  200-450 MB/s on both cores and zlib 1 at 55-135 MB/s: any codec makes local runs slower.
- S3 (bytes cost: storage, and links far slower than a codec): zstd level 1 when available
  (`compression.zstd` on Python 3.14+, or the optional `backports.zstd`), a better ratio than zlib 1
  (0.30 vs 0.36 on CSV-like text) at ~4x its speed; else zlib level 1, the stdlib fallback. zstd 3
  and zlib 6 were slower for little or no gain. A frame is compressed only when a 16 KiB sample of
  it shrinks by 20 % (random data costs no codec work), and the frames of a large artifact are
  compressed on all cores (zlib and zstd release the GIL).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, Protocol

if TYPE_CHECKING:
    from mmap import mmap

from lokki_sam import codecs
from lokki_sam.errors import SerializationError, StoreError

MAGIC = b"LOKK"
FORMAT_VERSION = 2
CODEC_RAW = codecs.RAW
CODEC_ZLIB = codecs.ZLIB
CODEC_ZSTD = codecs.ZSTD
HEADER_SIZE = len(MAGIC) + 2

FRAME_BYTES = 1 << 20  # raw bytes per frame: the unit of streaming, checksumming and parallel compression
MAX_FRAME_BYTES = 64 << 20  # what readers accept (a damaged size field must not allocate gigabytes)
FRAME = struct.Struct("<BIII")  # kind, stored size, raw size, CRC32 of the stored bytes
END = struct.Struct("<QI")  # after the end kind byte: total raw size, frame count (padded to FRAME.size)
KIND_RAW, KIND_PACKED, KIND_END = 0, 1, 0xFF

COMPRESS_MIN_BYTES = 4096  # below this, compression costs more than it saves
SAMPLE_BYTES = 16384
SAMPLE_MAX_RATIO = 0.8  # compress a frame only if a sample of it shrinks by at least 20 %
PARALLEL = os.cpu_count() or 1


if TYPE_CHECKING:  # a Protocol class costs milliseconds of import time: for the type checker only

    class Sink(Protocol):
        def write(self, data: bytes | bytearray | memoryview, /) -> int | None: ...


# ------------------------------------------------------------------------------------ writing


def dump(obj: Any, sink: Sink, *, codec: int = CODEC_RAW, what: str = "value") -> str:
    """Write `obj` as an artifact to a binary file, streaming: no full copy of the pickle is made.
    Returns the content digest of `obj`: the SHA-256 of its pickle, hashed as it is written
    (`DIGEST_LENGTH` hex characters; equal pickles, equal digests)."""
    with _writing(sink, codec, what, obj) as writer:
        hashing = _Hashing(writer)
        pickle.dump(obj, hashing, protocol=5)
        return hashing.cut()


def dump_sequence(
    header: Any, values: Sequence[Any], sink: Sink, *, codec: int = CODEC_RAW, what: str = "value"
) -> list[str]:
    """Write `header` and `values` as one artifact in which each value is a pickle of its own, so
    each has its own content digest (returned, in order, and stored after the values, 16 bytes
    each) at the cost of hashing what is written anyway: map items and their outputs are
    identified one by one."""
    with _writing(sink, codec, what, values) as writer:
        pickle.dump((len(values), header), writer, protocol=5)
        digests: list[bytes] = []
        small: list[bytes] = []  # consecutive small pickles, written together (one frame write)
        held = 0
        for value in values:
            try:
                pickled = pickle.dumps(value, protocol=5)  # each value stands alone: its pickle depends on it only
            except Exception as exc:
                raise _unpicklable(value, what, exc) from None
            if len(pickled) >= PARALLEL_HASH_BYTES:  # hashed on another core while it is written
                hashed = _pool().submit(_digest, pickled)
                writer.write(b"".join(small))
                small, held = [], 0
                writer.write(pickled)
                digests.append(hashed.result())
                continue
            digests.append(_digest(pickled))
            small.append(pickled)
            held += len(pickled)
            if held >= SMALL_WRITES:
                writer.write(b"".join(small))
                small, held = [], 0
        writer.write(b"".join(small))
        pickle.dump(b"".join(digests), writer, protocol=5)
        return [d.hex() for d in digests]


def _digest(data: bytes) -> bytes:
    """A content digest: SHA-256, cut to DIGEST_LENGTH hex characters' worth."""
    return hashlib.sha256(data).digest()[:DIGEST_BYTES]


@contextlib.contextmanager
def _writing(sink: Sink, codec: int, what: str, obj: Any) -> Iterator[_FrameWriter]:
    """A frame writer after the header; closed (end frame) when the body succeeds, aborted if not."""
    chosen = None if codec == CODEC_RAW else codecs.codec(codec, where="dump", reading=False)
    sink.write(MAGIC + bytes((FORMAT_VERSION, codec)))
    writer = _FrameWriter(sink, chosen)
    try:
        yield writer
        writer.close()
    except SerializationError:
        writer.abort()
        raise
    except Exception as exc:
        writer.abort()
        if exc is writer.error:  # the file failed (disk full...): the store reports it
            raise
        raise _unpicklable(obj, what, exc) from None
    except BaseException:
        writer.abort()
        raise


DIGEST_LENGTH = 32  # hex characters of a content digest: 128 bits, no accidental collision
DIGEST_BYTES = DIGEST_LENGTH // 2
PARALLEL_HASH_BYTES = 1 << 20  # from this size on, data is hashed beside its writing (a thread)
SMALL_WRITES = 1 << 16  # small pickles of a sequence are written in groups of about this size


class _Hashing:
    """A write-through file that hashes what passes; `cut()` ends one value's digest. Large
    writes are hashed on the hashing thread while the caller's thread frames and writes them."""

    def __init__(self, writer: _FrameWriter) -> None:
        self.writer = writer
        self.hasher = hashlib.sha256()
        self.pending: Future[None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.pending is not None or len(data) >= PARALLEL_HASH_BYTES:  # in order, behind what is queued
            self.pending = _hash_pool().submit(self.hasher.update, bytes(data) if isinstance(data, bytearray) else data)
        else:
            self.hasher.update(data)
        return self.writer.write(data)

    def cut(self) -> str:
        if self.pending is not None:
            self.pending.result()  # the pool has one thread: every update before it is done too
            self.pending = None
        digest = self.hasher.hexdigest()[:DIGEST_LENGTH]
        self.hasher = hashlib.sha256()
        return digest


_hash_lock = threading.Lock()
_hash_pools: list[ThreadPoolExecutor] = []


def _hash_pool() -> ThreadPoolExecutor:
    """One thread for the process's large hashes, in submission order."""
    with _hash_lock:
        if not _hash_pools:
            _hash_pools.append(ThreadPoolExecutor(1, thread_name_prefix="lokki-hash"))
        return _hash_pools[0]


def dumps(obj: Any, *, codec: int = CODEC_RAW, what: str = "value") -> bytes:
    """`obj` as an artifact in memory (for small objects: one pickle call, then framing)."""
    try:
        pickled = pickle.dumps(obj, protocol=5)
    except Exception as exc:
        raise _unpicklable(obj, what, exc) from None
    size = len(pickled)
    if codec == CODEC_RAW and size <= FRAME_BYTES:  # the common small case, without a writer
        frame = FRAME.pack(KIND_RAW, size, size, zlib.crc32(pickled))
        end = bytes((KIND_END,)) + END.pack(size, 1)
        return b"".join((MAGIC, bytes((FORMAT_VERSION, codec)), frame, pickled, end))
    buf = io.BytesIO()
    buf.write(MAGIC + bytes((FORMAT_VERSION, codec)))
    writer = _FrameWriter(buf, None if codec == CODEC_RAW else codecs.codec(codec, where="dumps", reading=False))
    writer.write(pickled)
    writer.close()
    return buf.getvalue()  # shares the buffer, no copy


def _unpicklable(obj: Any, what: str, exc: Exception) -> SerializationError:
    return SerializationError(
        f"{what} of type {type(obj).__name__} cannot be serialized: {exc}",
        hint="return picklable data (no open files, locks, sockets, generators or lambdas)",
    )


Packed = tuple[int, bytes | bytearray | memoryview, int, int]  # kind, stored bytes, raw size, CRC32


class _FrameWriter:
    """A write-only file for pickle.dump: cuts what it is given into frames and writes them in order.

    Large writes (the pickler hands over big bytes/buffers as they are) are framed without a copy.
    With a codec, the first frame is held back (most artifacts are one frame: no threads for
    them); from the second on, frames are compressed on a shared thread pool, a bounded number
    ahead of the one being written.
    """

    def __init__(self, sink: Sink, codec: codecs.Codec | None) -> None:
        self.sink = sink
        self.codec = codec
        self.buf = bytearray()
        self.held: Callable[[], Packed] | None = None
        self.pending: deque[Future[Packed]] = deque()
        self.parallel = False
        self.total = 0
        self.frames = 0
        self.error: BaseException | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        room = FRAME_BYTES - len(self.buf)
        if size < room:
            self.buf += view
            return size
        start = 0
        if self.buf:
            self.buf += view[:room]
            self._emit(self.buf)
            self.buf = bytearray()
            start = room
        while size - start >= FRAME_BYTES:
            self._emit(view[start : start + FRAME_BYTES])
            start += FRAME_BYTES
        self.buf += view[start:]
        return size

    def close(self) -> None:
        if self.buf:
            self._emit(self.buf)
            self.buf = bytearray()
        if self.held is not None:
            self._put(self.held())
            self.held = None
        while self.pending:
            self._put(self.pending.popleft().result())
        self._write(bytes((KIND_END,)) + END.pack(self.total, self.frames))

    def abort(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pending.clear()

    def _emit(self, data: bytearray | memoryview) -> None:
        self.frames += 1
        self.total += len(data)
        if self.codec is None:
            self._put((KIND_RAW, data, len(data), zlib.crc32(data)))
            return
        codec = self.codec

        def job() -> Packed:
            return _pack(codec, data)

        if not self.parallel:
            if self.held is None:
                self.held = job
                return
            self.parallel = True
            self.pending.append(_pool().submit(self.held))
            self.held = None
        self.pending.append(_pool().submit(job))
        while len(self.pending) > 2 * PARALLEL:
            self._put(self.pending.popleft().result())

    def _put(self, packed: Packed) -> None:
        kind, stored, raw_size, crc = packed
        self._write(FRAME.pack(kind, len(stored), raw_size, crc))
        self._write(stored)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self.sink.write(data)
        except BaseException as exc:
            self.error = exc
            raise


def _pack(codec: codecs.Codec, data: bytearray | memoryview) -> Packed:
    size = len(data)
    if size >= COMPRESS_MIN_BYTES:
        sample = data[:SAMPLE_BYTES]
        if len(codec.compress(sample)) <= len(sample) * SAMPLE_MAX_RATIO:
            packed = codec.compress(data)
            if len(packed) < size:
                return KIND_PACKED, packed, size, zlib.crc32(packed)
    return KIND_RAW, data, size, zlib.crc32(data)


_pool_lock = threading.Lock()
_pools: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    """One compression pool for the process (its threads start on first use)."""
    with _pool_lock:
        if not _pools:
            _pools.append(ThreadPoolExecutor(PARALLEL, thread_name_prefix="lokki-codec"))
        return _pools[0]


# ------------------------------------------------------------------------------------ reading


def load(source: BinaryIO, *, where: str) -> Any:
    """Read an artifact from a binary file, streaming; `where` names it (key or path) in errors."""
    if isinstance(source, io.BytesIO):  # already in memory (a small object): no streaming reader
        with source.getbuffer() as view:
            return loads(view[source.tell() :], where=where)
    return _load_stream(source, where)


def _load_stream(source: BinaryIO | _Memory, where: str) -> Any:
    header = _read_exact(source, HEADER_SIZE)
    version, codec_id = _check_header(header, where)
    if version == 1:
        return _loads_v1(header + source.read(), where)
    reader = _FrameReader(source, codec_id, where)
    with _corrupt(where):
        value = pickle.Unpickler(reader).load()
        reader.finish()
    return value


def load_sequence(source: BinaryIO, *, where: str) -> Sequenced:
    """Read an artifact `dump_sequence` wrote: (header, values, their digests)."""
    if isinstance(source, io.BytesIO):
        with source.getbuffer() as view:
            return loads_sequence(view[source.tell() :], where=where)
    return _load_sequence(source, where)


def loads_sequence(data: bytes | bytearray | memoryview | mmap, *, where: str) -> Sequenced:
    version, codec_id = _check_header(bytes(data[:HEADER_SIZE]), where)
    single = _single_frame(memoryview(data), codec_id, where) if version != 1 else None
    if single is None:
        return _load_sequence(_Memory(data), where)
    buffer = io.BytesIO(single)
    with _corrupt(where):
        found = _read_sequence(pickle.Unpickler(buffer), where, None)
    if buffer.tell() != len(single):
        raise StoreError("artifact is corrupt or truncated (bytes after the sequence)", where=where)
    return found


def _load_sequence(source: BinaryIO | _Memory, where: str) -> Sequenced:
    version, codec_id = _check_header(_read_exact(source, HEADER_SIZE), where)
    if version == 1:
        raise StoreError("not a sequence artifact (format 1)", where=where)
    reader = _FrameReader(source, codec_id, where)
    with _corrupt(where):
        return _read_sequence(pickle.Unpickler(reader), where, reader)


def _read_sequence(unpickler: pickle.Unpickler, where: str, reader: _FrameReader | None) -> Sequenced:
    first = unpickler.load()
    if not (isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], int) and first[0] >= 0):
        raise StoreError("not a sequence artifact (no count and header)", where=where)
    count, header = first
    values = [unpickler.load() for _ in range(count)]
    digests = unpickler.load()
    if not (isinstance(digests, bytes) and len(digests) == count * DIGEST_BYTES):
        raise StoreError("not a sequence artifact (no digest per value)", where=where)
    if reader is not None:
        reader.finish()
    hexes = digests.hex()
    size = DIGEST_LENGTH
    return Sequenced(header, values, [hexes[i : i + size] for i in range(0, len(hexes), size)])


class Sequenced(NamedTuple):
    header: Any
    values: list[Any]
    digests: list[str]


@contextlib.contextmanager
def _corrupt(where: str) -> Iterator[None]:
    """Anything but a StoreError while unpickling means a damaged artifact: say so, naming it."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"artifact is corrupt or truncated ({type(exc).__name__}: {exc})", where=where) from None


def loads(data: bytes | bytearray | memoryview | mmap, *, where: str) -> Any:
    """Decode an artifact held in memory; `where` names it (key or path) in errors."""
    version, codec_id = _check_header(bytes(data[:HEADER_SIZE]), where)
    if version == 1:
        return _loads_v1(data, where)
    single = _single_frame(memoryview(data), codec_id, where)
    if single is not None:
        with _corrupt(where):
            return pickle.loads(single)
    return _load_stream(_Memory(data), where)


def _single_frame(data: memoryview, codec_id: int, where: str) -> bytes | memoryview | None:
    """The pickle of a one-frame artifact (most of them), checked, without the streaming reader;
    None for anything else (the reader then reads it, or says what is wrong with it)."""
    end = len(data) - FRAME.size
    if end < HEADER_SIZE + FRAME.size or data[end] != KIND_END:
        return None
    kind, stored, raw_size, crc = FRAME.unpack(data[HEADER_SIZE : HEADER_SIZE + FRAME.size])
    body = data[HEADER_SIZE + FRAME.size : end]
    if len(body) != stored or END.unpack(data[end + 1 :]) != (raw_size, 1) or zlib.crc32(body) != crc:
        return None
    if kind == KIND_RAW and stored == raw_size:
        return body
    if kind == KIND_PACKED:
        try:
            raw = codecs.codec(codec_id, where=where).decompress(body, raw_size)
        except StoreError:
            raise
        except Exception:
            return None
        return raw if len(raw) == raw_size else None
    return None


def _check_header(header: bytes, where: str) -> tuple[int, int]:
    if len(header) < HEADER_SIZE or header[: len(MAGIC)] != MAGIC:
        raise StoreError("not a lokki-sam artifact (missing header); refusing to unpickle it", where=where)
    version, codec_id = header[len(MAGIC)], header[len(MAGIC) + 1]
    if version > FORMAT_VERSION:
        raise StoreError(
            f"artifact format version {version} is newer than this lokki-sam understands ({FORMAT_VERSION})",
            where=where,
            hint="upgrade lokki-sam to read it",
        )
    if version < 1:
        raise StoreError(f"unknown artifact format version {version}", where=where)
    if codec_id not in codecs.NAMES or (version == 1 and codec_id == CODEC_ZSTD):
        raise StoreError(f"unknown codec {codec_id}", where=where)
    return version, codec_id


def _loads_v1(data: bytes | bytearray | memoryview | mmap, where: str) -> Any:
    """Version 1: the whole pickle after the header, raw or zlib-compressed, without a checksum."""
    payload = memoryview(data)[HEADER_SIZE:]
    try:
        if data[len(MAGIC) + 1] == CODEC_ZLIB:
            payload = memoryview(zlib.decompress(payload))
        return pickle.loads(payload)
    except Exception as exc:
        raise StoreError(f"artifact is corrupt or truncated ({type(exc).__name__}: {exc})", where=where) from None


class _FrameReader:
    """A read-only file for pickle.Unpickler over the frames of a version 2 artifact.

    A raw frame that a large read covers entirely is read straight into the caller's buffer (no
    copy); other frames are read, checked and decompressed one at a time.
    """

    def __init__(self, source: BinaryIO | _Memory, codec_id: int, where: str) -> None:
        self.source = source
        self.codec_id = codec_id
        self.where = where
        self.codec: codecs.Codec | None = None
        self.data: bytes | bytearray | memoryview = b""
        self.pos = 0
        self.peeked: bytes | None = None
        self.total = 0
        self.frames = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = 1 << 62
        if size <= len(self.data) - self.pos:
            out = bytes(memoryview(self.data)[self.pos : self.pos + size])
            self.pos += size
            return out
        pieces: list[memoryview] = []
        while size:
            if self.pos == len(self.data) and not self._load():
                break
            take = min(size, len(self.data) - self.pos)
            pieces.append(memoryview(self.data)[self.pos : self.pos + take])
            self.pos += take
            size -= take
        return b"".join(pieces)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        got = 0
        while got < len(view):
            if self.pos == len(self.data):
                header = self._header()
                kind, _, raw_size, _ = FRAME.unpack(header)
                if kind == KIND_RAW and raw_size <= len(view) - got and not isinstance(self.source, _Memory):
                    self._frame(header, view[got : got + raw_size])
                    got += raw_size
                    continue
                self.peeked = header
                if not self._load():
                    break
            take = min(len(view) - got, len(self.data) - self.pos)
            view[got : got + take] = memoryview(self.data)[self.pos : self.pos + take]
            self.pos += take
            got += take
        return got

    def readline(self) -> bytes:
        pieces: list[bytes] = []
        while self.pos < len(self.data) or self._load():
            rest = bytes(self.data[self.pos :])  # protocol 0-3 opcodes only: rare, short
            end = rest.find(b"\n")
            stop = len(rest) if end < 0 else end + 1
            pieces.append(rest[:stop])
            self.pos += stop
            if end >= 0:
                break
        return b"".join(pieces)

    def finish(self) -> None:
        """After the pickle: nothing left in the frames, then the end frame, then nothing."""
        if self.pos < len(self.data):
            raise self._broken("bytes after the pickle")
        header = self._header()
        if header[0] != KIND_END:
            raise self._broken("a frame after the pickle")
        total, frames = END.unpack(header[1 : 1 + END.size])
        if (total, frames) != (self.total, self.frames):
            raise self._broken(f"{self.frames} frame(s) of {self.total} bytes, the end frame says {frames} of {total}")
        if self.source.read(1):
            raise self._broken("bytes after the end frame")

    def _header(self) -> bytes:
        if self.peeked is not None:
            header, self.peeked = self.peeked, None
            return header
        header = _read_exact(self.source, FRAME.size)
        if len(header) < FRAME.size:
            raise self._broken("it ends before its end frame")
        return header

    def _load(self) -> bool:
        """Read the next frame into self.data; False (and the end frame kept) at the end frame."""
        header = self._header()
        kind, stored, _, _ = FRAME.unpack(header)
        if kind == KIND_END:
            self.peeked = header
            return False
        if isinstance(self.source, _Memory):  # the frame's bytes are used where they are
            self.data = self._frame(header, None)
        else:
            self._check(header)
            self.data = self._frame(header, memoryview(bytearray(stored)))
        self.pos = 0
        return True

    def _check(self, header: bytes) -> None:
        kind, stored, raw_size, _ = FRAME.unpack(header)
        if (
            kind not in (KIND_RAW, KIND_PACKED)
            or stored > MAX_FRAME_BYTES
            or raw_size > MAX_FRAME_BYTES
            or (kind == KIND_RAW and stored != raw_size)
        ):
            raise self._broken(f"frame {self.frames + 1} has a bad header")

    def _frame(self, header: bytes, into: memoryview | None) -> bytes | memoryview:
        """One frame's raw bytes, checked: read into `into` (or, from memory, taken in place) and,
        if packed, decompressed."""
        self._check(header)
        kind, stored, raw_size, crc = FRAME.unpack(header)
        number = self.frames + 1
        if into is None:
            assert isinstance(self.source, _Memory)
            into = self.source.take(stored)
        elif _read_into(self.source, into) < stored:
            raise self._broken(f"it ends inside frame {number}")
        if len(into) < stored:
            raise self._broken(f"it ends inside frame {number}")
        if zlib.crc32(into) != crc:
            raise self._broken(f"frame {number} fails its CRC32 check")
        self.frames = number
        self.total += raw_size
        if kind == KIND_RAW:
            return into
        if self.codec is None:
            self.codec = codecs.codec(self.codec_id, where=self.where)
        try:
            data = self.codec.decompress(into, raw_size)
        except Exception as exc:
            raise self._broken(f"frame {number} does not decompress: {exc}") from None
        if len(data) != raw_size:
            raise self._broken(f"frame {number} decompresses to {len(data)} bytes, not {raw_size}")
        return data

    def _broken(self, reason: str) -> StoreError:
        return StoreError(f"artifact is corrupt or truncated ({reason})", where=self.where)


class _Memory:
    """A read-only file over a buffer (bytes, an mmap'd artifact) that can lend frames in place.

    Over an mmap, the pages read long ago are handed back to the kernel as it goes (they stay in
    the page cache; touching them again just maps them again): a mapped 1 GB artifact would
    otherwise add 1 GB to the process's RSS while it is read.
    """

    RELEASE_EVERY = 8 << 20

    def __init__(self, buffer: bytes | bytearray | memoryview | Any) -> None:
        self.view = memoryview(buffer).cast("B")
        self.pos = 0
        self.mapped = buffer if hasattr(buffer, "madvise") else None
        self.released = 0

    def take(self, size: int) -> memoryview:
        part = self.view[self.pos : self.pos + size]
        self.pos += len(part)
        if self.mapped is not None and self.pos - self.released > 2 * self.RELEASE_EVERY:
            import mmap

            upto = self.pos - self.RELEASE_EVERY
            upto -= upto % mmap.PAGESIZE
            self.mapped.madvise(mmap.MADV_DONTNEED, self.released, upto - self.released)
            self.released = upto
        return part

    def read(self, size: int = -1) -> bytes:
        return bytes(self.take(len(self.view) if size < 0 else size))

    def readinto(self, buffer: Any) -> int:
        part = self.take(len(memoryview(buffer).cast("B")))
        memoryview(buffer).cast("B")[: len(part)] = part
        return len(part)


def _read_exact(source: BinaryIO | _Memory, size: int) -> bytes:
    data = source.read(size)
    while 0 < len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _read_into(source: BinaryIO | _Memory, into: memoryview) -> int:
    got = 0
    while got < len(into):
        n = source.readinto(into[got:])  # type: ignore[union-attr]  # every binary file has it
        if not n:
            break
        got += n
    return got
