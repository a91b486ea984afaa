"""The generated template on every example flow and every graph shape: cfn-lint clean,
transformed by samtranslator, least-privilege IAM, and events the runtime accepts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import names
from lokki_sam.compile import asl
from lokki_sam.execution import RunContext, read_result
from lokki_sam.local import run_flow
from lokki_sam.params import resolve_params
from lokki_sam.protocol import PROTOCOL_VERSION
from lokki_sam.store import LocalStore, S3Store
from tests.support.sam import (
    ACCOUNT,
    BUCKET,
    EXAMPLES,
    PACKAGING_FILE,
    REGION,
    SHAPES_FILE,
    STACK,
    evaluate,
    forget_module,
    lint,
    load,
    make_app,
    restored_sys_path,
    role_statements,
    transform,
)

pytestmark = pytest.mark.usefixtures("unload_modules")

APPS = {p.stem: [p] for p in EXAMPLES} | {"shapes": [SHAPES_FILE], "packaging": [PACKAGING_FILE]}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, str, dict[str, Any]]]]:
    """Each example app and one app with every shape: (root, template text, transformed CloudFormation)."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:  # module scope: runs before the autouse env fixture
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        for name, sources in APPS.items():
            root = tmp_path_factory.mktemp(name)
            text = make_app(root, sources).read_text()
            out[name] = (root, text, transform(text))
    yield out
    for name in APPS:  # the copies must not stand in for the real modules in other tests
        forget_module(name)


@pytest.mark.parametrize("app", sorted(APPS))
def test_cfn_lint_has_no_findings(apps: dict[str, Any], app: str) -> None:
    _, text, _ = apps[app]
    assert lint(text) == []


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_flow_has_functions_state_machine_and_outputs(apps: dict[str, Any], app: str) -> None:
    root, text, cfn = apps[app]
    template = load(text)
    graphs = _graphs(root)
    assert graphs, "the app defines flows"
    resources = cfn["Resources"]
    for graph in graphs:
        function_ids = {names.function_id(graph.name, s.name) for s in graph.steps}
        for fid in function_ids:
            fn = resources[fid]["Properties"]
            if fn.get("PackageType") == "Image":  # no Runtime, Handler or Layers from Globals (IgnoreGlobals)
                assert not {"Handler", "Runtime", "Layers"} & set(fn), fn
                repository = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/stack-{fid.lower()}"
                assert fn["Code"] == {"ImageUri": f"{repository}:latest"}
            else:
                assert fn["Handler"] == names.HANDLER
                assert fn["Code"] == {"S3Bucket": "deploy-bucket", "S3Key": "code.zip"}  # one shared CodeUri
            env = fn["Environment"]["Variables"]
            assert env[names.ENV_FLOW] == graph.name
            assert env[names.ENV_PREFIX] == {"Fn::Sub": names.template_flow_prefix(graph.name)}
            assert env[names.ENV_MODULE] == Path(graph.module).name.split(".")[-1]
        machine = resources[names.state_machine_id(graph.name)]
        assert machine["Type"] == "AWS::StepFunctions::StateMachine"
        subs = machine["Properties"]["DefinitionSubstitutions"]
        assert sorted(subs) == asl.substitution_names(graph)
        for name in subs:
            if name == names.PREFIX_SUBSTITUTION:
                assert evaluate(subs[name], resources) == names.flow_prefix(STACK, graph.name)
            elif name != names.BUCKET_SUBSTITUTION:
                assert subs[name] == {"Fn::GetAtt": [name.removesuffix("Arn"), "Arn"]}
        assert machine["Properties"]["StateMachineName"] == {"Fn::Sub": f"${{AWS::StackName}}-{graph.name}"}
        definition_file = root / "statemachine" / f"{graph.name}.asl.json"
        assert json.loads(definition_file.read_text()) == asl.compile_flow(graph)
        assert names.state_machine_arn_output(graph.name) in template["Outputs"]
        # A step reused in a flow is one function.
        assert len(function_ids) == len({n.step.name for n in graph.nodes})
    assert template["Outputs"][names.BUCKET_OUTPUT]["Value"] == {
        "Fn::If": ["CreateArtifactBucket", {"Ref": "ArtifactBucket"}, {"Ref": "ExistingArtifactBucket"}]
    }


def test_bucket_is_private_encrypted_tls_only_and_expires_artifacts(apps: dict[str, Any]) -> None:
    _, _, cfn = apps["birds"]
    bucket = cfn["Resources"]["ArtifactBucket"]
    assert bucket["Condition"] == "CreateArtifactBucket"
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (expiry,) = props["LifecycleConfiguration"]["Rules"]
    assert expiry["Status"] == "Enabled" and expiry["ExpirationInDays"] == 30 and expiry["Prefix"] == "lokki/"
    policy = evaluate(cfn["Resources"]["ArtifactBucketPolicy"]["Properties"], cfn["Resources"])
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert cfn["Conditions"]["CreateArtifactBucket"] == {"Fn::Equals": [{"Ref": "ExistingArtifactBucket"}, ""]}


def test_existing_bucket_parameter_switches_every_reference(apps: dict[str, Any]) -> None:
    _, _, cfn = apps["birds"]
    env = evaluate(cfn["Resources"]["BirdsFlapFunction"]["Properties"]["Environment"], cfn["Resources"], False)
    assert env["Variables"][names.ENV_BUCKET] == "existing-bucket"
    statements = role_statements(cfn, "BirdsFlapFunctionRole", create_bucket=False)
    assert statements[1]["Resource"] == [f"arn:aws:s3:::existing-bucket/lokki/{STACK}/birds/*"]


def _graphs(root: Path) -> list[Any]:
    from lokki_sam.loader import load_flows

    with restored_sys_path():
        return [f.graph for p in sorted((root / "src").glob("*.py")) for f in load_flows(str(p))]


@pytest.mark.parametrize("app", sorted(APPS))
def test_function_roles_reach_only_their_flow_prefix(apps: dict[str, Any], app: str) -> None:
    root, _, cfn = apps[app]
    for graph in _graphs(root):
        prefix = names.flow_prefix(STACK, graph.name)
        for step in graph.steps:
            fid = names.function_id(graph.name, step.name)
            statements = role_statements(cfn, fid + "Role")
            log_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{fid}LogGroup:*"
            own_nodes = [n.id for n in graph.nodes if n.step.name == step.name]
            assert statements[:4] == [
                {
                    "Sid": "OwnLogs",
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": [log_group],
                },
                {
                    "Sid": "ReadRunArtifacts",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{BUCKET}/{prefix}/*"],
                },
                {
                    "Sid": "WriteOwnArtifacts",
                    "Effect": "Allow",
                    "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                    "Resource": [f"arn:aws:s3:::{BUCKET}/{prefix}/*/step={n}/*" for n in own_nodes],
                },
                {
                    "Sid": "ListRunArtifacts",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{BUCKET}"],
                    "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
                },
            ]
            # Anything more comes from the step's own `permissions`.
            assert statements[4:] == [{"Effect": "Allow", **p} for p in _as_lists(step.options.permissions)]
            function = cfn["Resources"][fid]["Properties"]
            assert function["Role"] == {"Fn::GetAtt": [fid + "Role", "Arn"]}
            assert function["LoggingConfig"]["LogGroup"] == {"Ref": fid + "LogGroup"}
            assert cfn["Resources"][fid + "LogGroup"]["Properties"]["RetentionInDays"] == 30


def _as_lists(perms: Any) -> list[dict[str, Any]]:
    out = []
    for p in perms:
        p = dict(p)
        for key in ("Action", "Resource"):
            if isinstance(p.get(key), str):
                p[key] = [p[key]]
        out.append(p)
    return out


@pytest.mark.parametrize("app", sorted(APPS))
def test_state_machine_role_grants_only_what_the_flow_needs(apps: dict[str, Any], app: str) -> None:
    root, _, cfn = apps[app]
    lambda_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
    for graph in _graphs(root):
        statements = {s["Sid"]: s for s in role_statements(cfn, names.state_machine_id(graph.name) + "Role")}
        own = sorted(names.function_id(graph.name, s.name) for s in graph.steps)
        invoke = statements.pop("InvokeOwnFunctions")
        assert invoke["Action"] == ["lambda:InvokeFunction"]
        assert sorted(invoke["Resource"]) == sorted(
            [lambda_arn + f for f in own] + [lambda_arn + f + ":*" for f in own]
        )
        logs = statements.pop("DeliverLogs")
        assert logs["Resource"] == ["*"] and all(a.startswith("logs:") for a in logs["Action"])
        distributed = any(m.options.mode == "distributed" for m in graph.maps)
        if not distributed:
            assert statements == {}, f"flow {graph.name} without a distributed map needs nothing else"
            continue
        machine = f"{STACK}-{graph.name}"
        bucket_arn = f"arn:aws:s3:::{BUCKET}/{names.flow_prefix(STACK, graph.name)}"
        reader = statements.pop("MapItemReader")
        assert reader["Action"] == ["s3:GetObject"]
        assert reader["Resource"] == [
            f"{bucket_arn}/*/step={m.source}/*/{name}"
            for m in graph.maps
            if m.options.mode == "distributed"
            for name in ("manifest.json", "todo/*.json")
        ]
        writer = statements.pop("MapResultWriter")
        assert writer["Action"] == [
            "s3:PutObject",
            "s3:GetObject",
            "s3:ListMultipartUploadParts",
            "s3:AbortMultipartUpload",
        ]
        definition = json.loads((root / "statemachine" / f"{graph.name}.asl.json").read_text())
        flow_prefix = names.flow_prefix(STACK, graph.name)
        prefixes = sorted(
            s["ResultWriter"]["Parameters"]["Prefix"].replace("${ArtifactPrefix}", flow_prefix)
            for s in definition["States"].values()
            if "ResultWriter" in s
        )
        assert prefixes and all(p.startswith(f"{flow_prefix}/_") for p in prefixes)
        # The state machine writes only where its ResultWriters write, never over the functions' pickles.
        assert writer["Resource"] == [f"arn:aws:s3:::{BUCKET}/{p}/*" for p in prefixes]
        assert statements.pop("DistributedMapStartChildren")["Resource"] == [
            f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{machine}"
        ]
        children = statements.pop("DistributedMapManageChildren")
        assert children["Action"] == ["states:DescribeExecution", "states:StopExecution"]
        assert children["Resource"] == [f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine}/*"]
        assert statements == {}
        # The name the grants use is the name the state machine gets: no circular reference needed.
        props = cfn["Resources"][names.state_machine_id(graph.name)]["Properties"]
        assert evaluate(props["StateMachineName"], cfn["Resources"]) == machine


def test_no_star_resource_except_where_aws_requires_it(apps: dict[str, Any]) -> None:
    for _, _, cfn in apps.values():
        for rid, res in cfn["Resources"].items():
            if res["Type"] != "AWS::IAM::Role":
                continue
            for statement in role_statements(cfn, rid):
                if "*" in statement["Resource"]:
                    assert statement["Sid"] in ("DeliverLogs", "Tracing"), (rid, statement)


def test_state_machine_logging_and_tracing(apps: dict[str, Any]) -> None:
    _, text, cfn = apps["birds"]
    props = cfn["Resources"]["BirdsStateMachine"]["Properties"]
    assert props["LoggingConfiguration"]["Destinations"] == [
        {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": ["BirdsStateMachineLogGroup", "Arn"]}}}
    ]
    assert cfn["Resources"]["BirdsStateMachineLogGroup"]["Properties"]["RetentionInDays"] == 30
    assert props["TracingConfiguration"] == {"Enabled": False}
    assert "# AWS requires '*'" in text  # the wildcard is justified in the template itself


def test_tracing_and_settings_from_config(tmp_path: Path) -> None:
    text = make_app(
        tmp_path, [EXAMPLES[0]], tracing="true", memory="1024", artifact_expiry_days="7", runtime="python3.12"
    ).read_text()
    assert lint(text) == []
    cfn = transform(text)
    function = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}
    assert function["Properties"]["MemorySize"] == 1024
    assert function["Properties"]["Runtime"] == "python3.12"
    machine = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine")
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
    machine_role = cfn["Resources"][machine_role_id(cfn)]
    assert machine_role["Properties"]["ManagedPolicyArns"] == ["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"]
    for rid, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role" and rid != machine_role_id(cfn):
            (xray,) = [s for s in role_statements(cfn, rid) if s.get("Sid") == "Tracing"]
            assert xray["Resource"] == ["*"] and all(a.startswith("xray:") for a in xray["Action"])
    rules = cfn["Resources"]["ArtifactBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rules[0]["ExpirationInDays"] == 7


def machine_role_id(cfn: dict[str, Any]) -> str:
    (machine,) = [k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    return machine + "Role"


def test_step_options_and_schedule(tmp_path: Path, write_module: Any) -> None:
    write_module(
        "tuned",
        """
        from lokki_sam import flow, step

        @step(memory=2048, timeout=60, architecture="x86_64", environment={"MODE": "fast"},
              permissions=[{"Action": ["sqs:SendMessage"], "Resource": "arn:aws:sqs:us-east-1:123456789012:q"}])
        def fetch(limit: int = 2) -> list[int]:
            return list(range(limit))

        @step
        def total(xs: list[int]) -> int:
            return sum(xs)

        @flow(name="nightly", schedule="rate(1 day)")
        def tuned(limit: int = 2):
            return fetch(limit=limit).next(total)
        """,
    )
    text = make_app(tmp_path / "app", [tmp_path / "tuned.py"]).read_text()
    assert lint(text) == []
    cfn = transform(text)
    fetch = cfn["Resources"]["NightlyFetchFunction"]["Properties"]
    assert (fetch["MemorySize"], fetch["Timeout"], fetch["Architectures"]) == (2048, 60, ["x86_64"])
    assert fetch["Environment"]["Variables"]["MODE"] == "fast"
    total = cfn["Resources"]["NightlyTotalFunction"]["Properties"]
    assert (total["MemorySize"], total["Timeout"], total["Architectures"]) == (512, 300, ["arm64"])
    assert "MODE" not in total["Environment"]["Variables"]
    extra = role_statements(cfn, "NightlyFetchFunctionRole")[4]
    assert extra == {
        "Effect": "Allow",
        "Action": ["sqs:SendMessage"],
        "Resource": ["arn:aws:sqs:us-east-1:123456789012:q"],
    }
    assert "Tracing" not in {s.get("Sid") for s in role_statements(cfn, "NightlyFetchFunctionRole")}
    rule = next(r for r in cfn["Resources"].values() if r["Type"] == "AWS::Events::Rule")
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 day)"
    # Scheduled runs pass no parameters: the runtime applies the code's defaults (nothing copied).
    assert json.loads(rule["Properties"]["Targets"][0]["Input"]) == {}


# --------------------------------------------------------------------------------- events


@pytest.mark.parametrize("app", sorted(APPS))
def test_events_drive_the_real_runtime(apps: dict[str, Any], app: str, tmp_path: Path) -> None:
    """Invoke every step's handler with its sample event, in flow order, against S3 (moto)."""
    import boto3
    from moto import mock_aws

    from lokki_sam import runtime

    root, _, cfn = apps[app]
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for graph in _graphs(root):
            if any(p.required for p in graph.params):
                continue
            event_dir = root / "events" / graph.name
            expected = {f"{n.id}.json" for n in graph.nodes}
            expected |= {f"{n.id}.item.json" for m in graph.maps for n in m.nodes}
            expected |= {f"{n.id}.batch.json" for m in graph.maps if m.options.batch_size > 1 for n in m.nodes}
            assert {p.name for p in event_dir.glob("*.json")} == expected
            for node in graph.nodes:
                fn = cfn["Resources"][names.function_id(graph.name, node.step.name)]["Properties"]
                env = evaluate(fn["Environment"]["Variables"], cfn["Resources"])
                runtime.reset_cache()
                event = json.loads((event_dir / f"{node.id}.json").read_text())
                assert event["lokki"] == {
                    "protocol": PROTOCOL_VERSION,
                    "flow": graph.fingerprints.flow,
                    "step": graph.fingerprint(node.id),
                }
                assert event["node"] == node.id
                for shape in ("item", "batch"):  # the state machine's exact shapes are accepted too
                    extra = event_dir / f"{node.id}.{shape}.json"
                    if extra.exists():
                        runtime.handle(json.loads(extra.read_text()), env, s3)
                runtime.handle(event, env, s3)
            # The events, invoked in flow order, ran the whole flow: its result is a local run's.
            store = S3Store(BUCKET, names.flow_prefix(STACK, graph.name), s3)
            defaults = resolve_params(graph.params, {}, where="sample events")  # what the events carry
            cloud = read_result(RunContext(graph, store, "sample-run", defaults))
            assert cloud == run_flow(graph, store=tmp_path / graph.name).result


# ------------------------------------------------------------------- writes scoped per step and stack


def iam_matches(pattern: str, arn: str) -> bool:
    """IAM resource matching: `*` any run of characters, `?` any one character."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, arn) is not None


def write_patterns(cfn: dict[str, Any], graph: Any, stack: str = STACK, create_bucket: bool = True) -> dict[str, Any]:
    """Per step: the S3 resources its function may PutObject to (after the SAM transform)."""
    out = {}
    for step in graph.steps:
        role = names.function_id(graph.name, step.name) + "Role"
        out[step.name] = [
            resource
            for statement in role_statements(cfn, role, create_bucket, stack)
            if "s3:PutObject" in statement["Action"]
            for resource in statement["Resource"]
        ]
    return out


@pytest.mark.parametrize("app", sorted(APPS))
def test_each_function_may_write_only_its_own_steps_keys(apps: dict[str, Any], app: str, tmp_path: Path) -> None:
    """Every key a real run writes is writable by exactly one function: the one of the step that
    writes it, so a buggy or compromised step cannot overwrite another step's outputs."""
    root, _, cfn = apps[app]
    checked = 0
    for graph in _graphs(root):
        if any(p.required for p in graph.params):
            continue
        store = LocalStore(tmp_path / graph.name)
        run_id = run_flow(graph, store=store).run_id
        patterns = write_patterns(cfn, graph)
        prefix = names.flow_prefix(STACK, graph.name)
        for key in store.list_keys(f"{run_id}/"):
            if "/step=" not in key:  # run.json and the lock: local runs only
                continue
            node = key.split("/step=", 1)[1].split("/", 1)[0]
            arn = f"arn:aws:s3:::{BUCKET}/{prefix}/{key}"
            writers = [s for s, resources in patterns.items() if any(iam_matches(r, arn) for r in resources)]
            assert writers == [graph.node(node).step.name], key
            checked += 1
    assert checked


def test_two_stacks_sharing_a_bucket_cannot_touch_each_others_artifacts(apps: dict[str, Any]) -> None:
    root, _, cfn = apps["shapes"]
    for graph in _graphs(root):
        prod = names.flow_prefix("prod", graph.name)
        prod_key = f"arn:aws:s3:::existing-bucket/{prod}/r1/step=x/0123456789abcdef/output.pkl"
        for step in graph.steps:
            role = names.function_id(graph.name, step.name) + "Role"
            for statement in role_statements(cfn, role, create_bucket=False, stack="dev"):
                if any(a.startswith("s3:") and a != "s3:ListBucket" for a in statement["Action"]):
                    assert not any(iam_matches(r, prod_key) for r in statement["Resource"]), statement
