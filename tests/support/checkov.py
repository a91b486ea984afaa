"""checkov (the IaC security scanner) in its own cached venv, run over CloudFormation/SAM templates.

checkov pins many packages (boto3 among them), so it never shares the project's venv: it is installed
once under ~/.cache/lokki-sam/ (or $LOKKI_SAM_CACHE), keyed by its version, under a file lock.

Usage:
    report = scan([Path("template.yaml")], home=tmp)   # -> CheckovReport(passed, failed, skipped, ...)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.venvs import cached_venv

CHECKOV_VERSION = "3.3.30"


class CheckovUnavailable(RuntimeError):
    """checkov's venv cannot be created (no registry, no network)."""


def ensure_venv() -> Path:
    """The cached venv holding checkov; built once."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    name = f"checkov-{CHECKOV_VERSION}-py{py}"
    return cached_venv(name, sys.executable, [f"checkov=={CHECKOV_VERSION}"], CheckovUnavailable)


@dataclass(frozen=True)
class Finding:
    framework: str  # "cloudformation" or "secrets"
    check_id: str
    check_name: str
    resource: str
    file: str  # the template's file name
    suppress_comment: str | None = None


@dataclass(frozen=True)
class CheckovReport:
    passed: list[Finding]
    failed: list[Finding]
    skipped: list[Finding]
    parsing_errors: list[str]

    def for_file(self, name: str) -> CheckovReport:
        def keep(items: list[Finding]) -> list[Finding]:
            return [f for f in items if f.file == name]

        return CheckovReport(keep(self.passed), keep(self.failed), keep(self.skipped), [])


def _findings(framework: str, checks: list[dict[str, Any]]) -> list[Finding]:
    return [
        Finding(
            framework=framework,
            check_id=c["check_id"],
            check_name=c.get("check_name", ""),
            resource=c.get("resource", ""),
            file=Path(c.get("file_path", "")).name,
            suppress_comment=(c.get("check_result") or {}).get("suppress_comment"),
        )
        for c in checks
    ]


def scan(
    templates: list[Path], *, home: Path, frameworks: tuple[str, ...] = ("cloudformation", "secrets")
) -> CheckovReport:
    """Run checkov offline over `templates` (distinct file names) in one process; merge the results."""
    venv = ensure_venv()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BC_", "PRISMA_", "CHECKOV_"))}
    # Offline and anonymous: no platform API key (so no upload), a private HOME.
    env.update(HOME=str(home), BC_SKIP_MAPPING="TRUE", LOG_LEVEL="ERROR")
    cmd = [str(venv / "bin" / "checkov"), "--framework", *frameworks, "--output", "json", "--compact"]
    cmd += ["--skip-download"]
    for template in templates:
        cmd += ["-f", str(template)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=home, timeout=900)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():  # 1 means "some check failed"
        raise CheckovUnavailable(f"checkov exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout)
    reports = data if isinstance(data, list) else [data]
    passed: list[Finding] = []
    failed: list[Finding] = []
    skipped: list[Finding] = []
    errors: list[str] = []
    for report in reports:
        framework = report.get("check_type", "?")
        results = report.get("results", {})
        passed += _findings(framework, results.get("passed_checks", []))
        failed += _findings(framework, results.get("failed_checks", []))
        skipped += _findings(framework, results.get("skipped_checks", []))
        errors += [str(e) for e in results.get("parsing_errors", [])]
    return CheckovReport(passed, failed, skipped, errors)
