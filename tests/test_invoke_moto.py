"""`lokki-sam invoke`/`result` in-process against moto: its Step Functions interpreter runs the
compiled state machines with the real handler (tests/support/moto_sfn.py), a CloudFormation stack
carries the outputs `lokki-sam generate` declares. Fast, and unlike ministack it reports the
exception class as the error (as AWS does) and names states in child executions."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lokki_sam import names
from lokki_sam.cli import cli
from lokki_sam.loader import load_flow
from tests.flows.shapes import SHAPES
from tests.support.keys import STACK as KEYS_STACK
from tests.support.moto_sfn import BUCKET, Cloud, moto_cloud

SHAPES_FILE = str(Path(__file__).resolve().parent / "flows" / "shapes.py")
STACK = KEYS_STACK  # the prefix the harness deploys functions under carries this stack name

FAILING = """
from lokki_sam import Retry, flow, step

@step
def items(n: int = 4) -> list[int]:
    return list(range(n))

@step
def check(x: int, bad: int = 1) -> int:
    if x == bad:
        raise KeyError(f"item {x} is bad")
    return x

@step(retry=Retry(retries=2, interval=1, exceptions=(KeyError,)))
def picky(x: int) -> int:
    if x == 1:
        raise KeyError(f"item {x} is bad")
    return x

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def failing(n: int = 4, bad: int = 1):
    return items(n=n).map(check)

@flow
def aggregated(n: int = 4, bad: int = 1):
    return items(n=n).map(check).agg(total)

@flow
def retried(n: int = 4):
    return items(n=n).map(picky).agg(total)
"""


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with moto_cloud() as cloud:
        yield cloud


def deploy(cloud: Cloud, *refs: str) -> None:
    outputs = {
        names.state_machine_arn_output(graph.name): {"Value": cloud.deploy(graph)}
        for graph in (load_flow(ref).graph for ref in refs)
    }
    outputs[names.BUCKET_OUTPUT] = {"Value": BUCKET}
    template = {"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
    import boto3

    boto3.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))


def lokki(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, [*args, "--stack-name", STACK], catch_exceptions=False)


@pytest.mark.parametrize("shape", ["map_agg", "params_by_name", "batched", "linear", "dated", "timed", "enum_params"])
def test_invoke_prints_the_expected_result(cloud: Cloud, shape: str) -> None:
    _, params, expected = SHAPES[shape]
    deploy(cloud, f"{SHAPES_FILE}:{shape}")
    texts = {name: value if isinstance(value, str) else json.dumps(value) for name, value in params.items()}
    args = [a for name, text in texts.items() for a in ("-p", f"{name}={text}")]
    result = lokki("invoke", f"{SHAPES_FILE}:{shape}", "--json", *args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["result"] == expected
    again = lokki("result", payload["run_id"], "--flow", f"{SHAPES_FILE}:{shape}")
    assert again.exit_code == 0
    assert again.stdout == (f"{expected}\n" if isinstance(expected, str) else json.dumps(expected, indent=2) + "\n")


@pytest.fixture
def failing_module(tmp_path: Path) -> str:
    module = tmp_path / "failing_flow.py"
    module.write_text(textwrap.dedent(FAILING))
    sys.modules.pop("failing_flow", None)
    return str(module)


def test_failed_map_item_names_step_item_exception_and_traceback(cloud: Cloud, failing_module: str) -> None:
    deploy(cloud, f"{failing_module}:failing")
    result = lokki("invoke", f"{failing_module}:failing")
    assert result.exit_code == 1
    # moto cannot list a map run's child executions: the runtime's record of the item says what failed.
    assert "step: check (map item 1)" in result.stderr
    assert "error: KeyError: 'item 1 is bad'" in result.stderr, result.stderr
    assert 'raise KeyError(f"item {x} is bad")' in result.stderr  # the user's frame, not lokki-sam's
    run_id = json.loads(lokki("runs", "--json").stdout)[0]["run_id"]
    assert f"lokki-sam invoke failing --resume {run_id}" in result.stderr
    listed = lokki("runs", "--json")
    assert [row["status"] for row in json.loads(listed.stdout)] == ["FAILED"]


def test_json_failures_are_error_documents_naming_the_run(cloud: Cloud, tmp_path: Path) -> None:
    module = tmp_path / "failing_flow.py"
    module.write_text(textwrap.dedent(FAILING))
    deploy(cloud, f"{module}:failing")
    failed = lokki("invoke", f"{module}:failing", "--json")
    assert failed.exit_code == 1
    started = json.loads(failed.stderr.splitlines()[0])
    document = json.loads(failed.stdout)  # stdout holds this one JSON document
    assert document["run_id"] == started["run_id"] and document["flow"] == "failing"
    assert document["execution_arn"] == started["execution_arn"]
    error = document["error"]
    assert (error["type"], error["exit_code"]) == ("ExecutionFailed", 1)
    assert "step: check (map item 1)" in error["message"] and error["hint"]
    assert "error: " in failed.stderr  # people still read the error on stderr
    for args, kind in [
        (("invoke", f"{module}:failing", "--json", "-p", "nn=2"), "ParamError"),
        (("logs", "failing-20260101T000000-abcdef", "--flow", f"{module}:failing", "--json"), "LokkiError"),
        (("runs", "nope", "--json"), None),
    ]:
        refused = lokki(*args)
        assert refused.exit_code == 2, refused.output
        error = json.loads(refused.stdout)["error"]
        assert error["exit_code"] == 2 and error["message"] and (kind is None or error["type"] == kind)
    assert (
        "nn (did you mean n?)"
        in json.loads(lokki("invoke", f"{module}:failing", "--json", "-p", "nn=2").stdout)["error"]["message"]
    )


def test_map_totals_are_the_counts_the_sources_returned(cloud: Cloud) -> None:
    from lokki_sam.cloud.map_totals import map_totals
    from lokki_sam.testing import run_flow_in_process

    f = SHAPES["maps_in_sequence"][0]  # numbers(3) -> squares -> total 14 -> range(14) -> doubles
    execution = cloud.execute(f.graph, {"n": 3})
    assert execution.status == "SUCCEEDED"
    local = run_flow_in_process(f, n=3)
    expected = {names.map_label(m.id): len(local.output(m.id)) for m in f.graph.maps}
    assert map_totals(cloud.sfn, execution.arn, f.graph) == expected == {"map-square": 3, "map-double": 14}


def test_a_map_the_engine_let_succeed_reports_the_failed_item_not_the_agg_step(
    cloud: Cloud, failing_module: str
) -> None:
    """LocalStack's Distributed Map succeeds although an item failed; the agg step then finds the
    item missing. What is reported is the item's own failure, as AWS reports it."""
    cloud.maps_fail_on_items = False
    deploy(cloud, f"{failing_module}:aggregated", f"{failing_module}:failing")
    result = lokki("invoke", f"{failing_module}:aggregated")
    assert result.exit_code == 1
    assert "step: check (map item 1)" in result.stderr, result.stderr
    assert "error: KeyError: 'item 1 is bad'" in result.stderr
    assert "MapIncomplete" not in result.stderr and "step: total" not in result.stderr
    assert "lokki-sam invoke aggregated --resume aggregated-" in result.stderr
    # An open map's result, read by invoke, names the item's failure too.
    opened = lokki("invoke", f"{failing_module}:failing")
    assert opened.exit_code == 1
    assert "item 1: KeyError: 'item 1 is bad' (step 'check')" in opened.stderr, opened.stderr
    assert "--resume failing-" in opened.stderr and "run the flow again" not in opened.stderr


def test_items_the_engine_never_ran_are_reported_as_the_engines_fault(cloud: Cloud, failing_module: str) -> None:
    """A stand-in for LocalStack's Step Functions failing to reach Lambda (States.Runtime): the
    item's invocation never reaches the function, so no exception of the step exists for it."""
    cloud.maps_fail_on_items = False
    cloud.unreachable_items = frozenset({2})
    deploy(cloud, f"{failing_module}:aggregated")
    result = lokki("invoke", f"{failing_module}:aggregated", "-p", "bad=-1")
    assert result.exit_code == 1
    text = result.stderr
    assert "1 item(s) have no failure record (items 2): their step did not raise for them" in text, text
    assert "The engine never ran them or lost their result" in text and "States.Runtime" in text
    assert "KeyError" not in text and "--resume aggregated-" in text


def test_a_retry_the_engine_cannot_match_says_it_did_not_apply(cloud: Cloud, failing_module: str) -> None:
    """ministack reports every exception as Runtime.HandlerError: a Retry on KeyError never
    matches there. The failure says so, naming the real class from the item's record."""
    from lokki_sam.cloud.aws import connect
    from lokki_sam.cloud.failure import failure_error
    from lokki_sam.cloud.stack import Deployment
    from lokki_sam.cloud.status import Failure

    cloud.generic_errors = True
    deploy(cloud, f"{failing_module}:retried")
    result = lokki("invoke", f"{failing_module}:retried")
    assert result.exit_code == 1
    assert cloud.counters.by_function["retried-picky"] == 4  # one attempt per item: the retry never matched
    run_id = json.loads(lokki("runs", "--json").stdout)[0]["run_id"]
    # What ministack's map run gives for the failed child (moto cannot list children).
    failure = Failure("FAILED", "picky", "Runtime.HandlerError", "'item 1 is bad'", item="1", map_label="map-picky")
    outputs = {names.BUCKET_OUTPUT: BUCKET, names.state_machine_arn_output("retried"): cloud.state_machines["retried"]}
    dep = Deployment(connect(region="us-east-1", profile=None, endpoint_url=None), STACK, outputs)
    graph = load_flow(f"{failing_module}:retried").graph
    text = failure_error(dep, graph, run_id, failure, "arn:x").message
    assert "error: KeyError: 'item 1 is bad'" in text
    assert "note: the step's Retry on KeyError did not apply: this engine reported the KeyError as " in text
    assert "Runtime.HandlerError" in text and "ran once instead of up to 3 times" in text
    # Where the engine reports the class (AWS, LocalStack), nothing is said: the retry applied.
    applied = Failure("FAILED", "picky", "KeyError", "'item 1 is bad'", item="1", map_label="map-picky")
    assert "note:" not in failure_error(dep, graph, run_id, applied, "arn:x").message


EDITED = """
from lokki_sam import flow, step

@step
def words(n: int = 3) -> list[str]:
    return ["a", "b", "c"][:n]

@step
def shout(word: str) -> str:
    return word.upper()

@flow
def edited(n: int = 3):
    return words(n=n).map(shout)
"""


def test_invoke_refuses_a_deployed_flow_that_differs_from_the_file_and_says_what_changed(
    cloud: Cloud, tmp_path: Path
) -> None:
    module = tmp_path / "edited_flow.py"
    module.write_text(textwrap.dedent(EDITED))
    deploy(cloud, str(module))
    assert lokki("invoke", str(module)).exit_code == 0  # deployed and local agree
    # The user adds a step and edits another, but deploys nothing.
    module.write_text(
        textwrap.dedent(EDITED)
        .replace("return word.upper()", "return word.upper() + '!'")
        .replace("@flow", "@step\ndef add_title(words: list[str]) -> str:\n    return ' '.join(words)\n\n@flow")
        .replace(".map(shout)", ".map(shout).agg(add_title)")
    )
    sys.modules.pop("edited_flow", None)
    runs_before = len(json.loads(lokki("runs", "--json").stdout))
    refused = lokki("invoke", str(module))
    assert refused.exit_code == 2, refused.stderr
    text = refused.stderr
    assert "the deployed flow 'edited' differs from" in text and "edited_flow.py" in text
    assert "step 'shout' changed" in text and "step 'add_title' is new" in text
    assert "run `lokki-sam generate`, `sam build` and `sam deploy`" in text
    assert len(json.loads(lokki("runs", "--json").stdout)) == runs_before  # nothing was started


def test_result_of_a_run_is_read_as_it_was_made_after_the_file_changed(cloud: Cloud, tmp_path: Path) -> None:
    """A user fetches an earlier run's result after editing the flow (not deployed): the outputs
    are stored under the fingerprints of the version that ran, so they are read with those,
    not reported as expired. A file whose flow has another shape cannot read them: said so."""
    module = tmp_path / "edited_flow.py"
    module.write_text(textwrap.dedent(EDITED))
    deploy(cloud, str(module))
    ran = lokki("invoke", str(module), "--json")
    assert ran.exit_code == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    module.write_text(textwrap.dedent(EDITED).replace("return word.upper()", "return word.lower() + '?'"))
    sys.modules.pop("edited_flow", None)
    fetched = lokki("result", run_id, "--flow", str(module))
    assert fetched.exit_code == 0, fetched.stderr
    assert json.loads(fetched.stdout) == ["A", "B", "C"]  # what the run made, not what the file would
    assert "made by the deployed version of flow 'edited'" in fetched.stderr
    assert "step 'shout' changed" in fetched.stderr
    one_step = lokki("result", run_id, "--flow", str(module), "--step", "words")
    assert one_step.exit_code == 0 and json.loads(one_step.stdout) == ["a", "b", "c"]
    as_json = lokki("result", run_id, "--flow", str(module), "--step", "words", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    expected = {"flow": "edited", "run_id": run_id, "step": "words", "result": ["a", "b", "c"]}
    assert json.loads(as_json.stdout) == expected
    module.write_text(
        textwrap.dedent(EDITED)
        .replace("@flow", "@step\ndef join(ws: list[str]) -> str:\n    return ''.join(ws)\n\n@flow")
        .replace(".map(shout)", ".map(shout).agg(join)")
    )
    sys.modules.pop("edited_flow", None)
    reshaped = lokki("result", run_id, "--flow", str(module))
    assert reshaped.exit_code == 2, reshaped.stdout + reshaped.stderr
    assert "step 'join' is new" in reshaped.stderr and "expired" not in reshaped.stderr
