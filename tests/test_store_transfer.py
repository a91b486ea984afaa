"""Large S3 artifacts on a moto server: multipart uploads in order, ranged parallel downloads, and
the faults of a long transfer (an interrupted upload, a truncated body, throttling mid-transfer).

Part sizes are S3's minimum (5 MiB) so a ~12 MiB artifact takes three parts: the same code path as
a 6 GiB one (which S3 cannot take in one PUT). The real > 5 GiB round trip is opt-in, being
minutes of I/O: `LOKKI_HUGE_S3_TEST=1 pytest tests/test_store_transfer.py -k huge -s`.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.response import StreamingBody

from lokki_sam import serialization
from lokki_sam.errors import SerializationError, StoreError, StoreUnavailable
from lokki_sam.store import S3Store, s3_client
from lokki_sam.transfer import TransferSettings
from tests.support.ministack import free_port
from tests.support.moto_server import moto_endpoint
from tests.test_faults import S3Faults

MB = 1 << 20
SMALL_PARTS = TransferSettings(threshold=5 * MB, part_size=5 * MB, concurrency=4)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture
def client(endpoint: str) -> Any:
    """The store's own client (retry config included) on a fresh bucket."""
    c = s3_client(endpoint_url=endpoint, region_name="us-east-1")
    c.create_bucket(Bucket=f"b-{uuid.uuid4().hex[:12]}")
    return c


def bucket_of(client: Any) -> str:
    return str(client.list_buckets()["Buckets"][-1]["Name"])


def store(client: Any, settings: TransferSettings = SMALL_PARTS) -> S3Store:
    return S3Store(bucket_of(client), "lokki/big", client, codec=serialization.CODEC_RAW, transfer=settings)


class Requests:
    """Every request the client sends (a before-send hook that only looks)."""

    def __init__(self, client: Any) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        client.meta.events.register("before-send.s3", self)

    def __call__(self, request: Any, **_: Any) -> None:
        self.seen.append((request.method, request.url, request.headers.get("Range")))

    def count(self, method: str, marker: str = "") -> int:
        return sum(1 for m, url, _ in self.seen if m == method and marker in url)

    def ranges(self) -> list[str]:
        return [r.decode() if isinstance(r, bytes) else r for m, _, r in self.seen if m == "GET" and r]


def no_uploads_left(client: Any) -> bool:
    return "Uploads" not in client.list_multipart_uploads(Bucket=bucket_of(client))


def test_a_large_artifact_is_uploaded_in_ordered_parts_and_read_back_by_parallel_ranges(client: Any) -> None:
    st = store(client)
    sent = Requests(client)
    value = os.urandom(12 * MB + 123)
    st.put("r/big.pkl", value)
    head = client.head_object(Bucket=bucket_of(client), Key="lokki/big/r/big.pkl")
    assert head["ETag"].strip('"').endswith("-3")  # S3's multipart ETag: three parts
    assert head["ContentLength"] > 12 * MB
    assert sent.count("PUT", "partNumber=") == 3 and sent.count("POST", "uploads") == 1
    assert no_uploads_left(client)

    sent.seen.clear()
    assert st.get("r/big.pkl") == value  # bytes in the right order, or the CRCs would fail
    assert sent.count("HEAD") == 0  # size and ETag come from the first GET
    five = 5 * MB
    probe, *ranges = sent.ranges()
    assert probe == f"bytes=0-{five - 1}"  # the first `threshold` bytes: a small object would be all there
    ranges.sort(key=lambda r: int(r[6:].split("-")[0]))
    assert ranges == [f"bytes=0-{five - 1}", f"bytes={five}-{2 * five - 1}", f"bytes={2 * five}-"]


def test_a_small_artifact_takes_one_request_each_way(client: Any) -> None:
    st = store(client)
    sent = Requests(client)
    st.put("r/small.pkl", {"x": list(range(1000))})
    assert st.get("r/small.pkl") == {"x": list(range(1000))}
    assert [m for m, _, _ in sent.seen] == ["PUT", "GET"]


def test_a_failing_part_aborts_the_upload_no_object_no_upload_left(client: Any, backoff: list[float]) -> None:
    st = store(client)
    st.put("r/x.pkl", "the old value")

    def refuse_part_2(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url:
            raise ConnectionResetError("simulated: the connection dropped while sending part 2")

    client.meta.events.register("before-send.s3", refuse_part_2)
    with pytest.raises(StoreUnavailable, match=r"multipart upload failed[\s\S]*part 2") as info:
        st.put("r/x.pkl", os.urandom(12 * MB))
    assert "s3://" in str(info.value) and "lokki/big/r/x.pkl" in str(info.value)
    assert st.get("r/x.pkl") == "the old value"  # the previous object stays; nothing partial is visible
    assert no_uploads_left(client)


def test_a_large_value_failing_to_serialize_uploads_nothing_and_leaves_no_temp_file(
    client: Any, tmp_path: Path
) -> None:
    st = store(client, TransferSettings(threshold=5 * MB, part_size=5 * MB, tmpdir=str(tmp_path)))
    sent = Requests(client)
    with pytest.raises(SerializationError, match="cannot be serialized"):
        st.put("r/bad.pkl", ["a" * (12 * MB), (i for i in range(3))])  # 12 MB spooled to disk, then it fails
    assert sent.seen == []  # the spool is complete before any request: nothing started, nothing to abort
    assert list(tmp_path.iterdir()) == []
    assert "Contents" not in client.list_objects_v2(Bucket=bucket_of(client))


INTERRUPTED = """
import os, signal, sys, threading
from lokki_sam.store import S3Store, s3_client
from lokki_sam.transfer import TransferSettings

# Ctrl-C raises KeyboardInterrupt here even if this test runs where SIGINT is ignored (a shell's
# background job): Python installs its handler only over the default disposition.
signal.signal(signal.SIGINT, signal.default_int_handler)
client = s3_client(endpoint_url=sys.argv[1], region_name="us-east-1")
main = threading.main_thread().ident

def ctrl_c_during_part_2(request, **_):
    if "partNumber=2" in request.url:
        signal.pthread_kill(main, signal.SIGINT)  # simulated: the user presses Ctrl-C mid-transfer

client.meta.events.register("before-send.s3", ctrl_c_during_part_2)
settings = TransferSettings(threshold=5 << 20, part_size=5 << 20, concurrency=1)
S3Store(sys.argv[2], "lokki/big", client, codec=0, transfer=settings).put("r/ctrl-c.pkl", os.urandom(16 << 20))
"""


def test_ctrl_c_during_a_multipart_upload_aborts_it(client: Any, endpoint: str, tmp_path: Path) -> None:
    """In a subprocess: SIGINT goes to its main thread while a part is being sent."""
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    done = subprocess.run(
        [sys.executable, str(script), endpoint, bucket_of(client)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr
    assert "Contents" not in client.list_objects_v2(Bucket=bucket_of(client))
    assert no_uploads_left(client)


class Truncate:
    """An after-call hook cutting the body of the first `times` GetObject responses short: the
    Content-Length stays, the bytes stop early (simulated; what a dropped connection looks like)."""

    def __init__(self, client: Any, times: int) -> None:
        self.times = times
        self.cut = 0
        client.meta.events.register("after-call.s3.GetObject", self)

    def __call__(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if self.cut >= self.times or "Body" not in parsed:
            return
        self.cut += 1
        length = int(parsed["ContentLength"])
        data = parsed["Body"].read()
        parsed["Body"] = StreamingBody(io.BytesIO(data[: len(data) // 2]), length)


@pytest.mark.parametrize("size", [100_000, 12 * MB], ids=["one GET", "ranged GETs"])
def test_a_truncated_download_is_retried(client: Any, size: int) -> None:
    st = store(client)
    value = os.urandom(size)
    st.put("r/t.pkl", value)
    cuts = Truncate(client, times=3 if size > MB else 2)  # a large read's first GET is never read
    assert st.get("r/t.pkl") == value
    assert cuts.cut == cuts.times


@pytest.mark.parametrize("size", [100_000, 12 * MB], ids=["one GET", "ranged GETs"])
def test_a_download_truncated_every_time_fails_naming_the_object(client: Any, size: int) -> None:
    st = store(client)
    st.put("r/t.pkl", os.urandom(size))
    Truncate(client, times=10**6)
    with pytest.raises(StoreUnavailable, match=r"(IncompleteRead|truncated|Max Retries)") as info:
        st.get("r/t.pkl")
    assert f"s3://{bucket_of(client)}/lokki/big/r/t.pkl" in str(info.value)


@pytest.mark.emulator  # ~18 s: boto3's adaptive rate limiter waits after the injected SlowDowns
def test_throttling_mid_transfer_is_retried(client: Any, backoff: list[float]) -> None:
    """SlowDown/InternalError on part uploads and ranged reads: botocore retries, s3transfer goes on."""
    st = store(client)
    faults = S3Faults(rate=0.5, seed=7, max_in_a_row=2)
    client.meta.events.register("before-send.s3", faults)
    value = os.urandom(17 * MB)  # four parts, four ranges
    st.put("r/slow.pkl", value)
    assert st.get("r/slow.pkl") == value
    kinds: Counter[str] = Counter(k.split()[0] for k in faults.injected)
    assert kinds["PUT"] >= 1 and kinds["GET"] >= 1, faults.injected
    assert len(backoff) == sum(faults.injected.values())
    assert no_uploads_left(client)


def test_missing_and_refused_objects_are_store_errors(client: Any) -> None:
    st = store(client)
    with pytest.raises(StoreError, match="artifact not found"):
        st.get("r/none.pkl")
    other = S3Store("no-such-bucket-here", "p", client)
    with pytest.raises(StoreError, match=r"no-such-bucket-here") as info:
        other.put("r/x.pkl", 1)
    assert not isinstance(info.value, StoreUnavailable)  # a wrong bucket is not worth retrying


HUGE = "opt-in: LOKKI_HUGE_S3_TEST=1 (minutes, ~16 GB of disk, ~12 GB of RAM)"


@pytest.fixture
def moto_process() -> Iterator[str]:
    """moto in its own process: it holds a multipart object's parts and then the whole object in
    memory, and re-reads all of it for every ranged GET."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.skipif(not os.environ.get("LOKKI_HUGE_S3_TEST"), reason=HUGE)
def test_huge_an_artifact_over_5_gib_round_trips(moto_process: str, tmp_path: Path) -> None:
    """> 5 GiB, S3's single-PUT limit. The bytes are calloc'd zeros (no RAM until read, and no
    compression: raw codec), so the test process pays disk and time, not 10 GB of memory. One
    connection: moto copies the whole object for each ranged GET."""
    import boto3
    from botocore.config import Config

    slow_moto = Config(read_timeout=1800, retries={"mode": "standard", "max_attempts": 2})
    client = boto3.client("s3", endpoint_url=moto_process, region_name="us-east-1", config=slow_moto)
    client.create_bucket(Bucket="huge")
    size = 5 * (1 << 30) + 3 * MB
    value = bytes(size)
    settings = TransferSettings(concurrency=1, tmpdir=str(tmp_path))
    st = S3Store("huge", "lokki/big", client, codec=serialization.CODEC_RAW, transfer=settings)
    began = time.perf_counter()
    st.put("r/huge.pkl", value)
    head = client.head_object(Bucket="huge", Key="lokki/big/r/huge.pkl")
    assert head["ContentLength"] > size > 5 * (1 << 30)
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])
    assert parts == -(-head["ContentLength"] // settings.part_size)
    wrote = time.perf_counter() - began
    got = st.get("r/huge.pkl")
    assert len(got) == size and got == value
    read = time.perf_counter() - began - wrote
    print(f"\n{size / (1 << 30):.2f} GiB in {parts} parts: put {wrote:.0f} s, get {read:.0f} s")
