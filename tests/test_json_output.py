"""`--json` is a contract: stdout holds one JSON document, on success and on every error, and
what steps write (print, a logging handler bound to stdout at import, a child process) goes to
stderr, with or without --json, for `lokki-sam run`, `plan` and a flow module's own `main(flow)`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import lokki_env

Lokki = Callable[..., subprocess.CompletedProcess[str]]

NOISY = """
import logging, os, subprocess, sys
from lokki_sam import flow, main, step

HANDLER = logging.StreamHandler(sys.stdout)  # bound to the real stdout when the module is imported
LOG = logging.getLogger("noisy")
LOG.addHandler(HANDLER)
LOG.setLevel("INFO")

@step
def source(n: int = 3) -> list[int]:
    print("print from source")
    LOG.info("logged from source")
    subprocess.run([sys.executable, "-c", "print('child process of source')"], check=True)
    os.write(1, b"raw write to fd 1\\n")
    return list(range(n))

@step
def item(x: int) -> int:
    print(f"print from item {x}")
    return x * 10

@step
def total(xs: list[int]) -> int:
    print("print from total")
    if len(xs) > 5:
        raise ValueError("more than five")
    return sum(xs)

@flow
def noisy(n: int = 3):
    return source(n=n).map(item).agg(total)

if __name__ == "__main__":
    main(noisy)
"""
SAID = ["print from source", "logged from source", "child process of source", "raw write to fd 1", "print from total"]


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    path = tmp_path / "noisy.py"
    path.write_text(NOISY)
    return path


def script(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python noisy.py ARGS`: the flow module's own command line."""
    env = lokki_env(path.parent)
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=env, cwd=path.parent)


def only_json(stdout: str) -> Any:
    return json.loads(stdout)  # fails on anything else in stdout


def test_run_json_stdout_is_the_result_alone(noisy: Path, lokki: Lokki) -> None:
    done = lokki("run", str(noisy), "--json", "--store", "runs")
    assert done.returncode == 0, done.stderr
    document = only_json(done.stdout)
    assert document["result"] == 30 and document["flow"] == "noisy" and document["failed_items"] == []
    assert all(text in done.stderr for text in SAID)
    assert all(f"print from item {x}" in done.stderr for x in range(3))


@pytest.mark.parametrize("flags", [[], ["-q"], ["-v"]])
def test_run_without_json_prints_the_result_alone_on_stdout(noisy: Path, lokki: Lokki, flags: list[str]) -> None:
    done = lokki("run", str(noisy), "--store", "runs", *flags)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "30\n"
    assert all(text in done.stderr for text in SAID)


def test_main_of_a_flow_module_keeps_the_same_contract(noisy: Path) -> None:
    done = script(noisy, "run", "--json", "--store", "runs", "--n", "2")
    assert done.returncode == 0, done.stderr
    assert only_json(done.stdout)["result"] == 10
    assert all(text in done.stderr for text in SAID)
    quiet = script(noisy, "run", "-q", "--store", "runs")
    assert quiet.stdout == "30\n"


def test_a_failed_run_is_an_error_document_naming_the_run(noisy: Path, lokki: Lokki) -> None:
    done = lokki("run", str(noisy), "--json", "--store", "runs", "-p", "n=7")
    assert done.returncode == 1
    document = only_json(done.stdout)
    error = document["error"]
    assert error["type"] == "StepFailed" and error["exit_code"] == 1
    assert error["message"].startswith("step 'total' failed: ValueError: more than five")
    assert error["hint"] == f"fix it, then resume with: --resume {document['run_id']}"
    assert document["flow"] == "noisy" and (noisy.parent / "runs" / document["run_id"] / "run.json").exists()
    assert "error: " in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "kind", "said"),
    [
        (["-p", "nn=2"], "ParamError", "unknown parameter(s) nn (did you mean n?)"),
        (["-p", "n=many"], "ParamError", "parameter 'n' expects int"),
        (["--resume", "noisy-20260101T000000-000000"], "LokkiError", "no run noisy-20260101T000000-000000"),
        (["--frobnicate"], "NoSuchOption", "No such option: --frobnicate"),
        (["--stor", "x"], "NoSuchOption", "No such option: --stor. Did you mean --store?"),
    ],
)
def test_bad_input_is_an_error_document(noisy: Path, lokki: Lokki, args: list[str], kind: str, said: str) -> None:
    done = lokki("run", str(noisy), "--json", *args)
    assert done.returncode == 2, done.stderr
    error = only_json(done.stdout)["error"]
    assert (error["type"], error["exit_code"]) == (kind, 2) and said in error["message"]
    assert said in done.stderr and "Traceback" not in done.stderr
    assert not (noisy.parent / "calls").exists()


def test_main_bad_input_is_an_error_document(noisy: Path) -> None:
    unknown = script(noisy, "run", "--json", "--nn", "2")
    assert unknown.returncode == 2
    assert only_json(unknown.stdout)["error"]["message"] == "No such option: --nn. Did you mean --n?"
    bad = script(noisy, "run", "--json", "--n", "many")
    assert bad.returncode == 2 and "parameter 'n' expects int" in only_json(bad.stdout)["error"]["message"]


def test_plan_json_is_one_document_also_over_a_limit(noisy: Path, lokki: Lokki) -> None:
    sized = lokki("plan", str(noisy), "--json", "--stack-name", "demo", "--measure")
    assert sized.returncode == 0, sized.stderr
    assert only_json(sized.stdout)["maps"]["map-item"]["items"] == 3
    assert all(text in sized.stderr for text in SAID)
    over = lokki("plan", str(noisy), "--json", "--stack-name", "demo", "--items", "200000000")
    assert over.returncode == 1
    document = only_json(over.stdout)
    assert document["error"]["exit_code"] == 1 and "ItemReader items [map-item]" in document["error"]["message"]
    assert [limit["ok"] for limit in document["limits"] if limit["check"] == "ItemReader items"] == [False]
    bad = lokki("plan", str(noisy), "--json", "--items", "lots")
    assert bad.returncode == 2 and "not a whole number" in only_json(bad.stdout)["error"]["message"]
