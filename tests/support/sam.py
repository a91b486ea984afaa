"""Helpers for the SAM template tests: generate an app, lint it, transform it, evaluate intrinsics."""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# Imported here, not lazily: tests that use the `unload_modules` fixture would otherwise drop
# half-initialised cfn-lint / YAML modules between tests (their constructors are registered globally).
import cfnlint.api
import samtranslator.translator.transform
import samtranslator.yaml_helper

from lokki_sam.config import load_config
from lokki_sam.generate import plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.py") if not p.name.startswith("_"))
SHAPES_FILE = REPO / "tests" / "flows" / "shapes.py"
PACKAGING_FILE = REPO / "tests" / "flows" / "packaging.py"  # zip and image steps in one flow

ECS_INSTANCE_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"
ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "stack"
BUCKET = "stack-artifactbucket-1"


def forget_module(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def make_app(
    root: Path, sources: Iterable[Path], refs: Iterable[str] | None = None, target: str = "sam", **config: Any
) -> Path:
    """Copy flow modules into root/src and run `generate` (in-process) there; returns template.yaml
    (serverless.yml with `target` "serverless")."""
    from lokki_sam.loader import load_flows

    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    files = []
    for source in sources:
        shutil.copy(source, src / source.name)
        if source.parent.joinpath("data").is_dir() and not (src / "data").exists():
            shutil.copytree(source.parent / "data", src / "data")
        forget_module(source.stem)
        files.append(src / source.name)
    with restored_sys_path():
        graphs = [f.graph for ref in (refs or [str(p) for p in files]) for f in load_flows(ref)]
        settings = load_config(root, environ={f"LOKKI_{k.upper()}": str(v) for k, v in config.items()})
        path = root / ("serverless.yml" if target == "serverless" else "template.yaml")
        plan(graphs, path, settings, target=target).write()
    return path


@contextlib.contextmanager
def restored_sys_path() -> Iterator[None]:
    """The loader puts a flow file's folder on sys.path; a temp copy must not shadow the real module later."""
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved


def generate_in_process(module: str, *args: str) -> tuple[int, str, str]:
    """`lokki-sam generate ARGS` through click's runner, after forgetting the flow `module`
    (a test edits it between calls): (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from lokki_sam.cli import cli

    forget_module(module)
    with restored_sys_path():
        result = CliRunner(mix_stderr=False).invoke(cli, ["generate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def lint(text: str) -> list[str]:
    """cfn-lint findings of every level (errors, warnings, informational)."""
    matches = cfnlint.api.lint(text, config=cfnlint.api.ManualArgs(regions=[REGION], include_checks=["I"]))
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]


def load(text: str) -> dict[str, Any]:
    return dict(samtranslator.yaml_helper.yaml_parse(text))


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:  # the template uses inline statements only
        return {}


def transform(text: str) -> dict[str, Any]:
    """samtranslator, in-process, after replacing local paths with s3:// URIs (as `sam package` does)."""
    template = load(text)
    if "CodeUri" in template["Globals"]["Function"]:  # absent when every function is an image
        template["Globals"]["Function"]["CodeUri"] = "s3://deploy-bucket/code.zip"
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function" and resource["Properties"].get("PackageType") == "Image":
            # what `sam deploy --resolve-image-repos` sets: the image pushed to the function's repository
            uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/stack-{logical_id.lower()}:latest"
            resource["Properties"]["ImageUri"] = uri
        if resource["Type"] == "AWS::Serverless::StateMachine":
            name = resource["Properties"]["DefinitionUri"]
            resource["Properties"]["DefinitionUri"] = f"s3://deploy-bucket/{name}"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            name = resource["Properties"]["ContentUri"]
            resource["Properties"]["ContentUri"] = f"s3://deploy-bucket/{name}.zip"
    return dict(samtranslator.translator.transform.transform(template, {}, _NoManagedPolicies()))


def evaluate(value: Any, resources: Mapping[str, Any], create_bucket: bool = True, stack: str = STACK) -> Any:
    """Resolve intrinsics to the strings a deployed stack would see (fixed account/region; `stack`)."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": stack}
    pseudo["AWS::URLSuffix"] = "amazonaws.com"

    def ref(name: str) -> str:
        if name in pseudo:
            return pseudo[name]
        if name == "ArtifactBucket":
            return BUCKET
        if name == "ExistingArtifactBucket":
            return "" if create_bucket else "existing-bucket"
        kind = resources[name]["Type"]
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        return name

    def get_att(name: str, attr: str) -> str:
        kind = resources[name]["Type"]
        if kind == "AWS::Lambda::Function" and attr == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if kind == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{BUCKET}"
        if kind == "AWS::IAM::Role" and attr == "Arn":
            return f"arn:aws:iam::{ACCOUNT}:role/{name}"
        if kind == "AWS::Logs::LogGroup" and attr == "Arn":
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"
        if attr == "Arn":
            return f"arn:aws:{kind}:{name}"
        raise AssertionError(f"unexpected GetAtt {name}.{attr}")

    def go(v: Any) -> Any:
        if isinstance(v, list):
            return [go(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            ((key, arg),) = v.items()
            if key == "Ref":
                return ref(arg)
            if key == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return get_att(name, attr)
            if key == "Fn::If":
                cond, yes, no = arg
                assert cond == "CreateArtifactBucket", cond
                return go(yes if create_bucket else no)
            if key == "Fn::Equals":
                a, b = go(arg[0]), go(arg[1])
                return a == b
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                values = {k: go(x) for k, x in variables.items()}

                def repl(m: re.Match[str]) -> str:
                    name = m.group(1)
                    if name in values:
                        return str(values[name])
                    if "." in name:
                        return get_att(*name.split(".", 1))
                    return str(ref(name))

                return re.sub(r"\$\{([^}!]+)\}", repl, text)
        return {k: go(x) for k, x in v.items()}

    return go(value)


def role_statements(
    cfn: Mapping[str, Any], role_id: str, create_bucket: bool = True, stack: str = STACK
) -> list[dict[str, Any]]:
    """Every statement of a role's inline policies, intrinsics resolved, Action/Resource as lists."""
    resources = cfn["Resources"]
    role = resources[role_id]
    assert role["Type"] == "AWS::IAM::Role"
    # No managed policies (AWSLambdaBasicExecutionRole would grant logs actions on "*"), except the
    # X-Ray one SAM attaches to a state machine's role when tracing is on, and the one AWS gives
    # the ECS agent on a Batch EC2 compute environment's instances.
    managed = evaluate(role["Properties"].get("ManagedPolicyArns", []), resources, create_bucket, stack)
    assert managed in ([], ["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"], [ECS_INSTANCE_POLICY]), managed
    out = []
    for policy in role["Properties"].get("Policies", []):
        for statement in evaluate(policy["PolicyDocument"]["Statement"], resources, create_bucket, stack):
            statement = dict(statement)
            for key in ("Action", "Resource"):
                if isinstance(statement.get(key), str):
                    statement[key] = [statement[key]]
            out.append(statement)
    return out
