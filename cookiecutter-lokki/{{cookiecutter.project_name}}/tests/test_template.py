"""template.yaml (or serverless.yml), statemachine/ and events/ are generated from the flow: fail when stale."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generated_files_match_the_flow() -> None:
    if importlib.util.find_spec("lokki_sam") is None:
        pytest.skip("lokki-sam is not installed: pip install -r requirements-dev.txt")
    done = subprocess.run(
        [sys.executable, "-c", "from lokki_sam.cli import main; main()", "generate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"run `lokki-sam generate` to refresh the generated files:\n{done.stdout}{done.stderr}"
