"""Helpers for the Serverless Framework target: generate an app, run the framework (osls) on it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lokki_sam import names
from tests.support.sam import REPO, forget_module, make_app, restored_sys_path

OSLS = REPO / "node_modules" / ".bin" / "osls"


def make_serverless_app(root: Path, sources: Iterable[Path], **config: Any) -> Path:
    """`generate --target serverless` in-process for copies of `sources` in root/src; returns serverless.yml."""
    return make_app(root, sources, target="serverless", **config)


def generate(root: Path, *args: str, module: str = "") -> tuple[int, str, str]:
    """`lokki-sam generate --target serverless ARGS` through click's runner, in `root`."""
    from click.testing import CliRunner

    from lokki_sam.cli import cli

    if module:
        forget_module(module)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        with restored_sys_path():
            result = CliRunner(mix_stderr=False).invoke(cli, ["generate", "--target", "serverless", *args])
    finally:
        os.chdir(cwd)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def osls_env(home: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The framework against a local endpoint (serverless-localstack reads AWS_ENDPOINT_URL for --stage local)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOKKI_"))}
    env.update(
        HOME=str(home),
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        SLS_TELEMETRY_DISABLED="1",
        SLS_NOTIFICATIONS_MODE="off",
    )
    env.update(extra)
    return env


def osls(app: Path, *args: str, env: Mapping[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`osls ARGS` in the app's folder, with the repository's node_modules (npm ci) as the app's."""
    link = app / "node_modules"
    if not link.exists():
        link.symlink_to(REPO / "node_modules", target_is_directory=True)
    return subprocess.run([str(OSLS), *args], cwd=app, env=dict(env), capture_output=True, text=True, timeout=timeout)


def packaged(app: Path) -> dict[str, Any]:
    """The CloudFormation template `osls package` wrote."""
    return dict(json.loads((app / ".serverless" / "cloudformation-template-update-stack.json").read_text()))


def canonical_ids(flows: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Serverless logical IDs -> the SAM template's, for comparing what the two reference."""
    out = {}
    for flow, steps in flows.items():
        for step in steps:
            out[names.serverless_function_id(flow, step)] = names.function_id(flow, step)
            out[f"{names.serverless_function_key(flow, step)}LogGroup"] = f"{names.function_id(flow, step)}LogGroup"
    return out
