"""`lokki-sam generate --target serverless`: serverless.yml from the same model as template.yaml.

The regeneration catalogue of the SAM template's tests (test_generate.py), for serverless.yml:
user keys, comments and entries survive; owned values are rewritten and a user's edit of one is
reported; --check, --prune, determinism; bad input refused with nothing written. The framework
itself runs in test_serverless_package.py (osls package) and test_serverless_journey.py (deploy).
"""

from __future__ import annotations

import ast
import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from lokki_sam.compile import model, serverless
from lokki_sam.compile.serverless_merge import LAYERS_PLUGIN
from tests.flows.shapes import SHAPES
from tests.support.sam import EXAMPLES, REPO, forget_module
from tests.support.serverless import generate as generate_in
from tests.test_generate import FLOW_V1, FLOW_V2  # the same flow as the SAM template's tests

pytestmark = pytest.mark.usefixtures("unload_modules")

GOLDEN = Path(__file__).parent / "golden" / "serverless"


class Loader(yaml.SafeLoader):
    """serverless.yml with CloudFormation's short-form tags, read as long-form intrinsics."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    key = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: object = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {key: value}


Loader.add_multi_constructor("!", _tag)


def load(text: str) -> dict:
    return yaml.load(text, Loader=Loader)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    root = tmp_path / "calc-app"
    (root / "src").mkdir(parents=True)
    (root / "src" / "calc.py").write_text(FLOW_V1)
    return root


def generate(root: Path, *args: str) -> tuple[int, str, str]:
    return generate_in(root, *args, module="calc")


def listing(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ writing


def test_writes_serverless_yml_definitions_events_runtime_layer_and_package_json(app: Path) -> None:
    code, out, err = generate(app, "src/calc.py")
    assert code == 0, err
    assert "wrote serverless.yml" in out and "wrote layers/lokki-sam/python/" in out
    for name in (
        "statemachine/calc.asl.json",
        "events/calc/fetch.json",
        "layers/lokki-sam/python/lokki_sam/runtime.py",
    ):
        assert (app / name).is_file(), name
    assert not (app / "template.yaml").exists() and not (app / "events" / "env.json").exists()
    config = load((app / "serverless.yml").read_text())
    assert config["service"] == "calc-app" and config["provider"]["name"] == "aws"
    assert config["plugins"] == ["serverless-step-functions", "serverless-localstack"]
    machine = config["stepFunctions"]["stateMachines"]["calc"]
    assert machine["definition"] == "${file(statemachine/calc.asl.json)}"  # the SAM target's very file
    assert machine["id"] == "CalcStateMachine" and machine["role"] == {"Fn::GetAtt": ["CalcStateMachineRole", "Arn"]}
    function = config["functions"]["CalcFetch"]
    assert function["environment"]["LOKKI_MODULE"] == "src.calc"  # the framework zips the service folder
    assert function["role"] == "CalcFetchFunctionRole" and function["layers"] == [{"Ref": "LokkiSamRuntimeLambdaLayer"}]
    package = json.loads((app / "package.json").read_text())
    assert package["devDependencies"] == serverless.NPM_PINS
    assert err == ""


def test_pinned_versions_are_the_ones_the_tests_run() -> None:
    root = json.loads((REPO / "package.json").read_text())["devDependencies"]
    assert {name: root[name] for name in serverless.NPM_PINS} == serverless.NPM_PINS


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_matches_golden(tmp_path: Path, example: Path) -> None:
    """The rendered serverless.yml of every example, byte for byte (refresh: UPDATE_GOLDEN=1)."""
    from tests.support.serverless import make_serverless_app

    path = make_serverless_app(tmp_path / "app", [example], runtime="python3.11")
    forget_module(example.stem)
    golden = GOLDEN / example.stem / "serverless.yml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(path.read_text())
    assert path.read_text() == golden.read_text()
    # The definitions are the SAM target's (tests/golden/<example>/ was generated from the same model).
    for definition in (tmp_path / "app" / "statemachine").glob("*.asl.json"):
        assert definition.read_text() == (REPO / "statemachine" / definition.name).read_text()


def test_output_is_deterministic_and_idempotent(app: Path) -> None:
    assert generate(app, "src/calc.py")[0] == 0
    first = listing(app)
    assert generate(app, "src/calc.py")[1].strip() == "generated files are up to date"
    (app / "serverless.yml").unlink()
    assert generate(app, "src/calc.py")[0] == 0
    assert listing(app) == first


def test_check_fails_on_stale_and_passes_on_fresh(app: Path) -> None:
    code, out, err = generate(app, "src/calc.py", "--check")
    assert code == 1 and "+++ b/serverless.yml" in out and "stale" in err
    assert not (app / "serverless.yml").exists()  # --check writes nothing
    generate(app, "src/calc.py")
    assert generate(app, "src/calc.py", "--check")[0] == 0
    (app / "src" / "calc.py").write_text(FLOW_V2)
    code, out, _ = generate(app, "src/calc.py", "--check")
    assert code == 1 and "-  CalcSquare:" in out and "--- a/events/calc/square.json" in out


# ------------------------------------------------------------------------------ regeneration

HAND_EDITS = (
    # (anchor, replacement): comments, the user's own function, plugin, custom key, pattern,
    # resource and output; user keys inside owned entries; a user layer in an owned function's list.
    ("service: calc-app\n", "# my header comment\nservice: calc-app\n"),
    ("provider:\n  name: aws\n", "provider:\n  name: aws\n  region: eu-west-1  # ours\n  stage: ${opt:stage, 'dev'}\n"),
    ("  - serverless-localstack\n", "  - serverless-localstack\n  - serverless-prune-plugin\n"),
    ("custom:\n", "custom:\n  team: data  # who to call\n"),
    ("\n    - '!**/__pycache__/**'\n", "\n    - '!**/__pycache__/**'\n    - handlers/**\n"),
    (
        "\nfunctions:\n",
        "\nfunctions:\n  hello:  # my own function\n    handler: handlers/hello.main\n    runtime: python3.12\n",
    ),
    (
        "    description: lokki-sam step calc.fetch\n",
        "    description: lokki-sam step calc.fetch\n    reservedConcurrency: 5\n"
        "    tags:\n      team: data  # owner\n",
    ),
    (
        "      - !Ref LokkiSamRuntimeLambdaLayer\n",
        "      - !Ref LokkiSamRuntimeLambdaLayer\n      - arn:aws:lambda:us-east-1:123456789012:layer:mine:1\n",
    ),
    (
        "      type: STANDARD\n",
        "      type: STANDARD\n      alarms:\n        topics:\n          ok: arn:aws:sns:us-east-1:123456789012:ok\n",
    ),
    (
        "\n  Resources:\n",
        "\n  Resources:\n    # my queue, keep me\n    MyQueue:\n      Type: AWS::SQS::Queue  # a queue\n",
    ),
    ("\n  Outputs:\n", "\n  Outputs:\n    QueueUrl:\n      Value: !Ref MyQueue\n"),
)


def _hand_edit(path: Path) -> None:
    text = path.read_text()
    for anchor, replacement in HAND_EDITS:
        assert anchor in text, anchor
        text = text.replace(anchor, replacement, 1)
    path.write_text(text)


def test_hand_edits_survive_regeneration(app: Path) -> None:
    assert generate(app, "src/calc.py")[0] == 0
    path = app / "serverless.yml"
    _hand_edit(path)
    (app / "src" / "calc.py").write_text(FLOW_V2)
    code, out, err = generate(app, "src/calc.py")
    assert code == 0, err
    assert "edited" not in err  # nothing lokki-sam owns was touched
    text = path.read_text()
    for _, replacement in HAND_EDITS:
        for line in replacement.splitlines():
            assert line in text, line
    config = load(text)
    assert set(config["functions"]) == {"hello", "CalcFetch", "CalcTotal"}  # the removed step's function is gone
    assert "CalcSquareFunctionRole" not in config["resources"]["Resources"]
    assert config["functions"]["CalcFetch"]["layers"][1] == "arn:aws:lambda:us-east-1:123456789012:layer:mine:1"
    assert not (app / "events" / "calc" / "square.json").exists() and "removed events/calc/square.json" in out
    assert generate(app, "src/calc.py", "--check")[0] == 0  # a fixed point


def test_owned_edits_are_restored_and_reported(app: Path) -> None:
    generate(app, "src/calc.py")
    path = app / "serverless.yml"
    text = path.read_text()
    path.write_text(text.replace("    memorySize: 512\n", "    memorySize: 2048\n", 1))
    code, out, err = generate(app, "src/calc.py", "--check")
    assert code == 1 and "-    memorySize: 2048" in out
    assert "functions.CalcFetch.memorySize was edited" in err and "2048" in err  # reported, not silently lost
    code, _, err = generate(app, "src/calc.py")
    assert code == 0 and "functions.CalcFetch.memorySize was edited" in err and "(yours: 2048)" in err
    assert path.read_text() == text
    assert generate(app, "src/calc.py")[2] == ""  # said once: the digest now matches again


TWO_FLOWS = """
from lokki_sam import flow, step

@step
def one() -> int:
    return 1

@step(requirements=["six==1.16.0"])
def many(n: int = 3) -> list[int]:
    return list(range(n))

@step
def dbl(x: int) -> int:
    return 2 * x

@flow
def first():
    return one()

@flow(schedule="rate(1 day)")
def second(n: int = 3):
    return many(n=n).map(dbl)
"""


def test_prune_removes_a_flow_its_entries_layers_and_files(app: Path) -> None:
    (app / "src" / "two.py").write_text(TWO_FLOWS)
    assert generate_in(app, "src/two.py", module="two")[0] == 0
    config = load((app / "serverless.yml").read_text())
    assert config["custom"]["lokki-sam"]["flows"] == {"first": "src/two.py:first", "second": "src/two.py:second"}
    assert LAYERS_PLUGIN in config["plugins"] and (app / ".serverless_plugins" / f"{LAYERS_PLUGIN}.js").is_file()
    schedule = config["stepFunctions"]["stateMachines"]["second"]["events"][0]["schedule"]
    assert schedule["rate"] == "rate(1 day)" and schedule["input"] == {}
    deps = next(iter(config["custom"]["lokki-sam"]["layers"]))
    assert (app / deps / "requirements.txt").read_text().endswith("six==1.16.0\n")
    code, out, err = generate_in(app, "src/two.py:first", "--prune", module="two")
    assert code == 0, err and "removed flow 'second' (--prune)" in out
    config = load((app / "serverless.yml").read_text())
    assert set(config["functions"]) == {"FirstOne"} and set(config["stepFunctions"]["stateMachines"]) == {"first"}
    assert set(config["layers"]) == {"LokkiSamRuntime"} and LAYERS_PLUGIN not in config["plugins"]
    assert not (app / "statemachine" / "second.asl.json").exists() and not (app / deps).exists()
    assert not (app / ".serverless_plugins").exists()


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        ("service: x\nprovider: [unclosed\n", "serverless.yml:3:"),
        ("- a list\n", "serverless.yml is not a YAML mapping"),
        ("service: x\nprovider:\n  name: google\n", "provider.name is 'google'"),
        (
            "service: x\nplugins:\n  - serverless-offline\n",
            "serverless.yml: plugins: plugins does not list serverless-step-functions",
        ),
        (
            "service: x\nplugins: [serverless-step-functions]\n"
            "stepFunctions:\n  stateMachines:\n    calc:\n      definition: {}\n",
            "serverless.yml: stepFunctions.stateMachines.calc: stepFunctions.stateMachines.calc is already defined and "
            "not generated by lokki-sam",
        ),
        ("service: x\nfunctions:\n  CalcFetch:\n    handler: mine.main\n", "functions.CalcFetch is already defined"),
        (
            "service: x\nresources:\n  Resources:\n    CalcFetchFunctionRole:\n      Type: AWS::IAM::Role\n",
            "resources.Resources.CalcFetchFunctionRole is already defined",
        ),
        ("service: x\nfunctions: [a]\n", "functions must be a mapping"),
    ],
    ids=[
        "not-yaml",
        "not-a-mapping",
        "other-provider",
        "plugin-missing",
        "user-state-machine",
        "user-function",
        "user-resource",
        "bad-section",
    ],
)
def test_bad_serverless_yml_is_refused_and_nothing_is_written(app: Path, existing: str, message: str) -> None:
    (app / "serverless.yml").write_text(existing)
    before = listing(app)
    code, _, err = generate(app, "src/calc.py")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert listing(app) == before  # nothing half-written


def test_bad_package_json_and_unknown_target(app: Path) -> None:
    (app / "package.json").write_text("{not json")
    code, _, err = generate(app, "src/calc.py")
    assert code == 2 and "package.json:1:2: package.json is not valid JSON" in err
    assert not (app / "serverless.yml").exists()
    (app / "package.json").unlink()
    code, _, err = generate_in(app, "--target", "nope", "src/calc.py")
    assert code == 2 and "'nope' is not one of 'sam', 'serverless'" in err
    (app / "lokki.toml").write_text('target = "terraform"\n')
    code, _, err = generate_in(app, "src/calc.py")
    assert code == 2 and "target" in err and "lokki.toml" in err and "Traceback" not in err


def test_config_target_and_code_folder(app: Path) -> None:
    from click.testing import CliRunner

    from lokki_sam.cli import cli

    (app / "lokki.toml").write_text('target = "serverless"\nflow = "src/calc.py"\n')
    os.chdir(app)
    forget_module("calc")
    result = CliRunner(mix_stderr=False).invoke(cli, ["generate"])
    assert result.exit_code == 0, result.stderr
    assert (app / "serverless.yml").is_file() and not (app / "template.yaml").exists()
    (app / "my-src").mkdir()
    (app / "my-src" / "calc.py").write_text(FLOW_V1)
    code, _, err = generate_in(app, "--code-uri", "my-src", "my-src/calc.py", "--prune", module="calc")
    assert code == 2 and "is not importable as a Python package path" in err


# ----------------------------------------------------------------------------- the model


def test_every_emitted_key_is_owned_and_every_owned_key_emitted() -> None:
    """What lokki-sam owns in serverless.yml is exactly what the renderer emits (as test_ownership.py
    does for template.yaml), over configurations that switch on every optional key."""
    from tests.test_ownership import BATCH, EMPTY, graphs

    # The Batch steps' network: serverless.yml holds lokki.toml's values.
    batch = {**BATCH, "batch_subnets": ["subnet-0123456789abcdef0"], "batch_security_groups": ["sg-0123456789abcdef0"]}
    emitted: dict[str, set[str]] = {"functions": set(), "layers": set(), "stateMachines": set(), "images": set()}
    for settings in (
        model.Settings(batch=batch, root=EMPTY),
        model.Settings(tracing=True, batch=batch, root=EMPTY),
        model.Settings(package="image", batch=batch, root=EMPTY),
    ):
        config = serverless.render(model.build(graphs(), settings))
        for section, entries in (
            ("functions", config.functions),
            ("layers", config.layers),
            ("stateMachines", config.state_machines),
            ("images", config.images),
        ):
            for entry in entries.values():
                emitted[section].update(entry)
    owned = {
        "functions": serverless.FUNCTION_KEYS,
        "layers": serverless.LAYER_KEYS,
        "stateMachines": serverless.STATE_MACHINE_KEYS,
        "images": serverless.IMAGE_KEYS,
    }
    for section, keys in owned.items():
        assert emitted[section] == set(keys), section


def test_renderers_read_only_the_model() -> None:
    """Neither renderer imports the flow graph: everything they render comes from compile/model.py."""
    for name in ("sam", "serverless", "cfn"):
        tree = ast.parse((REPO / "lokki_sam" / "compile" / f"{name}.py").read_text())
        imported = {
            alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert not {
            i for i in imported if i.startswith(("lokki_sam.ir", "lokki_sam.graph", "lokki_sam.compile.asl"))
        }, (
            name,
            imported,
        )


def test_model_statements_are_scoped_to_the_flow() -> None:
    """Policy is decided once, in the model: each function's role writes only its own nodes' keys and its
    own log group; the state machine invokes only its flow's functions."""
    graph = SHAPES["map_agg"][0].graph
    app = model.build([graph], model.Settings())
    for function in app.functions:
        by_sid = {s.sid: s for s in function.role.statements}
        assert by_sid["OwnLogs"].resources == (model.Arn(function.log_group),)
        written = [r.text for r in by_sid["WriteOwnArtifacts"].resources]
        assert written and all(f"/step={function.step}/" in text for text in written)
    (machine,) = app.state_machines
    invoke = next(s for s in machine.statements if s.sid == "InvokeOwnFunctions")
    assert {r.resource for r in invoke.resources} == set(app.functions)
    assert [s.sid for s in machine.statements if s.reason] == ["DeliverLogs"]  # the one wildcard, justified


# ------------------------------------------------------------------------------ stack discovery


@pytest.mark.parametrize(
    ("config", "stage", "expected"),
    [
        ("service: birds\n", None, ("birds-dev", "us-east-1")),
        (
            "service: birds\nprovider:\n  name: aws\n  stage: prod\n  region: eu-west-1\n",
            None,
            ("birds-prod", "eu-west-1"),
        ),
        ("service: birds\nprovider:\n  stage: ${opt:stage, 'qa'}\n", None, ("birds-qa", "us-east-1")),
        ("service: birds\nprovider:\n  stage: ${opt:stage, 'qa'}\n", "local", ("birds-local", "us-east-1")),
        ("service:\n  name: birds\nprovider:\n  stackName: my-stack\n", None, ("my-stack", "us-east-1")),
    ],
)
def test_serverless_stack_is_service_and_stage(tmp_path: Path, config: str, stage: str | None, expected: tuple) -> None:
    from lokki_sam.cloud.stack import serverless_stack

    path = tmp_path / "serverless.yml"
    path.write_text(config)
    assert serverless_stack(path, stage) == expected


def test_resolve_target_reads_serverless_yml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lokki_sam.cloud.stack import resolve_target
    from lokki_sam.config import load_config
    from lokki_sam.errors import LokkiError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lokki.toml").write_text('target = "serverless"\n')
    (tmp_path / "serverless.yml").write_text("service: birds\nprovider:\n  region: eu-north-1\n  stage: ${sls:stage}\n")
    config = load_config(tmp_path, environ={})
    common = {"region": None, "profile": None, "endpoint_url": None}
    local = resolve_target(config, stack_name=None, config_env="local", **common)
    assert (local.stack_name, local.region, local.framework) == ("birds-local", "eu-north-1", "serverless")
    with pytest.raises(LokkiError, match=r"cannot tell the stack from provider.stage.*\$\{sls:stage\}"):
        resolve_target(config, stack_name=None, **common)
    assert resolve_target(config, stack_name="given", **common).stack_name == "given"


def test_serverless_values_write_what_the_framework_knows() -> None:
    values = serverless.ServerlessValues(lambda r: r.key, existing_bucket="")
    prefix = values(model.Sub("lokki/${AWS::StackName}/birds"))
    assert prefix == f"lokki/{serverless.STACK_NAME}/birds"  # a literal for `serverless invoke local`
    assert values(model.Sub("arn:${AWS::Partition}:x:${AWS::StackName}")) == {
        "Fn::Sub": "arn:${AWS::Partition}:x:${AWS::StackName}"
    }
    assert values(model.BucketName()) == {"Ref": "ArtifactBucket"}
    assert serverless.ServerlessValues(lambda r: r.key, "team-bucket")(model.BucketName()) == "team-bucket"


def test_an_existing_bucket_replaces_the_stacks_own(app: Path) -> None:
    (app / "lokki.toml").write_text('artifact_bucket = "team-artifacts"\n')
    assert generate(app, "src/calc.py")[0] == 0
    config = load((app / "serverless.yml").read_text())
    assert "ArtifactBucket" not in config["resources"]["Resources"] and "Parameters" not in config["resources"]
    assert config["functions"]["CalcFetch"]["environment"]["LOKKI_BUCKET"] == "team-artifacts"
    assert config["resources"]["Outputs"]["ArtifactBucketName"]["Value"] == "team-artifacts"
    text = textwrap.dedent((app / "serverless.yml").read_text())
    assert "arn:${AWS::Partition}:s3:::${Bucket}" in text and "Bucket: team-artifacts" in text


def test_every_resource_kind_has_a_method_in_each_renderer(tmp_path: Path) -> None:
    """A new kind of resource is one model class and one method per renderer: a class a renderer
    does not know is refused (TypeError), never silently left out of one target."""
    import typing

    from lokki_sam.compile import sam
    from lokki_sam.config import load_config
    from tests.flows import batch_gpu, batch_mixed

    kinds = set(typing.get_args(model.Resource))
    # Batch steps on Fargate and on EC2 (whose compute environment's instances have an instance profile).
    graphs = [SHAPES["map_agg"][0].graph, batch_mixed.batch_single.graph, batch_gpu.gpu.graph]
    app = model.build(graphs, model.Settings(batch=load_config(tmp_path).values, root=tmp_path))
    assert kinds == {type(r) for r in app.resources} | {model.DependencyLayer}  # (no step of map_agg has requirements)
    for renderer in (sam.SamRenderer, serverless.ServerlessRenderer):
        registry = renderer.__dict__["resource"].dispatcher.registry
        assert kinds <= set(registry), (renderer.__name__, kinds - set(registry))
    with pytest.raises(TypeError, match="has no method for object"):
        sam.SamRenderer(app).resource(object())


def test_image_steps_are_the_frameworks_images(tmp_path: Path) -> None:
    """An image step is `image: {name}` with a `provider.ecr.images` entry built from the SAM target's
    Dockerfile; its module is imported from the image's task root (the Dockerfile copies the code folder)."""
    from tests.support.sam import PACKAGING_FILE
    from tests.support.serverless import make_serverless_app

    path = make_serverless_app(tmp_path / "app", [PACKAGING_FILE], runtime="python3.11", architecture="x86_64")
    forget_module("packaging")
    config = load(path.read_text())
    square = config["functions"]["MixedSquare"]
    name = square["image"]["name"]
    image = config["provider"]["ecr"]["images"][name]
    assert image == {"path": ".", "file": f"images/{name.removeprefix('lokki-')}/Dockerfile", "platform": "linux/amd64"}
    assert (tmp_path / "app" / image["file"]).is_file()
    assert "handler" not in square and "runtime" not in square and "layers" not in square
    assert square["environment"]["LOKKI_MODULE"] == "packaging"
    assert config["functions"]["MixedSizes"]["environment"]["LOKKI_MODULE"] == "src.packaging"


def test_a_lost_record_is_rebuilt_from_what_the_entries_are(app: Path) -> None:
    """Without custom.lokki-sam (deleted by hand), lokki-sam's entries are still recognised as its own:
    the state machine by its definition file, functions by their handler, resources by their marker."""
    generate(app, "src/calc.py")
    path = app / "serverless.yml"
    fresh = path.read_text()
    config = load(fresh)
    del config["custom"]["lokki-sam"]
    start = fresh.index("  lokki-sam:\n")
    end = fresh.index("\npackage:\n")
    path.write_text(fresh[:start] + fresh[end + 1 :])
    code, _, err = generate(app, "src/calc.py")
    assert code == 0, err
    assert path.read_text() == fresh
