"""The SAM CLI accepts the generated app: `sam validate --lint`, and `sam build` builds it with no
package index for lokki-sam (PIP_NO_INDEX=1, no PIP_FIND_LINKS): the shared code once, and the
lokki-sam runtime layer from the installed lokki-sam through the generated Makefile.

Two SAM CLI runs in total (each takes seconds; the CI machine has 2 shared cores)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokki_sam import __version__, names
from lokki_sam.compile.layers import RUNTIME_LAYER_ID
from lokki_sam.packaging import CLI_ONLY
from tests.support.sam import EXAMPLES, forget_module, load, make_app

BIN = Path(sys.executable).parent
SAM = BIN / "sam"
CLI_PACKAGES = ("click", "rich", "ruamel", "yaml")


def build_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIP_", "LOKKI_"))}
    env.update(
        HOME=str(home),
        SAM_CLI_TELEMETRY="0",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        PIP_NO_INDEX="1",  # nothing may come from a package index
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # lokki-sam (the Makefile) and python3.X
    )
    return env


@pytest.fixture(scope="module")
def built_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        make_app(root, EXAMPLES)
    for example in EXAMPLES:
        forget_module(example.stem)
    yield root, build_env(tmp_path_factory.mktemp("home"))


def test_sam_validate_lint(built_app: tuple[Path, dict[str, str]]) -> None:
    root, env = built_app
    done = subprocess.run([str(SAM), "validate", "--lint"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout


def test_sam_build_builds_the_code_once_and_the_runtime_layer_from_the_installed_lokki_sam(
    built_app: tuple[Path, dict[str, str]],
) -> None:
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
    assert f"Building layer '{RUNTIME_LAYER_ID}'" in output and "Build Succeeded" in output
    build = root / ".aws-sam" / "build"
    layer = build / RUNTIME_LAYER_ID / "python"
    # The layer: lokki-sam's runtime at exactly this version, without the command line's parts.
    assert (layer / "lokki_sam" / "runtime.py").is_file()
    assert f'__version__ = "{__version__}"' in (layer / "lokki_sam" / "__init__.py").read_text()
    assert not [name for name in CLI_ONLY if (layer / "lokki_sam" / name).exists()]
    for function in functions:
        package = build / function
        assert not (package / "lokki_sam").exists(), function  # lokki-sam comes from the layer only
        assert (package / "data").is_dir() or not (root / "src" / "data").is_dir()
        present = {p.name.split("-")[0].split(".")[0].lower() for p in package.iterdir()}
        assert not present & set(CLI_PACKAGES), (function, present)
    assert not {p.name.split("-")[0].lower() for p in layer.iterdir()} & set(CLI_PACKAGES)
    # Code + layer import the runtime and the flow modules on their own, as Lambda would:
    # an isolated interpreter with only those on sys.path (plus the stdlib; boto3 loads lazily).
    package = build / functions[0]
    modules = " ".join(f"import {p.stem};" for p in EXAMPLES)
    probe = (
        f"import sys; sys.path[:0] = [{str(package)!r}, {str(layer)!r}]; import lokki_sam.runtime; {modules}"
        "import lokki_sam; print(lokki_sam.__file__)"
    )
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(layer))
    assert names.HANDLER == "lokki_sam.runtime.handler"
    sizes = subprocess.run([str(BIN / "lokki-sam"), "size"], cwd=root, env=env, capture_output=True, text=True)
    assert sizes.returncode == 0, sizes.stderr
    assert len(sizes.stdout.splitlines()) == len(functions) and RUNTIME_LAYER_ID in sizes.stdout


def test_a_runtime_layer_of_another_version_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "lokki-sam"), "runtime-layer", str(tmp_path / "out"), "--version", "0.0.9"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert f"generated by lokki-sam 0.0.9, but the lokki-sam installed here is {__version__}" in done.stderr
    assert "pip install lokki-sam==0.0.9" in done.stderr and not (tmp_path / "out").exists()
