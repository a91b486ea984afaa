"""invoke/runs/result without an emulator: stack and settings resolution, parameter encoding,
failure parsing, and the clear errors for a missing region, credentials, profile, endpoint,
stack or flow (the AWS side by moto, in-process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from lokki_sam import names
from lokki_sam.cli import cli
from lokki_sam.cloud.exception_log import _find_class
from lokki_sam.cloud.invoke import execution_input, new_execution_name
from lokki_sam.cloud.stack import read_samconfig, resolve_target
from lokki_sam.cloud.status import execution_arn, map_label, parse_cause
from lokki_sam.config import load_config
from lokki_sam.errors import ConfigError, LokkiError
from lokki_sam.params import params_from_signature, resolve_params
from tests.support.ministack import free_port

BIRDS = Path(__file__).resolve().parent.parent / "examples" / "birds.py"


def invoke_cli(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd and HOME in tmp_path, no AWS config files, no instance metadata lookups."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return tmp_path


# ----------------------------------------------------------------------------- settings


def write_samconfig(root: Path) -> None:
    (root / "samconfig.toml").write_text(
        "version = 0.1\n"
        '[default.global.parameters]\nstack_name = "from-global"\nregion = "eu-west-1"\n'
        '[default.deploy.parameters]\nstack_name = "from-deploy"\n'
        '[local.deploy.parameters]\nstack_name = "local-stack"\nregion = "us-east-1"\nprofile = "dev"\n'
    )


def test_samconfig_deploy_parameters_win_over_global(tmp_path: Path) -> None:
    write_samconfig(tmp_path)
    assert read_samconfig(tmp_path / "samconfig.toml", "default") == {
        "stack_name": "from-deploy",
        "region": "eu-west-1",
    }
    assert read_samconfig(tmp_path / "samconfig.toml", "local")["profile"] == "dev"
    assert read_samconfig(tmp_path / "samconfig.toml", "missing") == {}
    assert read_samconfig(tmp_path / "nope.toml", "default") == {}


def test_samconfig_invalid_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "samconfig.toml").write_text("[default\n")
    with pytest.raises(ConfigError, match=r"samconfig\.toml"):
        read_samconfig(tmp_path / "samconfig.toml", "default")


def test_stack_name_option_then_samconfig_then_lokki_toml(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text('stack_name = "from-lokki"\nregion = "ap-south-1"\n')
    config = load_config(tmp_path, environ={})
    common: dict[str, Any] = {"region": None, "profile": None, "endpoint_url": None}
    samconfig = tmp_path / "samconfig.toml"
    assert resolve_target(config, stack_name=None, samconfig=samconfig, **common).stack_name == "from-lokki"
    write_samconfig(tmp_path)
    target = resolve_target(config, stack_name=None, samconfig=samconfig, **common)
    assert (target.stack_name, target.region) == ("from-deploy", "eu-west-1")
    local = resolve_target(config, stack_name=None, samconfig=samconfig, config_env="local", **common)
    assert (local.stack_name, local.region, local.profile) == ("local-stack", "us-east-1", "dev")
    given = resolve_target(config, stack_name="mine", samconfig=samconfig, **common | {"region": "us-west-2"})
    assert (given.stack_name, given.source, given.region) == ("mine", "--stack-name", "us-west-2")


def test_no_stack_name_anywhere_says_how_to_give_one(isolated: Path) -> None:
    result = invoke_cli("runs")
    assert result.exit_code == 2
    assert "which stack?" in result.output and "--stack-name" in result.output


# ------------------------------------------------------------------------ params, names


def test_execution_input_is_json_of_the_coerced_given_params() -> None:
    def f(n: int = 1, names: list[str] | None = None, tags: set[str] | None = None, price: Decimal = Decimal(1)):
        pass

    params = params_from_signature(f)
    raw = {"n": "3", "names": "a,b", "tags": "y,x", "price": "1.50"}
    resolved = resolve_params(params, raw, where="test")
    given = execution_input(raw, resolved)
    assert given == {"n": 3, "names": ["a", "b"], "tags": ["x", "y"], "price": "1.50"}
    assert json.loads(json.dumps(given)) == given
    # What the runtime makes of it is what the local runner makes of the raw text.
    assert resolve_params(params, given, where="cloud") == resolved


def test_execution_names_are_run_ids_within_the_step_functions_limit() -> None:
    assert new_execution_name("birds").startswith("birds-")
    long = new_execution_name("f" * 100)
    # Room is kept for the name of its resumes, `<run id>.resume-<n>`, within the 80 characters.
    assert len(long) == 68 and long.startswith("f" * 45)
    assert len(names.resume_execution_name(long, 9999)) == 80
    assert names.run_of_execution(names.resume_execution_name(long, 12)) == (long, 12)
    assert names.run_of_execution(long) == (long, 0)


def test_arns_and_labels() -> None:
    sm = "arn:aws:states:us-east-1:123456789012:stateMachine:stack-birds"
    assert execution_arn(sm, "birds-1") == "arn:aws:states:us-east-1:123456789012:execution:stack-birds:birds-1"
    run = "arn:aws:states:us-east-1:123456789012:mapRun:stack-birds/map-flap:0d5e-11"
    assert map_label(run) == "map-flap"


def test_lambda_causes_are_decoded() -> None:
    cause = json.dumps({"errorMessage": "bad bird", "errorType": "ValueError", "stackTrace": []})
    assert parse_cause("ValueError", cause) == ("ValueError", "bad bird")
    assert parse_cause("States.Timeout", "took too long ") == ("States.Timeout", "took too long")
    assert parse_cause("", "") == ("", "")


def test_exception_class_from_a_traceback_in_the_log() -> None:
    lines = [
        "START RequestId: 1",
        '  File "/var/task/numeric.py", line 96, in standardise',
        "statistics.StatisticsError: fmean requires at least one data point",
        "[ERROR] ValueError: other",
        "END RequestId: 1",
    ]
    assert _find_class(lines, "fmean requires at least one data point") == "StatisticsError"
    assert _find_class(lines, "other") == "ValueError"
    assert _find_class(lines, "missing") is None
    # LogFormat JSON: Lambda's runtime and lokki-sam's write records naming the class.
    record = {"level": "ERROR", "message": "step failed", "errorType": "mod.BadInput", "errorMessage": "no rows"}
    assert _find_class([json.dumps(record), "not json {"], "no rows") == "BadInput"
    assert _find_class([json.dumps(record)], "other rows") is None


# ---------------------------------------------------------------- errors before or at AWS


def test_bad_params_are_refused_before_any_aws_call(isolated: Path) -> None:
    result = invoke_cli("invoke", str(BIRDS), "-p", "limit=lots", "--stack-name", "s")
    assert result.exit_code == 2
    assert "parameter 'limit' expects int" in result.output
    assert "region" not in result.output  # never got as far as AWS


def test_no_region_says_how_to_set_one(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    result = invoke_cli("runs", "--stack-name", "s")
    assert result.exit_code == 2
    assert "no AWS region configured" in result.output and "--region" in result.output


def test_no_credentials_says_how_to_configure_them(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    result = invoke_cli("runs", "--stack-name", "s", "--endpoint-url", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert "no AWS credentials found" in result.output and "aws configure" in result.output
    assert "Traceback" not in result.output


def test_unknown_profile_lists_the_profiles(isolated: Path) -> None:
    (isolated / "aws-config").write_text("[profile dev]\nregion = us-east-1\n")
    result = invoke_cli("runs", "--stack-name", "s", "--profile", "prod")
    assert result.exit_code == 2
    assert "AWS profile 'prod' (--profile) not found" in result.output and "dev" in result.output


def test_unreachable_endpoint_is_named(isolated: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    result = invoke_cli("runs", "--stack-name", "s", "--endpoint-url", endpoint)
    assert result.exit_code == 2
    assert f"cannot reach {endpoint}" in result.output
    assert "lokki-sam emulator start" in result.output


@pytest.fixture
def moto_stack(isolated: Path) -> Iterator[Any]:
    """A stack in moto's CloudFormation with the outputs `lokki-sam generate` gives one flow."""
    import boto3
    from moto import mock_aws

    template = {
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {
            "BirdsStateMachineArn": {"Value": "arn:aws:states:us-east-1:123456789012:stateMachine:s-birds"},
            "ArtifactBucketName": {"Value": {"Ref": "Bucket"}},
        },
    }
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name="us-east-1")
        cfn.create_stack(StackName="examples", TemplateBody=json.dumps(template))
        cfn.create_stack(StackName="other", TemplateBody=json.dumps({"Resources": template["Resources"]}))
        yield cfn


def test_unknown_stack_lists_the_stacks(moto_stack: Any) -> None:
    result = invoke_cli("runs", "--stack-name", "exmaples")
    assert result.exit_code == 2
    assert "no stack 'exmaples' in region us-east-1" in result.output
    assert "examples, other" in result.output


def test_flow_not_in_the_stack_lists_the_deployed_flows(moto_stack: Any) -> None:
    result = invoke_cli("runs", "wordcount", "--stack-name", "examples")
    assert result.exit_code == 2
    assert "stack 'examples' has no state machine for flow 'wordcount'" in result.output
    assert "flows deployed there: Birds" in result.output


def test_stack_without_lokki_outputs(moto_stack: Any) -> None:
    result = invoke_cli("runs", "--stack-name", "other")
    assert result.exit_code == 2
    assert "stack 'other' has no lokki-sam flows" in result.output


def test_no_flow_given_and_none_configured(isolated: Path) -> None:
    result = invoke_cli("invoke", "--stack-name", "s")
    assert result.exit_code == 2
    assert "which flow?" in result.output


def test_flow_name_looked_up_in_the_configured_module(isolated: Path) -> None:
    from lokki_sam.cloud.flows import flow_for_run, resolve_flow

    (isolated / "lokki.toml").write_text(f'flow = "{BIRDS}"\n')
    config = load_config(isolated, environ={})
    assert resolve_flow("birds", config).name == "birds"
    assert flow_for_run("birds-20260101T000000-abcdef", None, config).name == "birds"
    with pytest.raises(LokkiError, match="flows there: birds"):
        resolve_flow("bird", config)


@pytest.mark.parametrize(
    ("status", "error", "said"),
    [
        ("TIMED_OUT", "States.Timeout", "timed out"),
        ("ABORTED", "Stopped", "was aborted"),
        ("FAILED", "States.Runtime", "failed"),
    ],
)
def test_unsuccessful_runs_exit_1_saying_what_happened(status: str, error: str, said: str) -> None:
    from lokki_sam.cloud.failure import ExecutionFailed, failure_error
    from lokki_sam.cloud.stack import Deployment
    from lokki_sam.cloud.status import Failure
    from lokki_sam.loader import load_flow

    graph = load_flow(str(BIRDS)).graph
    dep = Deployment(aws=None, stack_name="s", outputs={})  # type: ignore[arg-type]  # no AWS call needed
    exc = failure_error(dep, graph, "birds-1", Failure(status, None, error, "by the operator"), "arn:x")
    assert isinstance(exc, ExecutionFailed) and exc.exit_code == 1
    assert exc.message.splitlines()[0].startswith(f"run birds-1 {said}")
    assert f"error: {error}: by the operator" in exc.message


def view_of(terminal: bool, as_json: bool = False, interval: int = 10) -> tuple[Any, Any]:
    import io

    from rich.console import Console

    from lokki_sam.cli.view import ExecutionView

    view = ExecutionView(as_json, totals=lambda: {"map-flap": 200}, progress_interval=interval)
    out = io.StringIO()
    view.console = Console(file=out, force_terminal=terminal, width=120, color_system=None, highlight=False)
    view.live = terminal
    return view, out


def started_so_far(done: int, status: str = "RUNNING") -> Any:
    """What DescribeMapRun reports while a 200-item map starts its children: `total` is the items
    started so far (113 of 200 here), not the map's size."""
    from lokki_sam.cloud.status import MapProgress

    return MapProgress("map-flap", status, total=min(200, done + 16), succeeded=done, failed=0, running=16)


def follow(view: Any, steps: range) -> None:
    from lokki_sam.cloud.status import Snapshot

    view.started("birds", "birds-1", "arn:x", {"limit": 200})
    for done in steps:
        view.update(Snapshot("RUNNING", ["Start flow", "get_birds"], ["map-flap"], [started_so_far(done)]))
    last = started_so_far(200, "SUCCEEDED")
    view.update(Snapshot("SUCCEEDED", ["Start flow", "get_birds", "map-flap", "join"], [], [last]))
    view.finished("birds-1", "SUCCEEDED", 1.5, [last])


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_view_shows_each_map_against_its_real_total(terminal: bool) -> None:
    view, out = view_of(terminal)
    follow(view, range(0, 200, 3))  # 67 polls
    text = out.getvalue()
    assert "done get_birds" in text and "done join" in text and "Start flow" not in text
    assert "map-flap: 200/200 items succeeded, 0 failed" in text
    assert "run birds-1 succeeded in 1.5 s" in text
    assert "/113" not in text and "/19" not in text  # never the items started so far as the total
    if terminal:  # one bar for the map, redrawn in place
        assert list(view.tasks) == ["map-flap"] and view.bars is None  # stopped when the run finished
    else:  # a line each 10% of the items, as a local run's log shows
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith("map-flap ")]
        crossed = [-(-20 * k // 3) * 3 for k in range(1, 10)]  # the first poll past each 10% (polls every 3)
        assert lines == [f"map-flap {done}/200 ({done // 2}%)" for done in crossed]


def test_progress_view_json_lines_carry_the_real_total(capsys: pytest.CaptureFixture[str]) -> None:
    view, _ = view_of(False, as_json=True)
    follow(view, range(0, 200, 50))
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    progress = [e for e in events if e["event"] == "map_progress"]
    assert [e["succeeded"] for e in progress] == [0, 50, 100, 150, 200]
    assert {e["total"] for e in progress} == {200}
