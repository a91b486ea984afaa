"""docs/recipes.md, as written: each recipe's code block is a flow module; it runs on the local runner
against moto (S3, DynamoDB, SSM, Secrets Manager stand in for the user's own resources), and the
template `lokki-sam generate` writes for it gives the step exactly the environment and the IAM
statements the recipe declares, and no other function any of them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from lokki_sam.loader import load_flow
from lokki_sam.testing import run_flow_in_process
from tests.support.sam import forget_module, make_app

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
REGION = "us-east-1"


def recipe(name: str, folder: Path) -> Path:
    """The recipe's code block, written to `folder` as a module named after it."""
    found = re.search(rf"<!-- recipe: {name} -->\n```python\n(.*?)```", RECIPES.read_text(), flags=re.S)
    assert found, f"no recipe '{name}' in {RECIPES}"
    module = folder / f"recipe_{name}.py"
    module.write_text(found.group(1))
    forget_module(module.stem)
    return module


@pytest.fixture
def aws() -> Iterator[None]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    with mock.patch.dict(os.environ, env), mock_aws():
        yield


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}


def role_policies(template: dict[str, Any]) -> dict[str, str]:
    """Each function's role's policies as JSON text, by function id (roles are `<function>Role`)."""
    resources = template["Resources"]
    return {name: json.dumps(resources[f"{name}Role"]["Properties"]["Policies"]) for name in functions(template)}


def template_of(module: Path, root: Path) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    template: dict[str, Any] = yaml_parse(make_app(root, [module]).read_text())
    forget_module(module.stem)
    return template


def test_the_sink_recipe_writes_the_result_to_your_bucket_and_table_once(aws: None, tmp_path: Path) -> None:
    module = recipe("sink", tmp_path)
    s3, dynamodb = boto3.client("s3", region_name=REGION), boto3.client("dynamodb", region_name=REGION)
    s3.create_bucket(Bucket="my-results")
    dynamodb.create_table(
        TableName="daily-totals",
        KeySchema=[{"AttributeName": "day", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "day", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    flow = load_flow(f"{module}:daily_sales")
    for _ in range(2):  # a second run (a retry, a resume) writes the same object and item again
        run = run_flow_in_process(flow, day="2026-03-01")
        assert run.result == "s3://my-results/daily/2026-03-01.json"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="my-results")["Contents"]]
    assert keys == ["daily/2026-03-01.json"]
    rows = json.loads(s3.get_object(Bucket="my-results", Key=keys[0])["Body"].read())
    assert [row["total"] for row in rows] == [12.0, 24.0, 36.0, 48.0, 60.0]
    (item,) = dynamodb.scan(TableName="daily-totals")["Items"]
    assert item == {"day": {"S": "2026-03-01"}, "total": {"N": "180.0"}, "orders": {"N": "5"}}
    forget_module(module.stem)

    template = template_of(module, tmp_path / "app")
    publish = functions(template)["DailySalesPublishFunction"]
    assert publish["Environment"]["Variables"]["RESULTS_BUCKET"] == "my-results"
    assert publish["Environment"]["Variables"]["RESULTS_TABLE"] == "daily-totals"
    policies = role_policies(template)
    own = policies.pop("DailySalesPublishFunction")
    assert '"Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::my-results/daily/*"' in own
    assert "arn:aws:dynamodb:us-east-1:123456789012:table/daily-totals" in own
    assert policies and not any("my-results" in p or "daily-totals" in p for p in policies.values())


def test_the_secrets_recipe_reads_them_at_run_time_and_the_template_holds_only_references(
    aws: None, tmp_path: Path
) -> None:
    module = recipe("secrets", tmp_path)
    token = "tok-" + "x" * 24
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/daily-report/api-token", Value=token, Type="SecureString"
    )
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="daily-report/db", SecretString=json.dumps({"host": "db.internal", "password": "pw-" + "y" * 20})
    )
    run = run_flow_in_process(load_flow(f"{module}:daily_report"))
    assert run.result == [
        {"region": "north", "authenticated": True, "database": "db.internal"},
        {"region": "south", "authenticated": True, "database": "db.internal"},
    ]
    forget_module(module.stem)

    app = tmp_path / "app"
    template = template_of(module, app)
    variables = functions(template)["DailyReportReportFunction"]["Environment"]["Variables"]
    assert variables["API_TOKEN_PARAMETER"] == "/daily-report/api-token"
    assert variables["DB_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    policies = role_policies(template)
    own = policies.pop("DailyReportReportFunction")
    assert "ssm:GetParameter" in own and "secretsmanager:GetSecretValue" in own
    assert not any("daily-report" in p for p in policies.values())
    written = "".join(p.read_text() for p in app.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json"))
    assert token not in written and "pw-" not in written  # no value anywhere in what generate wrote
