"""Shared, generic fixtures. Keep this small: test-specific helpers live in their test module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# The console script installed next to this interpreter (the venv running the tests).
LOKKI_SAM = str(Path(sys.executable).with_name("lokki-sam"))


# Tests by cost (markers registered in pyproject.toml). The quick loop, well under a minute:
#     pytest -n 2 -m "not (cli or emulator or external or journey or docker)"
# CI runs everything. A module's cost is its heaviest dependency:
COST_BY_MODULE = {
    "test_journey": ("journey", "emulator", "external"),
    "test_invoke_ministack": ("emulator",),
    "test_invoke_moto": ("emulator",),
    "test_cloud_equivalence": ("emulator",),
    "test_faults": ("emulator", "cli"),
    "test_cookiecutter": ("external", "journey"),
    "test_sam_build": ("external",),
    "test_sam_template": ("external",),
    "test_security_scan": ("external",),
    "test_packaging": ("external", "cli"),
    "test_docker_infra": ("docker", "external"),
    "test_sam_local": ("docker", "external", "emulator"),
    "test_sam_guided": ("emulator", "external"),
    "test_imports": ("cli",),
    "test_emulator_runtime": ("emulator",),
    "test_emulator_localstack": ("emulator", "external"),
    "test_emulator_cli": ("emulator", "cli"),
    "test_resume_moto": ("emulator", "cli"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        for marker in COST_BY_MODULE.get(module, ()):
            item.add_marker(marker)
        if "lokki" in getattr(item, "fixturenames", ()):  # runs the lokki-sam command in subprocesses
            item.add_marker("cli")
        if "asl_validator" in item.name:  # npm's asl-validator
            item.add_marker("external")


def pytest_configure(config: pytest.Config) -> None:
    # Under `pytest -n N`, each test file runs on one worker (xdist's loadfile, instead of the
    # default per-test "load"): the journey builds and deploys each engine's app once, not once
    # per worker that picks up one of its tests.
    if getattr(config.option, "dist", None) == "load":
        config.option.dist = "loadfile"


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and a region for every test, so nothing can reach a real AWS account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name in [n for n in os.environ if n.startswith("LOKKI_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def write_module(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a flow module into tmp_path: write_module("name", source) -> path of name.py."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source).lstrip())
        return path

    return write


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (tmp_path with src/) as the working directory, with a private HOME."""
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def unload_modules() -> Iterator[None]:
    """Forget modules imported by a test (flow files written to tmp dirs often share names)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        # lokki-sam's own modules stay: one imported again would hold other classes than the
        # modules that imported it first (a renderer's dispatch on a model class would miss).
        if name.split(".")[0] != "lokki_sam":
            del sys.modules[name]


def lokki_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a `lokki-sam` subprocess: dummy AWS settings, a private HOME, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOKKI_", "AWS_"))}
    env.update(
        HOME=str(home),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


def sam_cli_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for a SAM CLI subprocess: `lokki_env` without this machine's pip settings, and
    this venv's bin first on PATH (lokki-sam for the generated Makefile, python3.X for the build)."""
    env = {k: v for k, v in lokki_env(home).items() if not k.startswith("PIP_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture
def lokki(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `lokki-sam ARGS` as a subprocess in tmp_path: lokki("run", "flow.py", check=False)."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LOKKI_SAM, *args],
            cwd=cwd or tmp_path,
            env=lokki_env(tmp_path, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def backoff() -> Iterator[list[float]]:
    """botocore's retry sleeps, recorded instead of slept (the delays are botocore's own)."""
    delays: list[float] = []
    with mock.patch("botocore.endpoint.time.sleep", side_effect=delays.append):
        yield delays
