"""Upstream lokki's flows and spellings under lokki-sam (docs/migrating.md).

tests/upstream/ holds upstream's own example flows with only their imports changed. Each runs
locally and on moto's Step Functions interpreter (the real handler in every Lambda task), and its
result is compared with one computed here in plain Python. Upstream spellings lokki-sam accepts
(`.map([a, b])`, `.map(step, k=v)`, `concurrency_limit`, `RetryConfig`) must give the same graph,
state machine and results as lokki-sam's own; those it refuses must say why, naming the step or key.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import Retry, RetryConfig, execution, flow, run_flow, step
from lokki_sam.compile import asl
from lokki_sam.dsl import Flow
from lokki_sam.errors import FlowDefinitionError, LokkiError
from lokki_sam.execution import RunContext
from lokki_sam.loader import load_flows
from lokki_sam.params import resolve_params
from lokki_sam.store import LocalStore
from tests.conftest import REPO, lokki_env
from tests.support.moto_sfn import Cloud, moto_cloud

UPSTREAM = REPO / "tests" / "upstream"


def ported(module: str) -> Flow:
    (found,) = load_flows(f"tests.upstream.{module}")
    return found


def stage_output(f: Flow, store: Any, run_id: str, params: dict[str, Any], stage: str) -> Any:
    """What one stage of a run produced, read from the store as `lokki-sam result --step` does."""
    ctx = RunContext(f.graph, store, run_id, resolve_params(f.graph.params, params, where="test"))
    return execution.read_stage_output(ctx, f.graph.get(stage))


# Each ported flow, the parameters of a run, the stage to read and its result computed here.
def _ci_combined(param1: str, multiplier: int, threshold: int) -> dict[str, Any]:
    items = [{"value": f"{param1}-{c}x{multiplier}", "processed": True} for c in "abc"]
    return {"count": 3, "items": items, "threshold": threshold}


PORTED: dict[str, tuple[str, dict[str, Any], str | None, Any]] = {
    "birds_flow": ("birds_flow", {}, None, "flappy goose, flappy duck, flappy seagull"),
    "basic_flow": ("basic_flow", {"mult": 3}, None, sum((x * 3) ** 2 for x in [1, 2, 3])),
    "basic_flow_defaults": ("basic_flow", {}, None, sum((x * 2) ** 2 for x in [1, 2, 3])),
    # **kwargs step (process) receives the flow parameter mult it does not declare; an open map.
    "paginated_flow": ("paginated_flow", {"limit": 7, "mult": 5}, None, [x * 5 for x in range(7)]),
    # .map(step, k=v), an inner chain, .agg(step, k=v), positional binding; its last step prints and returns None.
    "ci_test_pipeline": (
        "ci_test_pipeline",
        {"param1": "up", "multiplier": 3, "threshold": 1},
        "combine_results",
        _ci_combined("up", 3, 1),
    ),
    # An open map: the flow's result is the list of item results (upstream's local runner returned None).
    "map_only": ("map_only", {}, None, [{"status": "sent", "event_id": i} for i in (1, 2, 3)]),
}


# ------------------------------------------------------------------- the ported flows, locally


@pytest.mark.parametrize("case", sorted(PORTED))
def test_ported_upstream_flow_runs_locally_with_the_expected_result(case: str, tmp_path: Path) -> None:
    module, params, stage, expected = PORTED[case]
    f = ported(module)
    outcome = run_flow(f, params, store=tmp_path / "runs")
    store = LocalStore(tmp_path / "runs")
    assert (outcome.result if stage is None else stage_output(f, store, outcome.run_id, params, stage)) == expected


def test_ci_test_pipeline_result_is_its_last_steps_none_and_it_printed_the_combination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_flow(ported("ci_test_pipeline"), {}, store=tmp_path / "runs")
    assert outcome.result is None
    assert str(_ci_combined("test", 2, 0)) in capsys.readouterr().out


# --------------------------------------------------------------- the ported flows, on moto SFN


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    with moto_cloud() as c:
        yield c


@pytest.mark.emulator
@pytest.mark.parametrize("case", sorted(PORTED))
def test_ported_upstream_flow_gives_the_same_result_on_step_functions(case: str, cloud: Cloud) -> None:
    module, params, stage, expected = PORTED[case]
    f = ported(module)
    ex = cloud.execute(f.graph, params)
    assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
    target = stage or f.graph.result_stage.id
    assert stage_output(f, cloud.store(f.graph), ex.run_id, params, target) == expected


# ---------------------------------------------------------------------- main(flow) from a script


def script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(UPSTREAM / f"{name}.py"), *args],
        cwd=cwd,
        env=lokki_env(cwd),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.cli
def test_upstream_main_runs_the_flow_module_as_upstream_documents(tmp_path: Path) -> None:
    birds = script("birds_flow", "run", "-q", cwd=tmp_path)
    assert (birds.returncode, birds.stdout) == (0, "flappy goose, flappy duck, flappy seagull\n"), birds.stderr
    basic = script("basic_flow", "run", "--mult", "3", "-q", cwd=tmp_path)
    assert (basic.returncode, basic.stdout) == (0, "126\n"), basic.stderr
    # Upstream's logging options go before the command.
    logged = script("basic_flow", "--log-level", "debug", "--log-format", "json", "run", cwd=tmp_path)
    assert logged.returncode == 0, logged.stderr
    assert '"event": "step_started"' in logged.stderr and '"event": "map_progress"' in logged.stderr


@pytest.mark.cli
@pytest.mark.parametrize(
    ("command", "replacement"),
    [
        ("build", "lokki-sam generate"),
        ("deploy", "sam deploy --guided"),
        ("invoke", "lokki-sam invoke"),
        ("show", "lokki-sam runs birds_flow"),
        ("logs", "sam logs"),
        ("destroy", "sam delete"),
    ],
)
def test_upstream_commands_of_main_say_what_replaces_them(command: str, replacement: str, tmp_path: Path) -> None:
    result = script("birds_flow", command, "--stack-name", "x", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"`{command}` is upstream lokki's command" in result.stderr and replacement in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------- upstream flows lokki-sam refuses, clearly


def test_upstream_ci_pipeline_is_refused_for_its_parameter_no_step_reads() -> None:
    """Upstream drops flow parameters no step accepts; lokki-sam refuses them (usually a typo)."""
    with pytest.raises(LokkiError, match=r"flow 'ci_pipeline': flow parameter\(s\) multiplier reach no step"):
        ported("ci_pipeline")


def test_upstream_batch_step_is_refused_at_import_for_a_size_fargate_does_not_offer() -> None:
    """Upstream's own Batch example asks for 2 vCPUs with 1024 MiB: Fargate (the default platform)
    has no such job, so AWS would refuse it; here the import stops at the step's line, saying why."""
    with pytest.raises(
        LokkiError, match=r"lambda_batch_pipeline\.py:\d+: step 'process_batch': Fargate offers 2 vCPU"
    ) as e:
        ported("lambda_batch_pipeline")
    assert "1024 MiB comes with 0.25 or 0.5 vCPU" in str(e.value) and 'platform="ec2"' in str(e.value)


def test_upstream_batch_step_through_the_cli_exits_2_without_a_traceback(lokki: Any) -> None:
    result = lokki("run", str(UPSTREAM / "lambda_batch_pipeline.py"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "step 'process_batch': Fargate offers 2 vCPU" in result.stderr and "Traceback" not in result.stderr


def test_upstream_batch_spelling_is_lokki_sams_batch_step(write_module: Any) -> None:
    """`job_type="batch", vcpu=, memory_mb=, timeout_seconds=` are `compute="batch", cpu=, memory=, timeout=`."""
    path = write_module(
        "batchy",
        """
        from lokki_sam import flow, step

        @step(job_type="batch", vcpu=2, memory_mb=8192, timeout_seconds=7200)
        def theirs() -> int:
            return 2

        @step(compute="batch", cpu=2, memory=8192, timeout=7200)
        def ours(x: int) -> int:
            return x + 1

        @flow
        def batchy():
            return theirs().next(ours)
        """,
    )
    (f,) = load_flows(str(path))
    theirs, ours = (f.graph.node(name).step.options for name in ("theirs", "ours"))
    assert (theirs.compute, theirs.cpu, theirs.memory, theirs.timeout) == ("batch", 2, 8192, 7200)
    assert (theirs.compute, theirs.cpu, theirs.memory, theirs.timeout) == (
        ours.compute,
        ours.cpu,
        ours.memory,
        ours.timeout,
    )


def test_upstream_lambda_sizing_names_size_the_function_in_the_template(write_module: Any) -> None:
    """Upstream sized Lambda steps with memory_mb/timeout_seconds (and job_type="lambda", its
    default): the same function settings as lokki-sam's memory/timeout."""
    path = write_module(
        "sized",
        """
        from lokki_sam import flow, step

        @step(job_type="lambda", memory_mb=2048, timeout_seconds=300)
        def heavy() -> int:
            return 2

        @step(memory=2048, timeout=300)
        def same(x: int) -> int:
            return x + 1

        @flow
        def sized():
            return heavy().next(same)
        """,
    )
    (f,) = load_flows(str(path))
    heavy, same = (f.graph.node(name).step.options for name in ("heavy", "same"))
    assert (heavy.memory, heavy.timeout) == (same.memory, same.timeout) == (2048, 300)
    assert run_flow(f, {}, store=path.parent / "runs").result == 3


def test_upstream_flights_example_needs_pandas_duckdb_and_fast_flights(tmp_path: Path) -> None:
    """flights.py (parameters in a tuple, a retry dict, a cron schedule) imports pandas, duckdb and
    fast_flights and fetches from the network; it runs only where those are installed."""
    for module in ("pandas", "duckdb", "fast_flights"):
        pytest.importorskip(module, reason="upstream's flights example needs pandas, duckdb and fast_flights")
    f = ported("flights")
    assert f.graph.schedule == "cron(0 9 * * ? *)"
    assert f.graph.node("fetch_flights").step.options.retry == Retry(retries=2, interval=1, backoff=2)
    run_flow(f, {"begin_date": "2024-01-01", "days": 1}, store=tmp_path / "runs")


# -------------------------------------------------------------------------- upstream spellings


@step
def numbers(n: int = 4) -> list[int]:
    return list(range(1, n + 1))


@step
def scale(x: int, factor: int = 1) -> int:
    return x * factor


@step
def inc(x: int) -> int:
    return x + 1


@step
def total(xs: list[int], offset: int = 0) -> int:
    return sum(xs) + offset


@step
def report(xs: list[int], **params: Any) -> dict[str, Any]:
    return {"sum": sum(xs), "params": dict(sorted(params.items()))}


# Same name on purpose: the spellings must compile to the same state machine.
@flow(name="spelled")
def upstream_spelling(n: int = 4, factor: int = 3):
    return numbers(n).map([scale(factor=factor), inc], concurrency_limit=2).agg(total, offset=10)


@flow(name="spelled")
def lokki_sam_spelling(n: int = 4, factor: int = 3):
    return numbers(n=n).map(scale(factor=factor), concurrency=2).next(inc).agg(total, offset=10)


@flow(name="spelled")
def map_kwargs_and_map_map(n: int = 4, factor: int = 3):
    return numbers(n).map(scale, factor=factor, concurrency_limit=2).map(inc).agg(total(offset=10))


def spelled_expected(n: int, factor: int) -> int:
    return sum(x * factor + 1 for x in range(1, n + 1)) + 10


def test_upstream_spellings_build_the_same_graph_and_state_machine() -> None:
    reference = lokki_sam_spelling.graph
    for other in (upstream_spelling.graph, map_kwargs_and_map_map.graph):
        assert other.stages == reference.stages
        assert asl.compile_flow(other) == asl.compile_flow(reference)
    assert asl.compile_flow(reference)["States"]["map-scale"]["MaxConcurrency"] == 2


@pytest.mark.parametrize(
    "f", [upstream_spelling, lokki_sam_spelling, map_kwargs_and_map_map], ids=lambda f: f.func.__name__
)
def test_upstream_spellings_run_the_same_locally(f: Flow, tmp_path: Path) -> None:
    assert run_flow(f, {"n": 5, "factor": 2}, store=tmp_path / "runs").result == spelled_expected(5, 2)


@flow
def positional_and_map_map(n: int = 4, factor: int = 3):
    return numbers(n).map(scale(factor)).map(inc).agg(total)


@flow
def keyword_and_next(n: int = 4, factor: int = 3):
    return numbers(n=n).map(scale(factor=factor)).next(inc).agg(total)


@flow
def kwargs_step(n: int = 3, factor: int = 2, tag: str = "t"):
    """report takes **params: it receives every flow parameter it does not otherwise get."""
    return numbers(n=n).map(scale(factor=factor)).agg(report)


@pytest.mark.emulator
@pytest.mark.parametrize(
    ("f", "params", "expected"),
    [
        (upstream_spelling, {"n": 6, "factor": 4}, spelled_expected(6, 4)),
        (positional_and_map_map, {"n": 5}, sum(x * 3 + 1 for x in range(1, 6))),
        (keyword_and_next, {"n": 5}, sum(x * 3 + 1 for x in range(1, 6))),
        (kwargs_step, {"tag": "x"}, {"sum": 12, "params": {"factor": 2, "n": 3, "tag": "x"}}),
    ],
    ids=lambda v: v.name if isinstance(v, Flow) else None,
)
def test_positional_inner_chain_and_kwargs_flows_run_the_same_on_both_engines(
    f: Flow, params: dict[str, Any], expected: Any, cloud: Cloud, tmp_path: Path
) -> None:
    ex = cloud.execute(f.graph, params)
    assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
    cloud_result = stage_output(f, cloud.store(f.graph), ex.run_id, params, f.graph.result_stage.id)
    assert cloud_result == run_flow(f, params, store=tmp_path / "runs").result == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "numbers().map(scale, facter=2)",
            r"\.map\(scale\): \.map\(\) has no option 'facter' and step 'scale' has no "
            r"parameter 'facter'.*map options: concurrency, batch_size.*the step's parameters: x, factor",
        ),
        ("numbers().map(scale, concurrency=2, concurrency_limit=3)", r"concurrency=2 and concurrency_limit=3 disagree"),
        ("numbers().map(scale, direct_pass=True)", r"direct_pass .* is not supported.*hint: remove direct_pass"),
        ("numbers().map([])", r"\.map\(\) got an empty list of steps"),
        ("numbers().map([scale, inc], factor=2)", r"a list of steps and keyword arguments \(factor\).*\[a\(k=1\), b\]"),
        ("numbers().map([scale, numbers().map(inc)])", r"a map inside a map's body \(nested maps\) is not supported"),
        ("numbers().map(inc).map([scale], concurrency_limit=3)", r"on an open map extends its per-item chain"),
        ("numbers().map(scale(1, 2))", r"step 'scale'.*positional argument\(s\) do not fit.*can set: factor"),
        ("numbers().map(scale, x=1)", r"step 'scale'.*argument 'x' is where the step receives its input"),
    ],
)
def test_bad_upstream_spellings_are_refused_naming_the_step(body: str, message: str) -> None:
    namespace = {"flow": flow, "numbers": numbers, "scale": scale, "inc": inc}
    with pytest.raises(FlowDefinitionError, match=rf"(?s)flow 'bad'.*{message}"):
        exec(f"@flow\ndef bad():\n    return {body}\n", namespace)


# --------------------------------------------------------------------------------- RetryConfig


def test_retry_config_is_a_retry_with_upstreams_names_and_defaults() -> None:
    assert RetryConfig() == Retry(retries=0, interval=1.0, backoff=1.0, max_delay=60.0)
    given = RetryConfig(retries=3, delay=2, backoff=1.5, max_delay=10, exceptions=[ConnectionError, TimeoutError])
    assert given == Retry(retries=3, interval=2, backoff=1.5, max_delay=10, exceptions=(ConnectionError, TimeoutError))
    assert [given.delay(n) for n in (1, 2, 3)] == [2, 3, 4.5]  # delay * backoff ** (n - 1), as upstream
    assert RetryConfig(exceptions=KeyError).exceptions == (KeyError,)
    with pytest.raises(FlowDefinitionError, match=r"backoff must be a number >= 1, got 0.5"):
        RetryConfig(retries=1, backoff=0.5)
    with pytest.raises(FlowDefinitionError, match=r"retries must be an integer >= 0, got -1"):
        RetryConfig(retries=-1)


def test_upstream_retry_on_failure_succeeds_on_the_third_attempt(tmp_path: Path) -> None:
    """Upstream's tests/test_runner.py TestRetryLogic, with LocalRunner().run -> run_flow."""
    call_count = 0

    @step(retry=RetryConfig(retries=2, delay=0.001))
    def unreliable() -> str:
        nonlocal call_count
        call_count += 1
        if call_count < 3:
            raise ValueError("Temporary failure")
        return "success"

    @flow
    def test_flow() -> Any:
        return unreliable()

    assert run_flow(test_flow, store=tmp_path / "runs").result == "success"
    assert call_count == 3


class Flaky(ConnectionError):
    pass


_attempts: dict[str, int] = {}
_lock = threading.Lock()


@step(retry=RetryConfig(retries=2, delay=0.001, exceptions=(ConnectionError,)))
def sometimes(tag: str = "a") -> str:
    with _lock:
        _attempts[tag] = _attempts.get(tag, 0) + 1
        attempt = _attempts[tag]
    if attempt == 1:
        raise Flaky(f"{tag}: first attempt fails")
    return f"{tag} after {attempt}"


@flow
def retry_config_flow(tag: str = "a"):
    return sometimes(tag=tag)


@pytest.mark.emulator
def test_retry_config_compiles_to_upstreams_policy_and_retries_on_both_engines(cloud: Cloud, tmp_path: Path) -> None:
    user_retrier = asl.compile_flow(retry_config_flow.graph)["States"]["sometimes"]["Retry"][-1]
    assert "Flaky" in user_retrier["ErrorEquals"] and "ConnectionError" in user_retrier["ErrorEquals"]
    # Upstream's defaults: a constant wait (backoff 1), capped at 60 s.
    assert (user_retrier["MaxAttempts"], user_retrier["BackoffRate"], user_retrier["MaxDelaySeconds"]) == (2, 1, 60)
    ex = cloud.execute(retry_config_flow.graph, {"tag": "cloud"})
    assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
    store = cloud.store(retry_config_flow.graph)
    assert stage_output(retry_config_flow, store, ex.run_id, {"tag": "cloud"}, "sometimes") == "cloud after 2"
    assert run_flow(retry_config_flow, {"tag": "local"}, store=tmp_path / "runs").result == "local after 2"


def test_the_ported_flows_import_only_lokki_sam_where_upstream_imported_lokki() -> None:
    """'Unchanged except for imports': no ported module mentions upstream's package any more."""
    for path in sorted(UPSTREAM.glob("*.py")):
        text = path.read_text()
        assert "from lokki import" not in text and "import lokki\n" not in text, path
        if path.name != "__init__.py":
            assert "only the import lines changed" in text, path
    assert importlib.import_module("tests.upstream.birds_flow").birds_flow.name == "birds_flow"
