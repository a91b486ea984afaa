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
from lokki_sam import flow, step

@step
def items(n: int = 3) -> list[int]:
    return list(range(n))

@step
def check(x: int) -> int:
    if x == 1:
        raise KeyError(f"item {x} is bad")
    return x

@flow
def failing(n: int = 3):
    return items(n=n).map(check)
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


def test_failed_map_item_names_step_item_and_exception_class(cloud: Cloud, tmp_path: Path) -> None:
    module = tmp_path / "failing_flow.py"
    module.write_text(textwrap.dedent(FAILING))
    deploy(cloud, str(module))
    result = lokki("invoke", str(module))
    assert result.exit_code == 1
    # moto cannot list a map run's child executions: the step and item come from the artifacts.
    assert "step: check (map item 1)" in result.stderr
    assert "error: States.ExceedToleratedFailureThreshold" in result.stderr
    listed = lokki("runs", "--json")
    assert [row["status"] for row in json.loads(listed.stdout)] == ["FAILED"]


def test_json_failures_are_error_documents_naming_the_run(cloud: Cloud, tmp_path: Path) -> None:
    module = tmp_path / "failing_flow.py"
    module.write_text(textwrap.dedent(FAILING))
    deploy(cloud, str(module))
    failed = lokki("invoke", str(module), "--json")
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
        (("invoke", str(module), "--json", "-p", "nn=2"), "ParamError"),
        (("logs", "failing-20260101T000000-abcdef", "--flow", str(module), "--json"), "LokkiError"),
        (("runs", "nope", "--json"), None),
    ]:
        refused = lokki(*args)
        assert refused.exit_code == 2, refused.output
        error = json.loads(refused.stdout)["error"]
        assert error["exit_code"] == 2 and error["message"] and (kind is None or error["type"] == kind)
    assert (
        "nn (did you mean n?)"
        in json.loads(lokki("invoke", str(module), "--json", "-p", "nn=2").stdout)["error"]["message"]
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
