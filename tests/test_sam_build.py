"""The SAM CLI accepts the generated app: `sam validate --lint`, and `sam build` packages lokki-sam
(from a locally built wheel, via PIP_FIND_LINKS + PIP_NO_INDEX) with the shared code, built ONCE.

Two SAM CLI runs in total (each takes seconds; the CI machine has 2 shared cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokki_sam import names
from tests.support.sam import EXAMPLES, forget_module, load, make_app

BIN = Path(sys.executable).parent
SAM = BIN / "sam"


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("app")
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(Path(__file__).resolve().parents[1]),
            "-w",
            str(wheels),
            "--no-deps",
            "-q",
        ],
        check=True,
        capture_output=True,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        make_app(root, EXAMPLES)
    for example in EXAMPLES:
        forget_module(example.stem)
    (root / "src" / "requirements.txt").write_text("lokki-sam\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIP_", "LOKKI_"))}
    env.update(
        HOME=str(tmp_path_factory.mktemp("home")),
        SAM_CLI_TELEMETRY="0",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        # `sam build` runs pip in a subprocess that honours pip's environment variables:
        # lokki-sam comes from the wheel, nothing from an index.
        PIP_FIND_LINKS=str(wheels),
        PIP_NO_INDEX="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # python3.X matching the runtime
    )
    yield root, env


def test_sam_validate_lint(built_app: tuple[Path, dict[str, str]]) -> None:
    root, env = built_app
    done = subprocess.run([str(SAM), "validate", "--lint"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout


def test_sam_build_builds_the_shared_code_once(built_app: tuple[Path, dict[str, str]]) -> None:
    root, env = built_app
    done = subprocess.run([str(SAM), "build"], cwd=root, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    functions = sorted(
        rid
        for rid, r in load((root / "template.yaml").read_text())["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    )
    builds = [line for line in output.splitlines() if line.startswith("Building codeuri:")]
    assert len(builds) == 1, output  # one build definition for every function
    assert sorted(builds[0].split("functions:")[1].replace(",", " ").split()) == functions
    assert "Build Succeeded" in output
    for function in functions:
        package = root / ".aws-sam" / "build" / function
        assert (package / "lokki_sam" / "runtime.py").is_file(), function
        assert (package / "data").is_dir() or not (root / "src" / "data").is_dir()
    # The package imports the runtime and the flow modules on their own, as Lambda would:
    # an isolated interpreter with only the package on sys.path (plus the stdlib).
    package = root / ".aws-sam" / "build" / functions[0]
    modules = " ".join(f"import {p.stem};" for p in EXAMPLES)
    probe = (
        f"import sys; sys.path[:0] = [{str(package)!r}]; import lokki_sam.runtime; {modules}"
        "import lokki_sam; print(lokki_sam.__file__)"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(package))
    assert names.HANDLER == "lokki_sam.runtime.handler"
