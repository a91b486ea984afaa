"""S3 transfers of artifacts: one request for small objects, s3transfer's multipart for large ones.

Writes are spooled: the serializer streams into memory up to `threshold` bytes, then into a
temporary file, so an artifact is never held twice in memory. A small spool becomes one
`put_object`; a large one is uploaded by s3transfer (boto3's transfer manager) from the file in
`part_size` parts, `concurrency` at a time, with bounded memory (parts are read from the file as
they are sent). A failed or interrupted upload is aborted by s3transfer: no partial object is ever
visible, and no upload is left behind (unless the process is killed outright: a bucket lifecycle
rule that aborts incomplete multipart uploads covers that).

Reads start with one `get_object` of the first `threshold` bytes: a small object is all there (its
length checked against Content-Length and Content-Range); a large one is then fetched by
s3transfer with ranged GETs in parallel into a temporary file (pinned to the ETag of that first
response, so a concurrent overwrite cannot mix two versions), then deserialized from the file.
Truncated bodies are retried, then reported.

boto3/botocore/s3transfer are imported here only when a transfer happens (Lambda cold start).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from lokki_sam.errors import StoreError, StoreUnavailable

T = TypeVar("T")
MB = 1 << 20
NOT_FOUND = "artifact not found"
MAX_PARTS = 10_000  # S3's limit per multipart upload
READ_ATTEMPTS = 3  # a small GET whose body breaks off is sent again this many times in all


@dataclass(frozen=True)
class TransferSettings:
    """Sized for a Lambda function: parts are read from the spool file as they are sent and ranges
    written to the download file as they arrive, so a transfer holds tens of MB (measured: +18 MB
    for a 200 MB upload, bench/README.md), not the artifact."""

    def upload_part(self, size: int) -> int:
        return max(self.part_size, -(-size // MAX_PARTS))

    def download_range(self, size: int) -> int:
        """One range per connection (at least part_size): as fast with `concurrency` connections as
        many small ranges, and far fewer requests (moto re-reads the whole object for each)."""
        return max(self.part_size, -(-size // self.concurrency))

    threshold: int = 16 * MB  # above this, multipart upload / ranged parallel download
    part_size: int = 16 * MB  # grown for objects over 156 GiB (S3 allows 10,000 parts)
    concurrency: int = 8
    io_chunk: int = 256 * 1024
    io_queue: int = 64  # chunks waiting to be written to the download file (16 MiB)
    tmpdir: str | None = None  # None: tempfile's default ($TMPDIR, else /tmp)

    def config(self, chunk: int) -> Any:
        from s3transfer.manager import TransferConfig

        return TransferConfig(
            multipart_threshold=self.threshold,
            multipart_chunksize=chunk,
            max_request_concurrency=self.concurrency,
            max_io_queue_size=self.io_queue,
            io_chunksize=self.io_chunk,
            max_in_memory_upload_chunks=self.concurrency,
            max_in_memory_download_chunks=self.concurrency,
        )


class Spool:
    """A write-only file that stays in memory up to `threshold` bytes, then moves to a temp file."""

    def __init__(self, settings: TransferSettings, where: str) -> None:
        self.settings = settings
        self.where = where
        self.memory: io.BytesIO | None = io.BytesIO()
        self.file: BinaryIO | None = None
        self.path: str | None = None
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = memoryview(data).nbytes
        if self.memory is not None and self.size + n > self.settings.threshold:
            self._to_file()
        try:
            if self.file is not None:
                self.file.write(data)
            else:
                assert self.memory is not None
                self.memory.write(data)
        except OSError as exc:
            raise _tmp_error(exc, self.where, self.size + n) from None
        self.size += n
        return n

    def _to_file(self) -> None:
        assert self.memory is not None
        try:
            fd, self.path = tempfile.mkstemp(prefix="lokki-upload-", dir=self.settings.tmpdir)
            self.file = os.fdopen(fd, "wb")
            self.file.write(self.memory.getbuffer())
        except OSError as exc:
            raise _tmp_error(exc, self.where, self.size) from None
        self.memory = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.path is not None:
            os.unlink(self.path)


def upload(client: Any, bucket: str, key: str, fill: Callable[[Spool], None], settings: TransferSettings) -> None:
    where = f"s3://{bucket}/{key}"
    spool = Spool(settings, where)
    try:
        fill(spool)
        if spool.memory is not None:
            spool.memory.seek(0)  # a file body: botocore rewinds it to resend on a retry
            with s3_errors("PutObject", where):
                client.put_object(Bucket=bucket, Key=key, Body=spool.memory)
            return
        assert spool.file is not None and spool.path is not None
        spool.file.close()
        from s3transfer.manager import TransferManager

        config = settings.config(settings.upload_part(spool.size))
        with s3_errors("the multipart upload", where), TransferManager(client, config) as manager:
            # On any exception (Ctrl-C too) the manager cancels the transfer and, in s3transfer's
            # cleanup, aborts the multipart upload before __exit__ returns.
            manager.upload(spool.path, bucket, key).result()
    finally:
        spool.close()


def download(client: Any, bucket: str, key: str, parse: Callable[[BinaryIO], T], settings: TransferSettings) -> T:
    where = f"s3://{bucket}/{key}"
    for attempt in range(1, READ_ATTEMPTS + 1):
        with s3_errors("GetObject", where):
            response = _first_get(client, bucket, key, settings)
        size = int(response["ContentLength"])
        total = _total_size(response)
        if total > settings.threshold:
            response["Body"].close()  # s3transfer fetches it all again, in parallel: 1 range of waste
            return _download_large(client, bucket, key, total, response.get("ETag"), parse, settings)
        try:
            data = response["Body"].read()
        except Exception as exc:
            if attempt == READ_ATTEMPTS or not _is_broken_stream(exc):
                raise StoreUnavailable(
                    f"truncated download: the body broke off in each of {attempt} attempt(s) ({exc})", where=where
                ) from None
            continue
        if len(data) != size or size != total:  # botocore checks the first; never parse a short body
            if attempt == READ_ATTEMPTS:
                raise StoreUnavailable(f"truncated download: {len(data)} of {total} bytes", where=where)
            continue
        return parse(io.BytesIO(data))
    raise AssertionError("unreachable")


def _first_get(client: Any, bucket: str, key: str, settings: TransferSettings) -> Any:
    """The first `threshold` bytes: all of a small object, and the size and ETag of a large one,
    in one request (a whole-object GET would start sending a large object only to be cut off)."""
    from botocore.exceptions import ClientError

    try:
        return client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{settings.threshold - 1}")
    except ClientError as exc:
        if _error_code(exc) != "InvalidRange":
            raise
    return client.get_object(Bucket=bucket, Key=key)  # an empty object has no byte 0 to ask for


def _total_size(response: dict[str, Any]) -> int:
    """The object's size: after the '/' of a Content-Range ('bytes 0-99/1234'), else its length."""
    content_range = response.get("ContentRange")
    if content_range and "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    return int(response["ContentLength"])


def _download_large(
    client: Any,
    bucket: str,
    key: str,
    size: int,
    etag: str | None,
    parse: Callable[[BinaryIO], T],
    settings: TransferSettings,
) -> T:
    from s3transfer.manager import TransferManager
    from s3transfer.subscribers import BaseSubscriber

    class Known(BaseSubscriber):
        """Size and ETag from the first GET: s3transfer needs no HEAD, and pins its ranges to it."""

        def on_queued(self, future: Any, **_: Any) -> None:
            future.meta.provide_transfer_size(size)
            if etag is not None:
                future.meta.provide_object_etag(etag)

    where = f"s3://{bucket}/{key}"
    try:
        target = tempfile.TemporaryFile(prefix="lokki-download-", dir=settings.tmpdir)  # noqa: SIM115 (with below)
    except OSError as exc:
        raise _tmp_error(exc, where, size) from None
    with target:
        config = settings.config(settings.download_range(size))
        with s3_errors("the ranged download", where), TransferManager(client, config) as manager:
            manager.download(bucket, key, target, subscribers=[Known()]).result()
        try:
            got = target.seek(0, os.SEEK_END)
            target.seek(0)
        except OSError as exc:
            raise _tmp_error(exc, where, size) from None
        if got != size:
            raise StoreUnavailable(f"truncated download: {got} of {size} bytes", where=where)
        return parse(target)


@contextmanager
def s3_errors(what: str, where: str) -> Iterator[None]:
    """Turn botocore/s3transfer exceptions into StoreErrors naming the object and the call."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        raise _store_error(exc, what, where) from None


def _store_error(exc: Exception, what: str, where: str) -> StoreError:
    if isinstance(exc, OSError) and not _is_broken_stream(exc):
        return _tmp_error(exc, where, None)
    code = _error_code(exc)
    if code in ("NoSuchKey", "404", "NotFound"):
        return StoreError(NOT_FOUND, where=where)
    if code in ("AccessDenied", "403", "NoSuchBucket", "InvalidAccessKeyId", "ExpiredToken"):
        return StoreError(
            f"S3 refused {what}: {exc}",
            where=where,
            hint="check the bucket name, the credentials and the role's permissions on this prefix",
        )
    return StoreUnavailable(
        f"{what} failed: {exc}",
        where=where,
        hint="S3 kept failing after its retries; run again (or resume the run) once it recovers",
    )


def _error_code(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:  # s3transfer wraps the client's error (RetriesExceededError.last_exception)
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code"))
        seen = getattr(seen, "last_exception", None) or seen.__cause__
    return None


def _is_broken_stream(exc: BaseException) -> bool:
    """A body that broke off or timed out mid-read (worth reading again)."""
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

    return isinstance(exc, IncompleteReadError | ReadTimeoutError | ResponseStreamingError | ConnectionError)


def _tmp_error(exc: OSError, where: str, size: int | None) -> StoreError:
    need = f" for a {size / MB:.0f} MiB artifact" if size else ""
    return StoreUnavailable(
        f"cannot use the temporary directory {tempfile.gettempdir()}{need}: {exc.strerror or exc}",
        where=where,
        hint="large S3 artifacts pass through a temp file: free space, set TMPDIR, or in Lambda raise the "
        "function's EphemeralStorage (up to 10240 MB)",
    )
