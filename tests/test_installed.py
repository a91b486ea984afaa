"""A local run checks the steps' own requirements against this environment before any step runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lokki_sam.installed import RequirementsMissing
from lokki_sam.loader import load_flow
from lokki_sam.local import run_flow

FLOW = """
from pathlib import Path
from lokki_sam import flow, step

def called(name):
    with open(Path(__file__).parent / "calls.log", "a") as log:
        log.write(name + "\\n")

@step
def source(n: int = 3) -> list[int]:
    called("source")
    return list(range(n))

@step(requirements={requirements!r})
def heavy(x: int) -> int:
    called(f"heavy-{{x}}")
    return x

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def needs(n: int = 3):
    return source(n=n).map(heavy).agg(total)
"""

MISSING = "lokki-sam-no-such-distribution==1.0"
TOO_OLD = "pytest<1"  # pytest is installed (it runs this), at 8 or later
MET = ["click>=8", "pytest>=1; python_version >= '3'", "no-such-thing==1; python_version < '3'"]


def write(tmp_path: Path, requirements: Any) -> Path:
    path = tmp_path / "needs.py"
    path.write_text(FLOW.format(requirements=requirements))
    return path


@pytest.fixture
def unload() -> Any:
    yield
    sys.modules.pop("needs", None)


def test_unmet_requirements_refuse_the_run_before_any_step(tmp_path: Path, unload: Any) -> None:
    flow_obj = load_flow(str(write(tmp_path, [MISSING, TOO_OLD, *MET])))
    with pytest.raises(RequirementsMissing) as caught:
        run_flow(flow_obj, store=tmp_path / "runs")
    text = caught.value.render()
    assert caught.value.exit_code == 2
    assert f"step 'heavy' requires {MISSING}: not installed" in text
    assert "step 'heavy' requires pytest<1: pytest " in text and " is installed" in text
    assert "click" not in text and "no-such-thing" not in text  # met, or not for this Python
    assert caught.value.where == "flow 'needs'"
    assert caught.value.hint == f"install them: python -m pip install {MISSING} 'pytest<1'"
    assert not (tmp_path / "calls.log").exists() and not (tmp_path / "runs").exists()  # nothing ran


def test_met_requirements_run(tmp_path: Path, unload: Any) -> None:
    flow_obj = load_flow(str(write(tmp_path, MET)))
    assert run_flow(flow_obj, store=tmp_path / "runs").result == 0 + 1 + 2


def test_a_requirements_file_is_read_next_to_the_module(tmp_path: Path, unload: Any) -> None:
    (tmp_path / "reqs").mkdir()
    (tmp_path / "reqs" / "heavy.txt").write_text(f"# what heavy needs\nclick>=8\n{MISSING}  # pinned\n")
    flow_obj = load_flow(str(write(tmp_path, "reqs/heavy.txt")))
    with pytest.raises(RequirementsMissing, match=f"step 'heavy' requires {MISSING}: not installed"):
        run_flow(flow_obj, store=tmp_path / "runs")


def test_the_cli_refuses_with_exit_2_naming_the_pip_command(
    tmp_path: Path, lokki: Callable[..., Any], unload: Any
) -> None:
    path = write(tmp_path, [MISSING])
    for command in (["run", str(path)], ["plan", str(path)], ["run", str(path), "--json"]):
        done = lokki(*command)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert f"step 'heavy' requires {MISSING}: not installed" in done.stderr
        assert f"hint: install them: python -m pip install {MISSING}" in done.stderr
    assert not (tmp_path / "calls.log").exists()
    sized = lokki("plan", str(path), "--items", "5")  # nothing runs locally: nothing to check
    assert sized.returncode == 0, sized.stderr
