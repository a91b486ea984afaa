"""`osls package` of the Serverless target, against the SAM target's template, for every example flow
and the test flows: the same state machine definitions (states, map modes, retries), the same
substitutions, equivalent IAM statements and function settings.

The framework runs for real (osls and serverless-step-functions from the repository's
package.json, `npm ci`). It needs no AWS account, but it asks CloudFormation whether the layers
changed since the last deploy, so it packages `--stage local` against a moto server
(serverless-localstack points it there). SAM's side is samtranslator's transform, in-process.
Image steps are left out: the framework builds images with Docker at package time (as `sam build`).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import names
from lokki_sam.errors import LokkiError
from tests.support.moto_server import moto_endpoint
from tests.support.sam import (
    EXAMPLES,
    REGION,
    REPO,
    evaluate,
    forget_module,
    make_app,
    restored_sys_path,
    role_statements,
)
from tests.support.sam import transform as sam_transform
from tests.support.serverless import OSLS, canonical_ids, make_serverless_app, osls, osls_env, packaged

pytestmark = [pytest.mark.external, pytest.mark.usefixtures("unload_modules")]

FLOWS = REPO / "tests" / "flows"
APPS = {
    "examples": EXAMPLES,
    "test-flows": [FLOWS / "shapes.py", FLOWS / "modes.py", FLOWS / "faulty.py", FLOWS / "configured.py"],
    "batch": [FLOWS / "batch_mixed.py", FLOWS / "batch_gpu.py"],  # Batch steps on Fargate and on EC2
}
# lokki.toml of each app (the Serverless target writes the Batch compute environments' network from it).
CONFIG = {"batch": {"batch_subnets": "subnet-0123456789abcdef0", "batch_security_groups": "sg-0123456789abcdef0"}}
SERVICE = "app"
STACK = f"{SERVICE}-local"  # what `osls package --stage local` resolves the stack name to


class Built:
    """One set of flows generated for both targets; the serverless app packaged by osls."""

    def __init__(self, root: Path, sources: list[Path], endpoint: str, config: dict[str, str]) -> None:
        from lokki_sam.loader import load_flows

        sam_template = make_app(root / "sam", sources, runtime="python3.11", **config)
        self.sam_dir = sam_template.parent
        self.sam = sam_transform(sam_template.read_text())
        self.app = make_serverless_app(root / SERVICE, sources, runtime="python3.11", **config).parent
        with restored_sys_path():
            graphs = [f.graph for p in sorted((self.app / "src").glob("*.py")) for f in load_flows(str(p))]
        # Steps with a function (Lambda), and Batch steps (a job definition each).
        self.steps = {g.name: [s.name for s in g.steps if not s.options.on_batch] for g in graphs}
        self.jobs = {g.name: [s.name for s in g.steps if s.options.on_batch] for g in graphs}
        for source in sources:
            forget_module(source.stem)
        done = osls(self.app, "package", "--stage", "local", env=osls_env(root / "home", endpoint))
        assert done.returncode == 0, done.stdout + done.stderr
        self.cfn = packaged(self.app)
        self.canonical = canonical_ids(self.steps)

    def resolve(self, value: Any, template: dict[str, Any]) -> Any:
        """Intrinsics evaluated for stack STACK, the Serverless logical IDs spelled as SAM's."""
        text = json.dumps(evaluate(value, template["Resources"], stack=STACK))
        for ours, theirs in self.canonical.items():
            text = re.sub(rf"\b{ours}\b", theirs, text)
        return json.loads(text)


@pytest.fixture(scope="module", params=sorted(APPS))
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    if not OSLS.exists():
        pytest.fail("osls is not installed: run `npm ci` in the repository (package.json pins it)")
    with pytest.MonkeyPatch.context() as mp, moto_endpoint() as endpoint:
        mp.setenv("AWS_DEFAULT_REGION", REGION)  # module scope: runs before the autouse env fixture
        yield Built(
            tmp_path_factory.mktemp(request.param), APPS[request.param], endpoint, CONFIG.get(request.param, {})
        )


def test_the_same_state_machines(built: Built) -> None:
    """Each flow's definition is the very file the SAM target deploys, and its substitutions agree."""
    for flow in built.steps:
        machine = built.cfn["Resources"][names.state_machine_id(flow)]
        assert machine["Type"] == "AWS::StepFunctions::StateMachine"
        props = machine["Properties"]
        definition = json.loads(props["DefinitionString"])
        sam_definition = json.loads((built.sam_dir / "statemachine" / f"{flow}.asl.json").read_text())
        assert definition == sam_definition
        assert _modes(definition) == _modes(sam_definition) and _retries(definition) == _retries(sam_definition)
        sam_machine = built.sam["Resources"][names.state_machine_id(flow)]["Properties"]
        assert props["StateMachineName"] == f"{STACK}-{flow}"
        assert built.resolve(props["DefinitionSubstitutions"], built.cfn) == built.resolve(
            sam_machine["DefinitionSubstitutions"], built.sam
        )
        assert props["LoggingConfiguration"]["Level"] == sam_machine["LoggingConfiguration"]["Level"] == "ERROR"
        assert built.cfn["Outputs"][names.state_machine_arn_output(flow)]["Value"] == {
            "Ref": names.state_machine_id(flow)
        }


def _modes(definition: dict[str, Any]) -> list[Any]:
    return [s["ItemProcessor"]["ProcessorConfig"] for s in definition["States"].values() if s["Type"] == "Map"]


def _retries(definition: dict[str, Any]) -> dict[str, Any]:
    found = {}
    for name, state in definition["States"].items():
        for inner, task in [(name, state), *state.get("ItemProcessor", {}).get("States", {}).items()]:
            if "Retry" in task:
                found[inner] = task["Retry"]
    return found


def test_equivalent_iam_statements(built: Built) -> None:
    """Every function's role and every state machine's role grant what the SAM template's grant."""
    for flow, steps in built.steps.items():
        for step in steps:
            role = f"{names.function_id(flow, step)}Role"
            ours = built.resolve(role_statements(built.cfn, role, stack=STACK), built.cfn)
            assert ours == built.resolve(role_statements(built.sam, role, stack=STACK), built.sam), role
            function = built.cfn["Resources"][names.serverless_function_id(flow, step)]
            assert function["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        role = f"{names.state_machine_id(flow)}Role"
        ours = built.resolve(role_statements(built.cfn, role, stack=STACK), built.cfn)
        theirs = built.resolve(role_statements(built.sam, role, stack=STACK), built.sam)
        assert ours == theirs, role
    # No role of the framework's own (its default role would grant logs on every log group).
    assert "IamRoleLambdaExecution" not in built.cfn["Resources"]


def test_equivalent_batch_jobs_and_roles(built: Built) -> None:
    """Every Batch step's job definition and job role, and the stack's Batch resources, are the SAM
    template's once the framework has resolved its variables (the bucket, the stack's name)."""
    kinds = ("AWS::Batch::", "AWS::ECR::", "AWS::IAM::InstanceProfile")
    shared = sorted(k for k, r in built.sam["Resources"].items() if r["Type"].startswith(kinds))
    assert shared == sorted(k for k, r in built.cfn["Resources"].items() if r["Type"].startswith(kinds))
    assert bool(shared) == any(built.jobs.values())
    network = {  # SAM's template parameters: serverless.yml holds lokki.toml's values
        json.dumps({"Ref": names.BATCH_SUBNETS_PARAMETER}): '["subnet-0123456789abcdef0"]',
        json.dumps({"Ref": names.BATCH_SECURITY_GROUPS_PARAMETER}): '["sg-0123456789abcdef0"]',
    }
    for key in shared:
        text = json.dumps(built.sam["Resources"][key])
        for parameter, value in network.items():
            text = text.replace(parameter, value)
        theirs = built.resolve(json.loads(text), built.sam)
        assert built.resolve(built.cfn["Resources"][key], built.cfn) == theirs, key
    roles = [names.job_role_id(f, s) for f, steps in built.jobs.items() for s in steps]
    for role in [*roles, names.BATCH_EXECUTION_ROLE_ID] if roles else []:
        ours = built.resolve(role_statements(built.cfn, role, stack=STACK), built.cfn)
        assert ours == built.resolve(role_statements(built.sam, role, stack=STACK), built.sam), role


SAME_SETTINGS = ("Runtime", "Handler", "MemorySize", "Timeout", "Architectures")


def test_equivalent_function_settings(built: Built) -> None:
    for flow, steps in built.steps.items():
        for step in steps:
            ours = built.cfn["Resources"][names.serverless_function_id(flow, step)]["Properties"]
            theirs = built.sam["Resources"][names.function_id(flow, step)]["Properties"]
            for key in SAME_SETTINGS:
                assert ours.get(key) == theirs.get(key), (flow, step, key)
            env = built.resolve(ours["Environment"]["Variables"], built.cfn)
            sam_env = built.resolve(theirs["Environment"]["Variables"], built.sam)
            assert env.pop(names.ENV_MODULE) == f"src.{sam_env.pop(names.ENV_MODULE)}"  # the zip holds src/
            assert env == sam_env
            logging = {k: v for k, v in theirs["LoggingConfig"].items() if k != "LogGroup"}
            assert ours["LoggingConfig"] == logging  # JSON, the levels; the log group is the framework's
            group = built.cfn["Resources"][f"{names.serverless_function_key(flow, step)}LogGroup"]["Properties"]
            assert group["RetentionInDays"] == 30
            layers = [built.resolve(layer, built.cfn) for layer in ours["Layers"]]
            assert len(layers) == len(theirs["Layers"])  # the runtime's, and the step's own dependencies


def test_the_packages_hold_the_code_and_the_runtime(built: Built) -> None:
    artifacts = built.app / ".serverless"
    with zipfile.ZipFile(artifacts / f"{SERVICE}.zip") as code:
        files = code.namelist()
    assert files and all(f.startswith("src/") for f in files), files
    with zipfile.ZipFile(artifacts / "LokkiSamRuntime.zip") as runtime:
        assert "python/lokki_sam/runtime.py" in runtime.namelist()
    for deps in (built.app / "layers").glob("deps-*"):  # pip built it before packaging (the lokki-sam-layers plugin)
        with zipfile.ZipFile(artifacts / f"LokkiSamDeps{deps.name.removeprefix('deps-')}.zip") as layer:
            assert "python/six.py" in layer.namelist() and "requirements.txt" not in layer.namelist()


def test_the_schedule(built: Built) -> None:
    rules = [r for r in built.cfn["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    scheduled = [f for f in built.steps if f == "configured"]
    assert len(rules) == len(scheduled)
    for rule in rules:
        assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"
        assert rule["Properties"]["Targets"][0]["Input"] == "{}"  # the flow's defaults apply


def test_a_bad_serverless_yml_fails_generate_not_the_framework(tmp_path: Path) -> None:
    """The framework's own errors are not lokki-sam's to catch; generate refuses what it cannot merge."""
    (tmp_path / "serverless.yml").write_text("service: x\nplugins:\n  - serverless-offline\n")
    with pytest.raises(LokkiError, match="plugins does not list serverless-step-functions"):
        make_serverless_app(tmp_path, [EXAMPLES[0]])
