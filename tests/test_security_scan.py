"""Security scan of every generated template: checkov (CloudFormation + secrets), IAM wildcards, the bucket.

Templates: the repository's own template.yaml, one app per example, one with every shape of
tests/flows/shapes.py, one with tracing on, one flow using a secret by reference, and zip and
container-image functions in one app (tests/flows/packaging.py).
Policy: zero failed checkov checks. checkov's open-source run reports no severities, so
"no HIGH/CRITICAL" is not decidable offline; zero failures is the stricter rule. The only
accepted findings are the ones lokki_sam/compile/sam.py writes into the template itself
(`Metadata.checkov.skip`, each with its reason). A canary template with known problems in the
same scan proves the scanner really ran.

`pytest tests/test_security_scan.py -s` prints the figures (passed/failed/skipped per template).
The first run builds checkov's venv (~3.5 min, cached under ~/.cache/lokki-sam).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import names
from lokki_sam.compile.sam import CHECKOV_SKIPS, WILDCARD_REASONS
from tests.support.checkov import CheckovReport, CheckovUnavailable, scan
from tests.support.sam import (
    EXAMPLES,
    PACKAGING_FILE,
    REGION,
    SHAPES_FILE,
    forget_module,
    load,
    make_app,
    role_statements,
    transform,
)

pytestmark = pytest.mark.usefixtures("unload_modules")

REPO = Path(__file__).resolve().parent.parent
BATCH_FILES = (REPO / "tests" / "flows" / "batch_mixed.py", REPO / "tests" / "flows" / "batch_gpu.py")
BATCH_NETWORK = {"batch_subnets": "subnet-0123456789abcdef0", "batch_security_groups": "sg-0123456789abcdef0"}

SECRET_FLOW = """
from lokki_sam import flow, step

@step(
    environment={
        "API_TOKEN_PARAM": "/lokki/demo/api-token",
        "DB_PASSWORD_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
    },
    permissions=[
        {"Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/lokki/demo/*"}
    ],
)
def fetch(n: int = 2) -> list[int]:
    return list(range(n))

@step
def bump(x: int) -> int:
    return x + 1

@flow
def with_secret(n: int = 2):
    return fetch(n=n).map(bump)
"""

# A template with known problems: a public, unencrypted bucket and a literal AWS key.
CANARY = """\
Resources:
  LeakyBucket:
    Type: AWS::S3::Bucket
    Properties:
      AccessControl: PublicRead
  LeakyFunction:
    Type: AWS::Lambda::Function
    Properties:
      Handler: index.handler
      Runtime: python3.12
      Role: arn:aws:iam::123456789012:role/r
      Code: {ZipFile: "def handler(e, c): pass"}
      Environment:
        Variables:
          KEY_ID: AKIAIOSFODNN7EXAMPLE
"""

# AWS access key ids, private keys, and assignments of long random-looking values to secret-ish names.
LITERAL_SECRET = re.compile(
    r"(AKIA|ASIA)[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|"
    r"(?i:(secret|password|token|api_?key)\w*)\s*:\s*['\"]?[A-Za-z0-9+/]{32,}"
)


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """name -> template text, for every template the scan covers."""
    out = {"repo": (REPO / "template.yaml").read_text()}
    apps: dict[str, tuple[list[Path], dict[str, Any]]] = {p.stem: ([p], {}) for p in EXAMPLES}
    apps["shapes"] = ([SHAPES_FILE], {})
    apps["shapes-tracing"] = ([SHAPES_FILE], {"tracing": "true"})
    apps["packaging"] = ([PACKAGING_FILE], {})  # zip and container-image functions in one flow
    # AWS Batch steps: on Fargate (beside Lambda steps), and on EC2 with a GPU.
    apps["batch"] = ([BATCH_FILES[0]], BATCH_NETWORK)
    apps["batch-gpu"] = ([BATCH_FILES[1]], BATCH_NETWORK)
    secret_dir = tmp_path_factory.mktemp("secret-src")
    (secret_dir / "with_secret.py").write_text(SECRET_FLOW)
    apps["secret-reference"] = ([secret_dir / "with_secret.py"], {})
    with pytest.MonkeyPatch.context() as mp:  # module scope: runs before the autouse env fixture
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        for name, (sources, config) in apps.items():
            root = tmp_path_factory.mktemp(name)
            out[name] = make_app(root, sources, **config).read_text()
            for source in sources:
                forget_module(source.stem)
    yield out


@pytest.fixture(scope="module")
def report(templates: dict[str, str]) -> Iterator[CheckovReport]:
    # Not tmp_path_factory: other pytest sessions on the machine prune old pytest-of-* folders,
    # and checkov (minutes) must not lose its working directory meanwhile.
    with tempfile.TemporaryDirectory(prefix="lokki-checkov-") as tmp:
        yield run_scan(templates, Path(tmp))


def run_scan(templates: dict[str, str], home: Path) -> CheckovReport:
    files = []
    for name, text in {**templates, "canary": CANARY}.items():
        path = home / "scan" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        files.append(path)
    if shutil.which("git") is None:
        pytest.skip("checkov needs git on PATH")
    try:
        result = scan(files, home=home)
    except CheckovUnavailable as exc:
        pytest.fail(f"checkov could not run: {exc}")
    print_figures(result, [p.name for p in files])
    return result


def print_figures(result: CheckovReport, files: list[str]) -> None:
    print("\ncheckov 3.3.30 (cloudformation + secrets), per template: passed / failed / skipped")
    for name in files:
        mine = result.for_file(name)
        print(f"  {name:28} {len(mine.passed):4} / {len(mine.failed):3} / {len(mine.skipped):3}")
    skipped = Counter(f.check_id for f in result.skipped)
    print("  skipped (inline, justified): " + ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items())))


# ---------------------------------------------------------------------------------- checkov


def test_the_scanner_ran_and_catches_the_canary(report: CheckovReport) -> None:
    canary = report.for_file("canary.yaml")
    failed = {f.check_id for f in canary.failed}
    assert {"CKV_AWS_20", "CKV_AWS_53"} <= failed, failed  # public-read bucket, public ACLs not blocked
    assert any(f.framework == "secrets" for f in canary.failed), failed  # the literal access key
    assert report.parsing_errors == []


@pytest.mark.parametrize(
    "name", ["repo", *(p.stem for p in EXAMPLES), "shapes", "shapes-tracing", "secret-reference", "batch", "batch-gpu"]
)
def test_no_failed_checks(report: CheckovReport, name: str) -> None:
    mine = report.for_file(f"{name}.yaml")
    assert len(mine.passed) > 20, "checkov evaluated (almost) nothing"
    failed = [f"{f.check_id} {f.check_name} ({f.resource})" for f in mine.failed]
    assert failed == [], "\n".join(failed)


def test_every_skip_is_emitted_by_the_generator_with_its_reason(report: CheckovReport) -> None:
    allowed = {(kind, check) for kind, skips in CHECKOV_SKIPS.items() for check, _ in skips}
    reasons = {check: why for skips in CHECKOV_SKIPS.values() for check, why in skips}
    skipped = [f for f in report.skipped if f.file != "canary.yaml"]
    assert skipped, "the generator's suppressions were not seen"
    for finding in skipped:
        kind = finding.resource.split(".")[0]
        assert (kind, finding.check_id) in allowed, finding
        assert finding.suppress_comment == reasons[finding.check_id], finding


def test_suppressions_are_written_inline_in_the_template(templates: dict[str, str]) -> None:
    for name, text in templates.items():
        for logical_id, resource in load(text)["Resources"].items():
            expected = CHECKOV_SKIPS.get(resource["Type"], ())
            skips = resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
            got = [(s["id"], s["comment"]) for s in skips]
            assert got == list(expected), (name, logical_id)


# ---------------------------------------------------------------------- template properties


def test_no_wildcard_resources_after_the_sam_transform(templates: dict[str, str]) -> None:
    """Every role, including the ones SAM creates, names its resources; '*' only where AWS
    has no resource-level permissions (and the statement's Sid says so)."""
    for name, text in templates.items():
        cfn = transform(text)
        roles = [rid for rid, res in cfn["Resources"].items() if res["Type"] == "AWS::IAM::Role"]
        assert roles, name
        for rid in roles:
            for statement in role_statements(cfn, rid):
                for resource in statement["Resource"]:
                    if resource == "*":
                        assert statement.get("Sid") in WILDCARD_REASONS, (name, rid, statement)
                    else:
                        assert not str(resource).endswith(":*:*"), (name, rid, statement)
                actions = statement["Action"]
                assert all(a != "*" and not a.endswith(":*") for a in actions), (name, rid, statement)


def test_bucket_is_encrypted_private_and_tls_only(templates: dict[str, str]) -> None:
    for name, text in templates.items():
        resources = load(text)["Resources"]
        props = resources[names.BUCKET_ID]["Properties"]
        encryption = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), name
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}, name
        assert len(props["PublicAccessBlockConfiguration"]) == 4, name
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], name
        assert "AccessControl" not in props, name
        policy = next(r for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy")
        denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        tls = [s for s in denies if s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
        assert tls and tls[0]["Action"] == "s3:*" and tls[0]["Principal"] == "*", name
        assert len(tls[0]["Resource"]) == 2, name  # the bucket and every object in it
        allows = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
        assert allows == [], name  # access only through the roles' own policies


def test_no_literal_secrets(templates: dict[str, str], report: CheckovReport) -> None:
    for name, text in templates.items():
        assert not LITERAL_SECRET.search(text), name
        assert not [f for f in report.for_file(f"{name}.yaml").failed if f.framework == "secrets"], name
        for resource in load(text)["Resources"].values():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            for key, value in variables.items():
                if re.search(r"(?i)secret|passw|token|api_?key|private_?key|credential", key):
                    assert isinstance(value, str) and re.match(r"^(/|arn:aws)", value), (name, key, value)


def test_a_secret_reference_reaches_the_function_as_a_reference(templates: dict[str, str]) -> None:
    resources = load(templates["secret-reference"])["Resources"]
    variables = resources[names.function_id("with_secret", "fetch")]["Properties"]["Environment"]["Variables"]
    assert variables["API_TOKEN_PARAM"] == "/lokki/demo/api-token"
    assert variables["DB_PASSWORD_ARN"].startswith("arn:aws:secretsmanager:")
