"""Artifact stores: one interface, a local directory and an S3 bucket prefix behind it.

Both speak bytes under relative keys (see layout.py) and share serialization and the
thread-pooled `get_many`/`put_many` used for map items, batches and aggregations. Objects
stream: `put` serializes straight into the destination (a temp file renamed into place, or an
S3 spool, see transfer.py) and `get` deserializes straight from it, so a store holds an
artifact once, not two or three times. Each store has its codec (serialization.py says why):
raw for local directories, zstd or else zlib for S3.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from lokki_sam import codecs, serialization
from lokki_sam.errors import StoreError, StoreUnavailable
from lokki_sam.layout import check_key

if TYPE_CHECKING:
    from lokki_sam.transfer import TransferSettings

IO_THREADS = 32
SMALL_FILE = 1 << 20
T = TypeVar("T")
Fill = Callable[[Any], None]  # writes an object's bytes to the binary file it is given


class ArtifactStore(ABC):
    """Bytes under relative keys, plus (de)serialization helpers shared by every backend."""

    @abstractmethod
    def put_stream(self, key: str, fill: Fill) -> None:
        """Write an object by calling `fill(file)`; it appears whole, or not at all if fill raises."""

    @abstractmethod
    def get_stream(self, key: str, parse: Callable[[BinaryIO], T]) -> T:
        """Return `parse(file)` over the object's bytes; raise StoreError if it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list_keys(self, prefix: str) -> list[str]:
        """All keys under `prefix` (which ends with '/'), sorted."""

    @abstractmethod
    def written(self, key: str) -> float | None:
        """When the object was last written (seconds since the epoch), None if it does not exist."""

    @abstractmethod
    def list_written(self, prefix: str) -> dict[str, float]:
        """Every key under `prefix` with when it was last written."""

    @abstractmethod
    def describe(self, key: str) -> str:
        """Where `key` lives, for messages (a path or an s3:// URI)."""

    @property
    @abstractmethod
    def codec(self) -> int:
        """The codec `put` writes with (serialization.CODEC_*)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        self.put_stream(key, lambda fh: fh.write(data))

    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes; raise StoreError if it does not exist."""
        return self.get_stream(key, lambda fh: fh.read())

    def put(self, key: str, obj: Any, *, what: str = "value") -> str:
        """Serialize `obj` to `key`; returns its content digest (serialization.dump)."""
        codec = self.codec
        digest: list[str] = []
        self.put_stream(key, lambda fh: digest.append(serialization.dump(obj, fh, codec=codec, what=what)))
        return digest[-1]

    def get(self, key: str) -> Any:
        where = self.describe(key)
        return self.get_stream(key, lambda fh: serialization.load(fh, where=where))

    def put_sequence(self, key: str, header: Any, values: Sequence[Any], *, what: str = "value") -> list[str]:
        """Write `values` (each its own pickle) with `header`; returns each value's content digest."""
        codec = self.codec
        digests: list[list[str]] = []
        self.put_stream(
            key, lambda fh: digests.append(serialization.dump_sequence(header, values, fh, codec=codec, what=what))
        )
        return digests[-1]

    def get_sequence(self, key: str) -> serialization.Sequenced:
        where = self.describe(key)
        return self.get_stream(key, lambda fh: serialization.load_sequence(fh, where=where))

    def put_sequences(
        self, objects: Sequence[tuple[str, Any, Sequence[Any]]], *, what: str = "value"
    ) -> list[list[str]]:
        """`put_sequence` of many objects in parallel; their digests in order."""
        return self._parallel(lambda one: self.put_sequence(*one, what=what), objects)

    def get_sequences(self, keys: Sequence[str]) -> list[serialization.Sequenced]:
        """`get_sequence` of many objects in parallel, in the order of `keys`."""
        return self._parallel(self.get_sequence, keys)

    def put_json(self, key: str, obj: Any) -> None:
        self.put_bytes(key, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())

    def get_json(self, key: str) -> Any:
        try:
            return json.loads(self.get_bytes(key))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"not valid JSON ({exc})", where=self.describe(key)) from None

    def put_many(self, objects: Sequence[tuple[str, Any]], *, what: str = "value") -> None:
        """Serialize and write many objects in parallel."""

        def write(pair: tuple[str, Any]) -> None:
            self.put(pair[0], pair[1], what=what)

        self._parallel(write, objects)

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """Read many objects in parallel, in the order of `keys`."""
        return self._parallel(self.get, keys)

    def _parallel(self, fn: Any, args: Sequence[Any]) -> list[Any]:
        """Apply `fn` to every arg on up to IO_THREADS threads, each taking a contiguous slice
        (one task per thread, not per object: thousands of tiny futures cost more than the I/O)."""
        if len(args) <= 1:
            return [fn(a) for a in args]
        threads = min(IO_THREADS, len(args))
        step = -(-len(args) // threads)
        slices = [args[i : i + step] for i in range(0, len(args), step)]
        with ThreadPoolExecutor(len(slices)) as pool:
            parts = pool.map(lambda part: [fn(a) for a in part], slices)
            return [value for part in parts for value in part]


class LocalStore(ArtifactStore):
    """A directory; writes are atomic (temp file + rename) so a killed run leaves no torn files."""

    def __init__(self, root: str | os.PathLike[str], *, codec: int = serialization.CODEC_RAW) -> None:
        self.root = Path(root).resolve()
        self._codec = codec

    @property
    def codec(self) -> int:
        return self._codec

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def describe(self, key: str) -> str:
        return str(self._path(key))

    def put_stream(self, key: str, fill: Fill) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except OSError as exc:  # e.g. --store names a file, or a read-only directory
            raise StoreError(
                f"cannot write the artifact: {exc.strerror or exc}",
                where=str(path),
                hint="the store (--store, or 'store' in lokki.toml) must be a writable directory",
            ) from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fill(fh)
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)  # never a torn artifact
            if isinstance(exc, OSError):  # disk full, file too large: lokki-sam's problem, not the step's
                raise StoreError(
                    f"cannot write the artifact: {exc.strerror or exc}",
                    where=str(path),
                    hint="free disk space (or raise the file size limit) and resume the run",
                ) from None
            raise

    def get_stream(self, key: str, parse: Callable[[BinaryIO], T]) -> T:
        with self._open(key) as fh:
            try:
                if os.fstat(fh.fileno()).st_size <= SMALL_FILE:  # one read: faster than streaming
                    return parse(io.BytesIO(fh.read()))
                return parse(fh)
            except OSError as exc:
                raise StoreUnavailable(f"cannot read the artifact: {exc.strerror or exc}", where=fh.name) from None

    def get(self, key: str) -> Any:
        return self._decode(key, serialization.loads)

    def get_sequence(self, key: str) -> serialization.Sequenced:
        return self._decode(key, serialization.loads_sequence)

    def _decode(self, key: str, decode: Callable[..., T]) -> T:
        """Large artifacts are mapped, not read: frames are unpickled from the page cache in place.
        (Writers never truncate a file in place, they rename a new one over it, so a mapped file
        cannot shrink under the reader.)"""
        where = self.describe(key)
        with self._open(key) as fh:
            try:
                if os.fstat(fh.fileno()).st_size <= SMALL_FILE:
                    return decode(fh.read(), where=where)
                import mmap

                mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as exc:
                raise StoreUnavailable(f"cannot read the artifact: {exc.strerror or exc}", where=where) from None
        try:
            return decode(mapped, where=where)
        finally:
            with contextlib.suppress(BufferError):  # a traceback still holds a view: unmapped when freed
                mapped.close()

    def _open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")  # the callers close it
        except FileNotFoundError:
            raise StoreError("artifact not found", where=str(path)) from None
        except OSError as exc:
            raise StoreError(f"cannot read the artifact: {exc.strerror or exc}", where=str(path)) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def written(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(str(key) for key, _ in self._files(prefix))

    def list_written(self, prefix: str) -> dict[str, float]:
        return {key: path.stat().st_mtime for key, path in self._files(prefix)}

    def _files(self, prefix: str) -> list[tuple[str, Path]]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return [
            (f"{prefix}{p.relative_to(base).as_posix()}", p)
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        ]


class S3Store(ArtifactStore):
    """Objects under `s3://bucket/prefix/`; keys can never leave that prefix.

    `codec`: None picks zstd when installed, else zlib (serialization.py: bytes cost on S3).
    `transfer`: thresholds, part size and concurrency of large transfers (transfer.py).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        *,
        codec: int | None = None,
        transfer: TransferSettings | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"invalid bucket name {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.client = client if client is not None else s3_client()
        self._codec = codec
        # transfer.py is imported with the first S3 store (a Lambda cold start pays for it then).
        from lokki_sam import transfer as transfers

        self._transfers = transfers
        self.transfer = transfer or transfers.TransferSettings()

    @property
    def codec(self) -> int:
        if self._codec is None:  # resolved on first write: a cold start that only reads imports no zstd
            self._codec = codecs.best_compressing()
        return self._codec

    def full_key(self, key: str) -> str:
        """The object key in the bucket for a store key (refused if it could leave the prefix)."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.full_key(key)}"

    def put_stream(self, key: str, fill: Fill) -> None:
        self._transfers.upload(self.client, self.bucket, self.full_key(key), fill, self.transfer)

    def get_stream(self, key: str, parse: Callable[[BinaryIO], T]) -> T:
        return self._transfers.download(self.client, self.bucket, self.full_key(key), parse, self.transfer)

    def exists(self, key: str) -> bool:
        try:
            with self._transfers.s3_errors("HeadObject", self.describe(key)):
                self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except StoreError as exc:
            if exc.message == self._transfers.NOT_FOUND:
                return False
            raise
        return True

    def written(self, key: str) -> float | None:
        try:
            with self._transfers.s3_errors("HeadObject", self.describe(key)):
                head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except StoreError as exc:
            if exc.message == self._transfers.NOT_FOUND:
                return None
            raise
        return float(head["LastModified"].timestamp())

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(self.list_written(prefix))

    def list_written(self, prefix: str) -> dict[str, float]:
        full = self.full_key(prefix.rstrip("/")) + "/"
        cut = len(self.prefix) + 1 if self.prefix else 0
        found: dict[str, float] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        with self._transfers.s3_errors("ListObjectsV2", f"s3://{self.bucket}/{full}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                found.update((obj["Key"][cut:], obj["LastModified"].timestamp()) for obj in page.get("Contents", ()))
        return found


def s3_client(**kwargs: Any) -> Any:
    """A boto3 S3 client sized for parallel I/O and retrying throttling with backoff."""
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=IO_THREADS * 2,
        retries={"mode": "adaptive", "max_attempts": 10},
    )
    return boto3.client("s3", config=config, **kwargs)
