"""`lokki-sam generate`: regeneration keeps the user's work, --check, determinism, bad input."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support.sam import EXAMPLES, forget_module, generate_in_process, lint, load

pytestmark = pytest.mark.usefixtures("unload_modules")

FLOW_V1 = """
from lokki_sam import flow, step

@step
def fetch(limit: int = 3) -> list[int]:
    return list(range(limit))

@step
def square(x: int) -> int:
    return x * x

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def calc(limit: int = 3):
    return fetch(limit=limit).map(square).agg(total)
"""

FLOW_V2 = FLOW_V1.replace(".map(square).agg(total)", ".next(total)")  # square removed


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text(FLOW_V1)
    (tmp_path / "src" / "requirements.txt").write_text("requests\n")  # the flow's own: lokki-sam is a layer
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def generate(*args: str) -> tuple[int, str, str]:
    return generate_in_process("calc", *args)


def test_writes_template_definitions_and_events(app: Path) -> None:
    code, out, err = generate("src/calc.py")
    assert code == 0, err
    assert "wrote template.yaml" in out
    for name in ("statemachine/calc.asl.json", "events/calc/fetch.json", "events/calc/square.json"):
        assert (app / name).is_file(), name
    assert err == ""  # requirements.txt lists the flow's own dependencies only: no warning
    assert (app / "layers" / "lokki-sam" / "Makefile").is_file()


def test_warns_when_requirements_still_install_lokki_sam(app: Path) -> None:
    (app / "src" / "requirements.txt").write_text("requests\nlokki-sam>=0.1  # old projects listed it\n")
    code, _, err = generate("src/calc.py")
    assert code == 0
    assert "src/requirements.txt lists lokki-sam: remove it" in err and "runtime layer" in err


def test_output_is_deterministic_and_idempotent(app: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert generate("src/calc.py")[0] == 0
    first = (app / "template.yaml").read_bytes()
    assert generate("src/calc.py")[1].strip() == "generated files are up to date"
    assert (app / "template.yaml").read_bytes() == first
    (app / "template.yaml").unlink()
    assert generate("src/calc.py")[0] == 0
    assert (app / "template.yaml").read_bytes() == first


def test_check_fails_on_stale_and_passes_on_fresh(app: Path) -> None:
    code, out, err = generate("src/calc.py", "--check")
    assert code == 1 and "+++ b/template.yaml" in out and "stale" in err
    assert not (app / "template.yaml").exists()  # --check writes nothing
    generate("src/calc.py")
    assert generate("src/calc.py", "--check")[0] == 0
    (app / "src" / "calc.py").write_text(FLOW_V2)
    code, out, _ = generate("src/calc.py", "--check")
    assert code == 1
    assert "-  CalcSquareFunction:" in out
    assert "--- a/events/calc/square.json" in out  # the removed step's event is stale too


HAND_EDITS = {
    # a comment at the top and inside the user's resource
    "\nResources:\n": "\nResources:\n  # my queue, keep me\n  MyQueue:\n    Type: AWS::SQS::Queue  # a queue\n"
    "    Properties:\n      QueueName: !Sub ${AWS::StackName}-q\n",
    "\nOutputs:\n": "\nOutputs:\n  QueueUrl:\n    Value: !Ref MyQueue\n",
}


def _hand_edit(template: Path) -> str:
    text = template.read_text()
    text = "# my header comment\n" + text
    for anchor, addition in HAND_EDITS.items():
        assert anchor in text
        text = text.replace(anchor, addition, 1)
    # A tag and a user property on an owned function; a user Globals key; a user parameter.
    text = text.replace(
        "  CalcFetchFunction:\n    Type: AWS::Serverless::Function\n",
        "  CalcFetchFunction:\n    Type: AWS::Serverless::Function\n    DependsOn: MyQueue\n",
    )
    text = text.replace(
        "      Description: lokki-sam step calc.fetch\n",
        "      Description: lokki-sam step calc.fetch\n      Tags:\n        team: data  # owner\n"
        "      ReservedConcurrentExecutions: 5\n",
    )
    # The user's own layer joins lokki-sam's in the shared Globals list.
    ours = "    Layers:\n      - !Ref LokkiSamRuntimeLayer\n"
    assert ours in text
    text = text.replace(ours, ours + "      - !Ref MyLayerArn\n")
    text = text.replace("\nParameters:\n", "\nParameters:\n  MyLayerArn:\n    Type: String\n")
    template.write_text(text)
    return text


def test_hand_edits_survive_regeneration(app: Path) -> None:
    generate("src/calc.py")
    template = app / "template.yaml"
    _hand_edit(template)
    (app / "src" / "calc.py").write_text(FLOW_V2)
    code, out, err = generate("src/calc.py")
    assert code == 0, err
    text = template.read_text()
    for kept in (
        "# my header comment\n",
        "  # my queue, keep me\n",
        "    Type: AWS::SQS::Queue  # a queue\n",
        "QueueName: !Sub ${AWS::StackName}-q",
        "    Value: !Ref MyQueue\n",
        "    DependsOn: MyQueue\n",
        "        team: data  # owner\n",
        "      ReservedConcurrentExecutions: 5\n",
        "      - !Ref LokkiSamRuntimeLayer\n      - !Ref MyLayerArn\n",
        "  MyLayerArn:\n    Type: String\n",
    ):
        assert kept in text, kept
    template_dict = load(text)
    assert "CalcSquareFunction" not in template_dict["Resources"]  # the removed step's function is gone
    assert not (app / "events" / "calc" / "square.json").exists()
    assert "removed events/calc/square.json" in out
    assert set(template_dict["Resources"]) >= {"MyQueue", "CalcFetchFunction", "CalcTotalFunction"}
    assert [f for f in lint(text) if not f.startswith("I")] == []  # (I3011: the user's queue has no DeletionPolicy)
    # and it is a fixed point
    assert generate("src/calc.py", "--check")[0] == 0


def test_owned_property_edits_are_restored(app: Path) -> None:
    generate("src/calc.py")
    template = app / "template.yaml"
    text = template.read_text()
    template.write_text(text.replace("LOKKI_STEP: fetch", "LOKKI_STEP: hacked"))
    code, out, _ = generate("src/calc.py", "--check")
    assert code == 1 and "-          LOKKI_STEP: hacked" in out
    generate("src/calc.py")
    assert template.read_text() == text


def test_user_resource_with_a_generated_id_is_refused(app: Path) -> None:
    generate("src/calc.py")
    template = app / "template.yaml"
    text = template.read_text().replace(
        "\nResources:\n", "\nResources:\n  CalcStateMachineRole:\n    Type: AWS::SQS::Queue\n"
    )
    template.write_text(text)
    code, _, err = generate("src/calc.py")
    assert code == 2
    assert "Resources.CalcStateMachineRole clashes with the role SAM creates for CalcStateMachine" in err
    text = text.replace("  CalcStateMachineRole:\n", "  MyRole:\n")
    # An output with a generated ID that the template does not record as lokki-sam's is the user's.
    assert "\n        - CalcStateMachineArn\n" in text
    template.write_text(text.replace("\n        - CalcStateMachineArn\n", "\n"))
    code, _, err = generate("src/calc.py")
    assert code == 2
    assert "Outputs.CalcStateMachineArn is already defined and not generated by lokki-sam" in err
    assert "Traceback" not in err


def test_unparseable_template_names_the_line(app: Path) -> None:
    (app / "template.yaml").write_text("Resources:\n  A:\n    Type: [unclosed\n  B: x\n")
    code, _, err = generate("src/calc.py")
    assert code == 2
    assert "template.yaml:" in err and "cannot parse the existing template" in err
    assert "Traceback" not in err


def test_template_without_the_serverless_transform_is_refused(app: Path) -> None:
    (app / "template.yaml").write_text("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n")
    code, _, err = generate("src/calc.py")
    assert code == 0, err  # a missing Transform is added
    assert load((app / "template.yaml").read_text())["Transform"] == "AWS::Serverless-2016-10-31"
    (app / "template.yaml").write_text("Transform: AWS::LanguageExtensions\nResources: {}\n")
    code, _, err = generate("src/calc.py")
    assert code == 2 and "AWS::Serverless-2016-10-31" in err


def test_names_that_collide_after_sanitizing_are_refused(app: Path) -> None:
    (app / "src" / "clash.py").write_text(
        textwrap.dedent(
            """
            from lokki_sam import flow, step

            @step
            def get_data() -> list[int]:
                return [1]

            @step
            def getData(xs: list[int]) -> int:
                return 1

            @flow
            def clash():
                return get_data().next(getData)
            """
        )
    )
    forget_module("clash")
    code, _, err = generate("src/clash.py")
    assert code == 2
    assert "step 'clash.getData' and step 'clash.get_data' both map to the logical ID 'ClashGetDataFunction'" in err


def test_flow_module_outside_code_uri(app: Path) -> None:
    code, _, err = generate("src/calc.py", "--code-uri", "elsewhere")
    assert code == 2
    assert "is not inside the functions' CodeUri" in err and "--code-uri" in err


def test_import_failure_is_a_clear_error(app: Path) -> None:
    (app / "src" / "broken.py").write_text("import nonexistent_dependency_xyz\n")
    code, _, err = generate("src/broken.py")
    assert code == 2
    assert "nonexistent_dependency_xyz" in err and "Traceback" not in err


def test_scheduled_flow_needs_defaults(app: Path) -> None:
    (app / "src" / "sched.py").write_text(
        "from lokki_sam import flow, step\n\n@step\ndef go(n: int) -> int:\n    return n\n\n"
        "@flow(schedule='rate(1 hour)')\ndef sched(n: int):\n    return go(n=n)\n"
    )
    code, _, err = generate("src/sched.py")
    assert code == 2 and "parameter(s) n have no default" in err


def test_several_refs_and_config(app: Path) -> None:
    (app / "lokki.toml").write_text('flow = "src/calc.py"\ntemplate = "infra/template.yaml"\ncode_uri = "../src"\n')
    code, _, err = generate()
    assert code == 0, err
    assert (app / "infra" / "template.yaml").is_file()
    assert (app / "infra" / "statemachine" / "calc.asl.json").is_file()
    assert "CodeUri: ../src" in (app / "infra" / "template.yaml").read_text()


def test_cli_subprocess_help_and_exit_codes(app: Path) -> None:
    lokki = str(Path(os.sys.executable).with_name("lokki-sam"))  # type: ignore[attr-defined]
    env = {**os.environ, "HOME": str(app)}
    done = subprocess.run([lokki, "generate", "--help"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0 and "--check" in done.stdout and "--code-uri" in done.stdout
    done = subprocess.run([lokki, "generate", "nope.py"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 2 and "file not found: nope.py" in done.stderr and "Traceback" not in done.stderr


def test_examples_generate_together(tmp_path: Path) -> None:
    """All example flows in one template (several modules, several flows)."""
    from tests.support.sam import make_app

    text = make_app(tmp_path, EXAMPLES).read_text()
    for example in EXAMPLES:
        forget_module(example.stem)
    template = load(text)
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine"]
    assert len(machines) >= len(EXAMPLES)


TWO_FLOWS = """
from lokki_sam import flow, step

@step
def one() -> int:
    return 1

@step
def many(n: int = 3) -> list[int]:
    return list(range(n))

@step
def dbl(x: int) -> int:
    return 2 * x

@flow
def first():
    return one()

@flow
def second(n: int = 3):
    return many(n=n).map(dbl)
"""


def test_removing_a_flow_removes_its_resources_outputs_and_files(app: Path) -> None:
    (app / "src" / "two.py").write_text(TWO_FLOWS)
    forget_module("two")
    assert generate("src/two.py")[0] == 0
    assert (app / "statemachine" / "second.asl.json").is_file()
    before = load((app / "template.yaml").read_text())
    assert before["Metadata"]["lokki-sam"]["flows"] == {"first": "src/two.py:first", "second": "src/two.py:second"}
    forget_module("two")
    kept = generate("src/two.py:first")  # one flow given: the other is regenerated, not dropped
    assert (
        kept[0] == 0
        and load((app / "template.yaml").read_text())["Metadata"]["lokki-sam"]["flows"]
        == (before["Metadata"]["lokki-sam"]["flows"])
    )
    forget_module("two")
    code, out, err = generate("src/two.py:first", "--prune")
    assert code == 0, err
    assert "removed flow 'second' (--prune)" in out
    after = load((app / "template.yaml").read_text())
    assert not [rid for rid in after["Resources"] if rid.startswith("Second")]
    assert "SecondStateMachineArn" not in after["Outputs"] and "FirstStateMachineArn" in after["Outputs"]
    assert not (app / "statemachine" / "second.asl.json").exists()
    assert list((app / "events" / "second").glob("*.json")) == []
    assert "removed statemachine/second.asl.json" in out
    assert after["Description"] == "lokki-sam flows: first"
    assert lint((app / "template.yaml").read_text()) == []


def test_default_runtime_is_the_nearest_lambda_python() -> None:
    from lokki_sam.compile.sam import default_runtime

    assert default_runtime((3, 11)) == "python3.11"
    assert default_runtime((3, 13)) == "python3.13"
    assert default_runtime((3, 9)) == "python3.10"
    assert default_runtime((3, 15)) == "python3.13"


def test_bad_runtime_and_long_flow_name(app: Path) -> None:
    (app / "lokki.toml").write_text('runtime = "python2.7"\n')
    code, _, err = generate("src/calc.py")
    assert code == 2 and "runtime 'python2.7'" in err and "python3.12" in err
    (app / "lokki.toml").unlink()
    long_name = "f" * 51
    (app / "src" / "longname.py").write_text(FLOW_V1.replace("@flow\n", f"@flow(name='{long_name}')\n"))
    code, _, err = generate("src/longname.py")
    assert code == 2 and "longer than 50 characters" in err
