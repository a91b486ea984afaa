"""`lokki-sam invoke --resume` on moto's Step Functions interpreter with the real handler: a
deployed run whose map items fail is resumed, and only the failed items (and what follows) run
again, batched or not. Call counts are kept by the steps themselves."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lokki_sam import flow, names, step
from lokki_sam.cli import cli
from lokki_sam.local import run_flow
from tests.support.keys import STACK, prefix
from tests.support.moto_sfn import BUCKET, Cloud, moto_cloud

CALLS: Counter[str] = Counter()
FAILING: set[int] = set()
THIS = str(Path(__file__).resolve())


@step
def numbers(n: int = 60) -> list[int]:
    CALLS["numbers"] += 1
    return list(range(n))


@step
def fragile(x: int) -> int:
    CALLS["fragile"] += 1
    if x in FAILING:
        raise RuntimeError(f"item {x} is not ready")
    return x * 2


@step
def summed(xs: list[int]) -> int:
    CALLS["summed"] += 1
    return sum(xs)


@flow
def flaky(n: int = 60):
    return numbers(n=n).map(fragile).agg(summed)


@flow
def flaky_batched(n: int = 10_000):
    return numbers(n=n).map(fragile, batch_size=100).agg(summed)


@flow
def needy(n: int):
    """A flow whose parameter has no default: a resume must not ask for it again."""
    return numbers(n=n).map(fragile).agg(summed)


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    CALLS.clear()
    FAILING.clear()
    with moto_cloud() as cloud:
        outputs = {
            names.state_machine_arn_output(graph.name): {"Value": cloud.deploy(graph)}
            for graph in (flaky.graph, flaky_batched.graph, needy.graph)
        }
        outputs[names.BUCKET_OUTPUT] = {"Value": BUCKET}
        template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
        import boto3

        boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
        yield cloud


def lokki(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, [*args, "--stack-name", STACK], catch_exceptions=False)


def run_id_of(result: Result) -> str:
    return str(json.loads(result.stderr.splitlines()[0])["run_id"])


@pytest.mark.parametrize(
    ("ref", "failing", "recomputed_items", "map_invocations"),
    [
        # 60 items, one per child: the 10 failed items are exactly the 10 invocations of the resume.
        (f"{THIS}:flaky", set(range(10, 20)), 10, 10),
        # 10,000 items in batches of 100, 10 failures in one batch: one batch (100 items) runs again.
        (f"{THIS}:flaky_batched", set(range(5000, 5010)), 100, 1),
    ],
)
def test_resume_recomputes_only_the_failed_items_and_what_follows(
    cloud: Cloud, tmp_path: Path, ref: str, failing: set[int], recomputed_items: int, map_invocations: int
) -> None:
    graph = (flaky if ref.endswith(":flaky") else flaky_batched).graph
    FAILING.update(failing)
    failed = lokki("invoke", ref, "--json")
    assert failed.exit_code == 1, failed.stderr
    run_id = run_id_of(failed)
    FAILING.clear()  # the cause is fixed
    CALLS.clear()
    cloud.counters.by_function.clear()
    resumed = lokki("invoke", ref, "--resume", run_id, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    # Only the failed items ran again; the source was reused, the aggregation ran once.
    assert CALLS["fragile"] == recomputed_items and CALLS["numbers"] == 0 and CALLS["summed"] == 1
    expected = run_flow(graph, store=tmp_path / "local").result
    assert json.loads(resumed.stdout)["result"] == expected == sum(2 * x for x in range(graph.params[0].default))
    assert json.loads(resumed.stdout)["run_id"] == run_id  # the same run, continued
    fetched = lokki("result", run_id, "--flow", ref)  # the run's latest attempt decides
    assert fetched.exit_code == 0 and json.loads(fetched.stdout) == expected, fetched.stderr
    invocations = {fn.rsplit("-", 1)[-1]: count for fn, count in cloud.counters.by_function.items()}
    assert invocations.get("fragile") == map_invocations, invocations
    # The resume is a second execution of the same run, listed with it.
    runs = json.loads(lokki("runs", graph.name, "--json").stdout)
    (row,) = [r for r in runs if r["run_id"] == run_id]
    assert row["status"] == "SUCCEEDED" and row["resumes"] == 1 and not row["resumable"]


def test_a_failed_run_is_listed_as_resumable_with_its_command(cloud: Cloud) -> None:
    FAILING.add(3)
    run_id = run_id_of(lokki("invoke", f"{THIS}:flaky", "--json", "-p", "n=5"))
    (row,) = json.loads(lokki("runs", "flaky", "--json").stdout)
    assert row["run_id"] == run_id and row["status"] == "FAILED" and row["resumable"]
    assert row["resume"] == f"lokki-sam invoke flaky --resume {run_id} --stack-name {STACK}"  # the stack it listed
    table = lokki("runs", "flaky")
    assert f"resume {run_id}: lokki-sam invoke flaky --resume {run_id}" in table.stdout


def test_resume_keeps_the_runs_parameters(cloud: Cloud, tmp_path: Path) -> None:
    FAILING.add(3)
    run_id = run_id_of(lokki("invoke", f"{THIS}:flaky", "--json", "-p", "n=7"))
    FAILING.clear()
    with_params = lokki("invoke", f"{THIS}:flaky", "--resume", run_id, "-p", "n=3")
    assert with_params.exit_code == 2 and "keeps the parameters it was started with" in with_params.stderr
    resumed = lokki("invoke", f"{THIS}:flaky", "--resume", run_id)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stdout == f"{sum(2 * x for x in range(7))}\n"  # n=7, the run's own


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        ("unknown", "no run flaky-20990101T000000-abcdef of flow 'flaky'"),
        ("succeeded", "succeeded: nothing to resume"),
        ("other flow", "it looks like a run of flow 'flaky_batched'"),
        ("expired", "are gone from"),
    ],
)
def test_runs_that_cannot_be_resumed_are_refused_saying_why(cloud: Cloud, arrange: str, message: str) -> None:
    import boto3

    if arrange == "unknown":
        run_id = "flaky-20990101T000000-abcdef"
    elif arrange == "other flow":
        run_id = run_id_of(lokki("invoke", f"{THIS}:flaky_batched", "--json", "-p", "n=3"))
    else:
        if arrange == "expired":
            FAILING.add(1)
        run_id = run_id_of(lokki("invoke", f"{THIS}:flaky", "--json", "-p", "n=3"))
        if arrange == "expired":  # the lifecycle rule removed the run's artifacts
            s3 = boto3.client("s3")
            for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix(flaky)}/{run_id}/")["Contents"]:
                s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    refused = lokki("invoke", f"{THIS}:flaky", "--resume", run_id)
    assert refused.exit_code == 2, refused.stderr
    assert message in refused.stderr and "Traceback" not in refused.stderr


def test_a_run_with_a_required_parameter_resumes_and_reruns_say_what_they_reuse(cloud: Cloud) -> None:
    """Before, `invoke --resume` of such a run said the parameter was missing without -p, and that a
    resume keeps the run's parameters with it."""
    FAILING.update({3})
    failed = lokki("invoke", f"{THIS}:needy", "-p", "n=6", "--json")
    assert failed.exit_code == 1, failed.stderr
    run_id = run_id_of(failed)
    FAILING.clear()
    CALLS.clear()
    resumed = lokki("invoke", f"{THIS}:needy", "--resume", run_id)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stdout == f"{sum(2 * x for x in range(6))}\n"
    assert CALLS == {"fragile": 1, "summed": 1}  # item 3 and the aggregation: the source is reused
    assert f"numbers: reused from run {run_id}" in resumed.stderr
    assert "map-fragile: reused 5/6 items" in resumed.stderr and "1 have no output yet" in resumed.stderr
    assert "summed: recomputing (it has no output yet)" in resumed.stderr

    # A succeeded run cannot be resumed; a failed one can, forcing a step and what follows it.
    FAILING.update({0})
    again = lokki("invoke", f"{THIS}:needy", "-p", "n=6", "--json")
    run_id = run_id_of(again)
    FAILING.clear()
    CALLS.clear()
    forced = lokki("invoke", f"{THIS}:needy", "--resume", run_id, "--rerun", "fragile")
    assert forced.exit_code == 0, forced.stderr
    assert CALLS == {"fragile": 6, "summed": 1}  # every item again (--rerun), not the source
    assert "map-fragile: recomputing all 6 item(s)" in forced.stderr and "--rerun" in forced.stderr


def test_rerun_of_an_unknown_step_is_refused_before_anything_starts(cloud: Cloud) -> None:
    FAILING.update({1})
    run_id = run_id_of(lokki("invoke", f"{THIS}:flaky", "-p", "n=3", "--json"))
    executions = len(cloud.sfn.list_executions(stateMachineArn=cloud.state_machines["flaky"])["executions"])
    refused = lokki("invoke", f"{THIS}:flaky", "--resume", run_id, "--rerun", "nope")
    assert refused.exit_code == 2 and "--rerun nope: flow 'flaky' has no such step" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(cloud.sfn.list_executions(stateMachineArn=cloud.state_machines["flaky"])["executions"]) == executions
    without = lokki("invoke", f"{THIS}:flaky", "--rerun", "fragile")
    assert without.exit_code == 2 and "--rerun goes with --resume RUN_ID" in without.stderr
