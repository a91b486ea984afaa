"""Faults a run survives, measured: SIGKILL + resume, S3 throttling and 500s, retried Lambdas,
map failures beyond tolerance, artifacts from a newer lokki-sam.

`pytest tests/test_faults.py -s` prints the figures (kill points, recomputed items, retries).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from lokki_sam import flow, runtime, serialization, step
from lokki_sam.errors import StoreError
from lokki_sam.execution import RunContext, read_result
from lokki_sam.local import FLUSH_SECONDS, MapFailed, run_flow
from lokki_sam.store import S3Store, s3_client
from tests.conftest import LOKKI_SAM, lokki_env
from tests.support.keys import function_env, prefix, stamped
from tests.support.moto_server import moto_endpoint

# ============================================================== SIGKILL at seeded points, then resume

WORKERS = 4
ITEMS = 48
ITEM_SECONDS = 0.03  # >= 20 ms: several items per flush interval at most
# Per worker, a kill loses the items finished since its last flush plus the one it is running.
LOST_PER_WORKER = math.ceil(FLUSH_SECONDS / ITEM_SECONDS) + 1

KILL_FLOW = f"""
import os, time, uuid
from pathlib import Path
from lokki_sam import flow, step

CALLS = Path(os.environ["CALLS_DIR"])

def mark(kind, key):
    (CALLS / f"{{kind}}-{{key}}-{{uuid.uuid4().hex}}").touch()  # one file per call: counts survive SIGKILL

@step
def source(n: int = {ITEMS}) -> list[int]:
    mark("source", 0)
    time.sleep(0.3)
    return list(range(n))

@step
def slow(x: int) -> int:
    mark("slow", x)
    time.sleep({ITEM_SECONDS})
    return x * x

@step
def total(xs: list[int]) -> int:
    mark("total", 0)
    time.sleep(0.3)
    return sum(xs)

@flow
def killed(n: int = {ITEMS}):
    return source(n=n).map(slow, concurrency={WORKERS}).agg(total)
"""

EXPECTED = sum(x * x for x in range(ITEMS))


def calls(calls_dir: Path) -> Counter[str]:
    """How many times each (step, item) was called: 'slow-7' -> 2."""
    return Counter(p.name.rsplit("-", 1)[0] for p in calls_dir.iterdir())


def kill_when(cmd: list[str], cwd: Path, env: dict[str, str], calls_dir: Path, kind: str, count: int) -> str:
    """Start a run, SIGKILL it once `count` calls of `kind` have started; return its run id."""
    log = cwd / f"stderr-{uuid.uuid4().hex}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(n for key, n in calls(calls_dir).items() if key.startswith(kind + "-")) >= count:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before the kill point:\n{log.read_text()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    first = log.read_text().splitlines()[0]
    return str(json.loads(first)["run_id"])


# (seed, phase): the map kill point is drawn from the seed; a "twice" scenario kills the resume too.
KILL_POINTS = [(0, "source"), (1, "slow"), (2, "slow"), (3, "slow"), (4, "total"), (5, "twice")]


@pytest.mark.parametrize(("seed", "phase"), KILL_POINTS, ids=[f"{p}-seed{s}" for s, p in KILL_POINTS])
def test_killed_run_resumes_to_the_same_result_without_recomputing_finished_items(
    tmp_path: Path, seed: int, phase: str
) -> None:
    rng = random.Random(seed)
    module = tmp_path / "killed_flow.py"
    module.write_text(KILL_FLOW)
    calls_dir = tmp_path / "calls"
    calls_dir.mkdir()
    env = lokki_env(tmp_path, CALLS_DIR=str(calls_dir))
    cmd = [LOKKI_SAM, "run", str(module), "--store", str(tmp_path / "runs"), "--json"]

    kills = 1
    if phase in ("slow", "twice"):
        point = rng.randint(WORKERS, ITEMS - 2 * WORKERS)
        run_id = kill_when(cmd, tmp_path, env, calls_dir, "slow", point)
        if phase == "twice":  # the resume is killed as well, further on
            kills = 2
            started = sum(calls(calls_dir)[f"slow-{i}"] > 0 for i in range(ITEMS))
            again = min(ITEMS - 1, started + rng.randint(WORKERS, 3 * WORKERS))
            kill_when([*cmd, "--resume", run_id], tmp_path, env, calls_dir, "slow", again)
    else:
        run_id = kill_when(cmd, tmp_path, env, calls_dir, phase, 1)
    before = calls(calls_dir)

    resumed = subprocess.run(
        [*cmd[:-1], "--resume", run_id, "-q"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == str(EXPECTED)

    counts = calls(calls_dir)
    items = [counts[f"slow-{i}"] for i in range(ITEMS)]
    assert min(items) >= 1, "an item was never computed"
    recomputed = sum(n - 1 for n in items)
    assert recomputed <= kills * WORKERS * LOST_PER_WORKER, items
    assert counts["source-0"] <= 1 + kills and counts["total-0"] <= 2
    if phase == "total":  # the whole map was stored before the aggregation started
        assert recomputed == 0 and counts["source-0"] == 1
    if phase == "source":
        assert recomputed == 0 and counts["source-0"] == 2
    print(
        f"\nkill at {phase} (seed {seed}): {sum(before.values())} calls before, "
        f"{recomputed} item(s) computed twice (bound {kills * WORKERS * LOST_PER_WORKER})"
    )


# ================================================================ S3 throttling and 500s, real boto3 retries


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class S3Faults:
    """A botocore before-send hook answering some requests with SlowDown (503) or InternalError (500)
    instead of sending them: what follows is boto3's own retry handling."""

    ERRORS = (
        (503, "SlowDown", "Please reduce your request rate."),
        (500, "InternalError", "We encountered an internal error."),
    )

    def __init__(self, rate: float, seed: int, max_in_a_row: int) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.max_in_a_row = max_in_a_row
        self.in_a_row: Counter[tuple[str, str]] = Counter()
        self.injected: Counter[str] = Counter()
        self.sent = 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        target = (request.method, request.url.split("?")[0])
        if self.in_a_row[target] < self.max_in_a_row and self.rng.random() < self.rate:
            self.in_a_row[target] += 1
            status, code, message = self.rng.choice(self.ERRORS)
            self.injected[f"{request.method} {status}"] += 1
            body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
            return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))
        self.in_a_row[target] = 0
        self.sent += 1
        return None


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def faulty_store(endpoint: str, faults: S3Faults, bucket: str) -> S3Store:
    client = s3_client(endpoint_url=endpoint, region_name="us-east-1")  # the store's own retry config
    client.create_bucket(Bucket=bucket)
    client.meta.events.register("before-send.s3", faults)
    return S3Store(bucket, "lokki/faults", client)


def test_store_reads_and_writes_are_retried_with_backoff(moto_server: str, backoff: list[float]) -> None:
    faults = S3Faults(rate=1.0, seed=1, max_in_a_row=2)  # every request fails twice, then passes
    store = faulty_store(moto_server, faults, "throttled")
    objects = [(f"r/items/{i:08d}.pkl", {"i": i, "data": "x" * i}) for i in range(4)]
    store.put_many(objects)
    assert store.get_many([k for k, _ in objects]) == [v for _, v in objects]
    assert store.list_keys("r/items/") == [k for k, _ in objects]
    assert store.exists("r/items/00000003.pkl")
    requests = 4 + 4 + 1 + 1
    assert faults.sent == requests
    assert sum(faults.injected.values()) == 2 * requests
    assert {"PUT", "GET", "HEAD"} <= {k.split()[0] for k in faults.injected}
    assert len(backoff) == 2 * requests and all(d > 0 for d in backoff)
    print(
        f"\ninjected {dict(faults.injected)}; {len(backoff)} retries, backoff {min(backoff):.3f}-{max(backoff):.3f} s"
    )


def test_exhausted_retries_fail_naming_the_error(moto_server: str, backoff: list[float]) -> None:
    faults = S3Faults(rate=1.0, seed=2, max_in_a_row=10**6)  # S3 never recovers
    store = faulty_store(moto_server, faults, "down")
    with pytest.raises(Exception, match=r"\((SlowDown|InternalError)\) when calling the PutObject operation") as caught:
        store.put("r/x.pkl", 1)
    assert "reached max retries" in str(caught.value)
    attempts = sum(faults.injected.values())
    assert attempts == len(backoff) + 1 == 11  # max_attempts=10 retries after the first attempt
    assert faults.sent == 0
    print(f"\nS3 down: gave up after {attempts} attempts, backoff total {sum(backoff):.1f} s: {caught.value}")


@step
def f_numbers(n: int = 40) -> list[int]:
    return list(range(n))


@step
def f_square(x: int) -> int:
    return x * x


@step
def f_total(xs: list[int]) -> int:
    return sum(xs)


@flow
def fault_flow(n: int = 40):
    return f_numbers(n=n).map(f_square, batch_size=4).agg(f_total)


def test_a_whole_run_on_a_flaky_s3_gives_the_same_result(moto_server: str, backoff: list[float]) -> None:
    faults = S3Faults(rate=0.5, seed=3, max_in_a_row=3)
    store = faulty_store(moto_server, faults, "flaky")
    outcome = run_flow(fault_flow, {}, store=store, run_id="flaky-1", concurrency=4)
    assert outcome.result == sum(x * x for x in range(40))
    assert outcome.failures == []
    assert sum(faults.injected.values()) >= 5 and len(backoff) == sum(faults.injected.values())
    print(f"\nflaky S3 run: {faults.sent} requests, {dict(faults.injected)} injected, all recovered")


# =========================================================== a Lambda retried after writing its output

BUCKET = "faults-artifacts"


def lambda_env(step_name: str) -> dict[str, str]:
    return function_env(fault_flow, step_name, BUCKET, __name__)


def bucket_state(s3: Any) -> dict[str, bytes]:
    objects = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in objects}


def test_a_lambda_retried_after_writing_its_output_gives_the_same_result(tmp_path: Path) -> None:
    """Every invocation (source, each batch, the aggregation) runs twice, as when Step Functions
    retries a Lambda that wrote its output but timed out: the second overwrites its own keys only."""
    run_id, params = "retried-1", {"n": "10"}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        runtime.reset_cache()

        def twice(event: dict[str, Any], step_name: str) -> dict[str, Any]:
            event = stamped(fault_flow, event)
            first = runtime.handle(event, lambda_env(step_name), s3)
            state = bucket_state(s3)
            second = runtime.handle(event, lambda_env(step_name), s3)
            assert second == first
            assert bucket_state(s3) == state  # same keys, same bytes: nothing else touched
            return first

        source = twice({"node": "f_numbers", "run_id": run_id, "params": params}, "f_numbers")
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=source["Key"])["Body"].read())
        for first in range(0, len(manifest), 4):
            batch = {"Items": manifest[first : first + 4], "BatchInput": {"run_id": run_id, "params": params}}
            twice({"node": "f_square", "map": "map-f_square", "input": batch}, "f_square")
        twice({"node": "f_total", "run_id": run_id, "params": params}, "f_total")

        store = S3Store(BUCKET, prefix(fault_flow), s3)
        cloud = read_result(RunContext(fault_flow.graph, store, run_id, {"n": 10}))
        runtime.reset_cache()
    local = run_flow(fault_flow, {"n": 10}, store=tmp_path / "runs").result
    assert cloud == local == sum(x * x for x in range(10))


# ====================================================================== failures beyond tolerance


@step
def picky(x: int) -> int:
    if x % 5 == 3:
        raise ValueError(f"item {x} is malformed")
    return x


@flow
def intolerant(n: int = 20):
    return f_numbers(n=n).map(picky, tolerated_failure_count=2).agg(f_total)


@pytest.mark.parametrize("executor", ["threads", "processes", "auto"])
def test_map_failing_beyond_tolerance_reports_which_items_and_why(tmp_path: Path, executor: str) -> None:
    # One worker stops at exactly the failure that exceeds the tolerance, whatever runs it.
    with pytest.raises(MapFailed) as caught:
        run_flow(intolerant, {}, store=tmp_path / "runs", run_id="picky-1", concurrency=1, executor=executor)
    error = caught.value
    assert error.exit_code == 1
    failed = sorted(i for f in error.failures for i in f.indexes)
    assert set(failed) <= {3, 8, 13, 18} and len(failed) == 3  # it stops once the tolerance is exceeded
    assert all(f.step == "picky" and f.error_type == "ValueError" for f in error.failures)
    text = error.render()
    assert "map 'map-picky' failed: 3 of 20 item(s) failed, tolerated: 2 item(s)" in text
    for index in failed:
        assert f"item {index}: ValueError: item {index} is malformed" in text
    assert "--resume picky-1" in text
    records = sorted((tmp_path / "runs" / "picky-1").glob("step=picky/failures/*.json"))
    stored = [json.loads(p.read_text()) for p in records]
    assert sorted(i for r in stored for i in r["items"]) == failed
    assert all(
        r["error"] == "ValueError" and "malformed" in r["message"] and "raise ValueError" in r["traceback"]
        for r in stored
    )


def test_map_failing_beyond_tolerance_in_the_cloud_fails_and_the_artifacts_name_the_items() -> None:
    """moto's interpreter keeps child failures out of the parent's history (real AWS lists them as
    map-run child executions, which `lokki-sam invoke` reads); the artifacts name the items anyway."""
    from lokki_sam.execution import RunContext, done_items
    from tests.support.moto_sfn import moto_cloud

    with moto_cloud() as cloud:
        ex = cloud.execute(intolerant.graph, {"n": 20})
        assert ex.status == "FAILED"
        assert ex.error == "States.ExceedToleratedFailureThreshold"
        assert ex.cause == "4 of 20 items failed"
        ctx = RunContext(intolerant.graph, cloud.store(intolerant.graph), ex.run_id, {})
        block = intolerant.graph.maps[0]
        done = done_items(ctx, block)
    missing = [i for i in range(20) if i not in done]
    assert missing == [3, 8, 13, 18]


# ===================================================================== a newer lokki-sam's artifacts


def test_artifacts_from_a_newer_lokki_sam_fail_clearly_and_stay(tmp_path: Path, lokki: Any) -> None:
    """A run written by a newer format version, resumed by this lokki-sam: exit 2, the key and the
    fix named, no traceback, and the newer artifacts left untouched."""
    flow_file = tmp_path / "newer_flow.py"
    flow_file.write_text(
        "from lokki_sam import flow, step\n\n@step\ndef nums() -> list[int]:\n    return [1, 2, 3]\n\n"
        "@step\ndef dbl(x: int) -> int:\n    return 2 * x\n\n@flow\ndef newer():\n    return nums().map(dbl)\n"
    )
    with mock.patch.object(serialization, "FORMAT_VERSION", serialization.FORMAT_VERSION + 1):
        run_flow(_load(flow_file), {}, store=tmp_path / "runs", run_id="newer-1")
    artifacts = {p: p.read_bytes() for p in (tmp_path / "runs").rglob("*.pkl")}
    assert artifacts and all(b[4] == serialization.FORMAT_VERSION + 1 for b in artifacts.values())

    done = lokki("run", str(flow_file), "--store", "runs", "--resume", "newer-1")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"artifact format version {serialization.FORMAT_VERSION + 1} is newer than this lokki-sam" in done.stderr
    assert "hint: upgrade lokki-sam to read it" in done.stderr
    assert str(tmp_path / "runs" / "newer-1") in done.stderr
    assert {p: p.read_bytes() for p in artifacts} == artifacts
    with pytest.raises(StoreError, match="newer"):
        serialization.loads(next(iter(artifacts.values())), where="x")


def _load(path: Path) -> Any:
    from lokki_sam.loader import load_flow

    sys.modules.pop(path.stem, None)
    return load_flow(str(path))
