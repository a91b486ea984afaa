"""Generated state machines, executed by moto's Step Functions interpreter with every Lambda task
running the real lokki-sam handler against moto S3, compute what `lokki-sam run` computes.

See tests/support/moto_sfn.py for the harness and docs/cloud.md for what moto lacks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import Retry, execution, flow, run_flow, step
from lokki_sam.execution import RunContext
from lokki_sam.graph import Flow
from lokki_sam.loader import load_flows
from lokki_sam.params import resolve_params
from tests.conftest import EXAMPLES
from tests.flows.modes import glue, inline_chain, letters, twice
from tests.flows.shapes import SHAPES
from tests.support.moto_sfn import Cloud, Execution, moto_cloud


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with moto_cloud() as c:
        yield c


def cloud_result(cloud: Cloud, f: Flow, params: dict[str, Any], ex: Execution) -> Any:
    resolved = resolve_params(f.graph.params, params, where="test")
    return execution.read_result(RunContext(f.graph, cloud.store(f.graph), ex.run_id, resolved))


def run_both(cloud: Cloud, f: Flow, params: dict[str, Any], tmp_path: Path) -> tuple[Execution, Any, Any]:
    ex = cloud.execute(f.graph, params)
    assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
    local = run_flow(f, params, store=tmp_path / "runs")
    return ex, cloud_result(cloud, f, params, ex), local.result


def example_flows() -> list[Any]:
    found = []
    for path in sorted(EXAMPLES.glob("*.py")):
        for f in load_flows(str(path)):
            found.append(pytest.param(f, id=f"{path.stem}:{f.name}"))
    return found


# ------------------------------------------------------------------------ shapes and examples


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_gives_the_local_and_expected_result(cloud: Cloud, name: str, tmp_path: Path) -> None:
    f, params, expected = SHAPES[name]
    _, result, local = run_both(cloud, f, params, tmp_path)
    assert result == local
    assert result == expected


@pytest.mark.parametrize("f", example_flows())
def test_every_example_gives_the_local_result(cloud: Cloud, f: Flow, tmp_path: Path) -> None:
    _, result, local = run_both(cloud, f, {}, tmp_path)
    assert result == local


@pytest.mark.parametrize(("name", "expected"), [("map_agg", 0), ("batched", 0), ("open_map", [])])
def test_empty_map(cloud: Cloud, name: str, expected: Any, tmp_path: Path) -> None:
    f = SHAPES[name][0]
    _, result, local = run_both(cloud, f, {"n": 0}, tmp_path)
    assert result == local == expected


# --------------------------------------------------------------------------- a large map

LARGE = 2_500


@step
def many(n: int = LARGE) -> list[int]:
    return list(range(n))


@step
def cube(x: int) -> int:
    return x**3


@step
def checksum(xs: list[int]) -> tuple[int, int]:
    return len(xs), sum(xs)


@flow
def large_map(n: int = LARGE):
    return many(n=n).map(cube, batch_size=100, concurrency=50).agg(checksum)


def test_large_batched_map_one_invocation_per_batch_and_small_state(cloud: Cloud, tmp_path: Path) -> None:
    before = cloud.counters.invocations
    ex, result, local = run_both(cloud, large_map, {}, tmp_path)
    assert result == local == (LARGE, sum(x**3 for x in range(LARGE)))
    assert cloud.counters.invocations - before == 1 + LARGE // 100 + 1
    # State carries references only: no event of the parent execution grows with the item count.
    sizes = [len(json.dumps(e, default=str)) for e in cloud.history(ex.arn)]
    assert max(sizes) < 4096


# ------------------------------------------------------------------------- failures and retry


class FlakyError(ConnectionError):
    """Defined in the flow's module: the compiler lists it under `except ConnectionError`."""


_attempts: dict[str, int] = {}
_lock = threading.Lock()


def _attempt(key: str) -> int:
    with _lock:
        _attempts[key] = _attempts.get(key, 0) + 1
        return _attempts[key]


@step
def seed(tag: str = "a", n: int = 10) -> list[int]:
    return list(range(n))


@step
def fragile(x: int, bad: int = 3) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x * 10


@step
def add_up(xs: list[int]) -> int:
    return sum(xs)


@flow
def tolerant(tag: str = "a", n: int = 10, bad: int = 3):
    return seed(tag=tag, n=n).map(fragile, tolerated_failure_count=1).agg(add_up)


@flow
def intolerant(tag: str = "a", n: int = 10, bad: int = 3):
    return seed(tag=tag, n=n).map(fragile, tolerated_failure=5).agg(add_up)


@step(retry=Retry(retries=2, interval=0, backoff=1.0, exceptions=(ConnectionError,)))
def flaky(tag: str = "a", fail_times: int = 1) -> str:
    if _attempt(tag) <= fail_times:
        raise FlakyError(f"attempt {_attempts[tag]} of {tag} failed")
    return f"{tag} ok after {_attempts[tag]}"


@step
def shout(text: str) -> str:
    return text.upper()


@flow
def retried(tag: str = "a", fail_times: int = 1):
    return flaky(tag=tag, fail_times=fail_times).next(shout)


def test_failing_item_within_tolerated_failure_reaches_the_agg_without_it(cloud: Cloud, tmp_path: Path) -> None:
    _, result, local = run_both(cloud, tolerant, {"tag": "tol"}, tmp_path)
    assert result == local == sum(x * 10 for x in range(10) if x != 3)


def test_failures_beyond_tolerance_fail_the_execution(cloud: Cloud) -> None:
    ex = cloud.execute(intolerant.graph, {"bad": 4})
    assert ex.status == "FAILED"
    assert ex.error == "States.ExceedToleratedFailureThreshold"


def test_step_failing_once_succeeds_under_retry(cloud: Cloud, tmp_path: Path) -> None:
    before = cloud.counters.by_function.get("retried-flaky", 0)
    ex = cloud.execute(retried.graph, {"tag": "cloud-once"})
    assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
    assert cloud.counters.by_function["retried-flaky"] - before == 2
    failed = [e for e in cloud.history(ex.arn) if e["type"] == "TaskFailed"]
    assert [e["taskFailedEventDetails"]["error"] for e in failed] == ["FlakyError"]
    local = run_flow(retried, {"tag": "local-once"}, store=tmp_path / "runs", sleep=lambda _: None)
    assert cloud_result(cloud, retried, {"tag": "cloud-once"}, ex) == "CLOUD-ONCE OK AFTER 2"
    assert local.result == "LOCAL-ONCE OK AFTER 2"


def test_step_exhausting_its_retries_fails_with_the_users_exception_type(cloud: Cloud) -> None:
    before = cloud.counters.by_function.get("retried-flaky", 0)
    ex = cloud.execute(retried.graph, {"tag": "cloud-always", "fail_times": 99})
    assert ex.status == "FAILED"
    assert ex.error == "FlakyError"
    assert "attempt 3 of cloud-always failed" in (ex.cause or "")
    # MaxAttempts is the number of retries: 1 attempt + 2 retries.
    assert cloud.counters.by_function["retried-flaky"] - before == 3


@step(retry=Retry(retries=3, interval=0, exceptions=(ConnectionError,)))
def picky(tag: str = "a") -> str:
    raise ValueError(f"{tag}: not a ConnectionError, never retried")


@flow
def picky_flow(tag: str = "a"):
    return picky(tag=tag)


def test_exception_outside_the_retry_policy_fails_at_once(cloud: Cloud) -> None:
    ex = cloud.execute(picky_flow.graph, {"tag": "p"})
    assert (ex.status, ex.error) == ("FAILED", "ValueError")
    assert cloud.counters.by_function["picky_flow-picky"] == 1


@pytest.mark.parametrize(
    ("failed", "total", "count", "percentage"),
    [
        (0, 10, None, None),
        (1, 10, None, None),
        (1, 10, 1, None),
        (2, 10, 1, None),
        (1, 10, None, 10),
        (2, 10, None, 10),
        (1, 10, 5, 5),
        (1, 10, 0, 50),
        (3, 4, 3, 50),
    ],
)
def test_harness_tolerance_matches_the_local_runner(failed: int, total: int, count: Any, percentage: Any) -> None:
    from lokki_sam.graph import MapOptions
    from tests.support.moto_sfn import exceeds_tolerance

    options = MapOptions(tolerated_failure=percentage, tolerated_failure_count=count)
    assert exceeds_tolerance(failed, total, count, percentage) == (not options.tolerates(failed, total))


# --------------------------------------------------------------------- map modes and child types


@flow
def express_children(n: int = 5):
    return letters(n=n).map(twice, execution_type="EXPRESS", batch_size=2).agg(glue)


def test_inline_map_gives_the_local_result(cloud: Cloud, tmp_path: Path) -> None:
    _, result, local = run_both(cloud, inline_chain, {"n": 4}, tmp_path)
    assert result == local == "aaaa-bbbb-cccc-dddd"


def test_express_children_are_rejected_by_moto_and_run_as_standard_otherwise(cloud: Cloud, tmp_path: Path) -> None:
    """moto's grammar only knows STANDARD children (docs/cloud.md); the data protocol does not
    depend on the child type, so the same definition with STANDARD children must agree."""
    from botocore.exceptions import ClientError

    from lokki_sam.compile import asl

    definition = asl.compile_flow(express_children.graph)
    processor = definition["States"]["map-twice"]["ItemProcessor"]
    assert processor["ProcessorConfig"]["ExecutionType"] == "EXPRESS"
    with pytest.raises(ClientError, match="EXPRESS"):
        cloud.deploy(express_children.graph, definition=definition)
    processor["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    cloud.deploy(express_children.graph, definition=definition)
    _, result, local = run_both(cloud, express_children, {}, tmp_path)
    assert result == local == "aa-bb-cc-dd-ee"


def test_bad_execution_input_fails_with_a_clear_param_error(cloud: Cloud) -> None:
    f = SHAPES["map_agg"][0]
    ex = cloud.execute(f.graph, {"n": "many", "bogus": 1})
    assert (ex.status, ex.error) == ("FAILED", "ParamError")
    assert "unknown parameter(s) bogus" in (ex.cause or "")
