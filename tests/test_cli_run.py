"""`lokki-sam run` and `main(flow)` as a user runs them (subprocesses): results, logs, and every bad input.

Bad input exits 2 with a message naming what and where, and never a traceback; a failing step
exits 1, naming the step, the map item and the run id to resume with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, REPO, lokki_env

Lokki = Callable[..., subprocess.CompletedProcess[str]]
Writer = Callable[[str, str], Path]


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "error: " in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


STEPS = """
from lokki_sam import flow, step

@step
def nums(n: int = 3) -> list[int]:
    return list(range(n))

@step
def inc(x: int) -> int:
    return x + 1

@step
def total(xs: list[int]) -> int:
    return sum(xs)
"""


# ---------------------------------------------------------------------------- success


def test_birds_runs_and_prints_the_result(lokki: Lokki) -> None:
    result = lokki("run", str(EXAMPLES / "birds.py"), "-p", "limit=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "flappy goose, flappy duck\n"
    assert "succeeded" in result.stderr and "\x1b[" not in result.stderr  # plain text when not a terminal


def test_result_persisted_under_store_and_default_dir(lokki: Lokki, tmp_path: Path) -> None:
    result = lokki("run", str(EXAMPLES / "birds.py"), "-q")
    assert result.returncode == 0 and result.stdout == "flappy goose, flappy duck, flappy seagull\n"
    assert result.stderr == ""
    (run_dir,) = (tmp_path / ".lokki" / "runs").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "succeeded"


def test_json_logs_are_json_lines_and_result_is_json(lokki: Lokki, tmp_path: Path) -> None:
    result = lokki("run", str(EXAMPLES / "birds.py"), "--json", "--store", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert {"step_started", "map_started", "map_finished", "step_finished"} <= set(names)
    assert events[-1]["status"] == "succeeded"
    payload = json.loads(result.stdout)
    assert payload["result"] == "flappy goose, flappy duck, flappy seagull"
    assert payload["run_id"] == events[0]["run_id"] and payload["params"] == {"limit": 3}
    assert payload["failed_items"] == []


def test_structured_params_from_cli_strings(lokki: Lokki, write_module: Writer) -> None:
    path = write_module(
        "structured",
        """
        from typing import Optional
        from lokki_sam import flow, step

        @step
        def build(names: list[str], cfg: dict, ratio: float = 1.0, flag: bool = False,
                  limit: Optional[int] = None) -> dict:
            return {"names": names, "cfg": cfg, "ratio": ratio, "flag": flag, "limit": limit}

        @flow
        def structured(names: list[str], cfg: dict, ratio: float = 1.0, flag: bool = False,
                       limit: Optional[int] = None):
            return build(names=names, cfg=cfg, ratio=ratio, flag=flag, limit=limit)
        """,
    )
    result = lokki(
        "run", str(path), "-q", "-p", "names=a,b", "-p", 'cfg={"a": 1}', "-p", "ratio=0.25", "-p", "flag=yes"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "names": ["a", "b"],
        "cfg": {"a": 1},
        "ratio": 0.25,
        "flag": True,
        "limit": None,
    }
    result = lokki("run", f"{path}:structured", "-q", "-p", 'names=["x"]', "-p", "cfg={}", "-p", "limit=4")
    assert json.loads(result.stdout)["limit"] == 4


def test_module_ref_and_config_flow(lokki: Lokki, tmp_path: Path, write_module: Writer) -> None:
    write_module("mod_flow", STEPS + "\n@flow\ndef counted(n: int = 3):\n    return nums(n=n).map(inc).agg(total)\n")
    assert lokki("run", "mod_flow", "-q").stdout == "6\n"
    assert lokki("run", "mod_flow:counted", "-q", "-p", "n=4").stdout == "10\n"
    (tmp_path / "lokki.toml").write_text('flow = "mod_flow.py:counted"\n')
    assert lokki("run", "-q").stdout == "6\n"


def test_main_gives_a_flow_module_its_own_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "birds.py"), "run", "--limit", "2", "-q"],
        cwd=tmp_path,
        env=lokki_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "flappy goose, flappy duck\n"
    bad = subprocess.run(
        [sys.executable, str(EXAMPLES / "birds.py"), "run", "--limit", "many"],
        cwd=tmp_path,
        env=lokki_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_usage_error(bad, "parameter 'limit' expects int, got 'many'")


def test_help_and_version(lokki: Lokki) -> None:
    result = lokki("--version")
    assert result.returncode == 0 and "lokki-sam" in result.stdout
    result = lokki("run", "--help")
    assert result.returncode == 0 and "FLOW_REF" in result.stdout and "--resume" in result.stdout


# -------------------------------------------------------------------------- bad input


def test_file_not_found(lokki: Lokki) -> None:
    assert_usage_error(lokki("run", "missing/flow.py"), "file not found: missing/flow.py")


def test_module_not_found(lokki: Lokki) -> None:
    assert_usage_error(lokki("run", "no_such_pkg.flows"), "module not found: no_such_pkg.flows", "hint:")


def test_module_import_fails_shows_user_error_briefly(lokki: Lokki, write_module: Writer) -> None:
    path = write_module("broken", "import json\n\nSETTINGS = json.loads('{bad')\n")
    result = lokki("run", str(path))
    assert_usage_error(result, "importing broken failed: JSONDecodeError", "broken.py:3")
    assert len(result.stderr.splitlines()) <= 4


def test_module_imports_missing_dependency(lokki: Lokki, write_module: Writer) -> None:
    path = write_module("needs_dep", "import pandas_not_installed_here\n")
    assert_usage_error(lokki("run", str(path)), "ModuleNotFoundError", "pandas_not_installed_here")


def test_no_flow_in_module(lokki: Lokki, write_module: Writer) -> None:
    assert_usage_error(lokki("run", str(write_module("noflow", STEPS))), "no flow in", "decorate a function with @flow")


def test_several_flows_none_chosen(lokki: Lokki) -> None:
    result = lokki("run", str(EXAMPLES / "numeric.py"))
    assert_usage_error(result, "defines several flows (pi, zscores); choose one", "numeric.py:pi")


def test_named_flow_missing(lokki: Lokki) -> None:
    assert_usage_error(lokki("run", f"{EXAMPLES / 'numeric.py'}:tau"), "no flow 'tau'", "flows there: pi, zscores")


def test_no_flow_ref_and_no_config(lokki: Lokki) -> None:
    assert_usage_error(lokki("run"), "no FLOW_REF given")


def test_invalid_graph_shape(lokki: Lokki, write_module: Writer) -> None:
    path = write_module("nested", STEPS + "\n@flow\ndef nested():\n    return nums().map(inc().map(inc)).agg(total)\n")
    assert_usage_error(lokki("run", str(path)), "flow 'nested'", "nested maps) is not supported")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-p", "bogus=1"], ["unknown parameter(s) bogus", "this flow accepts: limit"]),
        (["-p", "limit=three"], ["parameter 'limit' expects int, got 'three'", "-p limit=<int>"]),
        (["-p", "limit"], ["bad parameter 'limit'", "-p name=value"]),
        (["-p", "limit=1", "-p", "limit=2"], ["parameter 'limit' given twice"]),
    ],
)
def test_bad_params(lokki: Lokki, args: list[str], fragments: list[str]) -> None:
    assert_usage_error(lokki("run", str(EXAMPLES / "birds.py"), *args), *fragments)


def test_missing_required_param(lokki: Lokki, write_module: Writer) -> None:
    path = write_module("required", STEPS + "\n@flow\ndef required(n: int):\n    return nums(n=n).map(inc)\n")
    assert_usage_error(lokki("run", str(path)), "missing required parameter 'n' (int)", "-p n=<int>")


def test_unserializable_result(lokki: Lokki, write_module: Writer) -> None:
    path = write_module(
        "unpicklable",
        STEPS + "\n@step\ndef opener(xs):\n    return (x for x in xs)\n\n"
        "@flow\ndef unpicklable():\n    return nums().next(opener)\n",
    )
    assert_usage_error(lokki("run", str(path)), "result of step 'opener' of type generator cannot be serialized")


def test_map_source_not_a_list(lokki: Lokki, write_module: Writer) -> None:
    path = write_module(
        "notlist",
        STEPS + "\n@step\ndef one() -> int:\n    return 1\n\n@flow\ndef notlist():\n    return one().map(inc)\n",
    )
    assert_usage_error(lokki("run", str(path)), "step 'one' feeds .map(inc) but returned int, not a list")


@pytest.mark.parametrize(
    ("toml", "env", "fragments"),
    [
        ("bogus = 1\n", {}, ["lokki.toml: unknown key 'bogus'", "known keys:"]),
        ('concurrency = "many"\n', {}, ["lokki.toml: 'concurrency' must be int, got 'many'"]),
        ("concurrency = 0\n", {}, ["'concurrency' must be at least 1"]),
        ("concurrency = [\n", {}, ["lokki.toml: invalid TOML"]),
        ("", {"LOKKI_CONCURRENCY": "lots"}, ["environment variable LOKKI_CONCURRENCY: 'concurrency' must be int"]),
    ],
)
def test_bad_config(lokki: Lokki, tmp_path: Path, toml: str, env: dict[str, str], fragments: list[str]) -> None:
    (tmp_path / "lokki.toml").write_text(toml)
    assert_usage_error(lokki("run", str(EXAMPLES / "birds.py"), **env), *fragments)


def test_bad_pyproject_tool_lokki(lokki: Lokki, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.lokki]\nstore = 5\n")
    assert_usage_error(
        lokki("run", str(EXAMPLES / "birds.py")), "pyproject.toml [tool.lokki]: 'store' must be a string"
    )


def test_failing_step_exits_1_naming_step_item_and_run_id(lokki: Lokki, write_module: Writer) -> None:
    path = write_module(
        "failing",
        STEPS + "\n@step\ndef picky(x: int) -> int:\n    if x == 2:\n        raise ValueError('two is bad')\n"
        "    return x\n\n@flow\ndef failing():\n    return nums(n=4).map(picky).agg(total)\n",
    )
    result = lokki("run", str(path), "--json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "map 'map-picky' failed: 1 of 4 item(s) failed" in result.stderr
    assert "item 2: ValueError: two is bad (step 'picky')" in result.stderr
    run_id = json.loads(result.stderr.splitlines()[0])["run_id"]
    assert f"--resume {run_id}" in result.stderr
    resumed = lokki("run", str(path), "--resume", run_id)  # still failing: same report, exit 1
    assert resumed.returncode == 1 and "item 2: ValueError" in resumed.stderr


def test_failing_task_exits_1(lokki: Lokki, write_module: Writer) -> None:
    path = write_module(
        "failtask",
        STEPS + "\n@step\ndef crash(xs):\n    return xs[10]\n\n@flow\ndef failtask():\n    return nums().next(crash)\n",
    )
    result = lokki("run", str(path))
    assert result.returncode == 1
    assert "step 'crash' failed: IndexError: list index out of range" in result.stderr
    assert "return xs[10]" in result.stderr  # the user's own frame, briefly
    assert "--resume failtask-" in result.stderr


def test_resume_unknown_run_and_wrong_flow(lokki: Lokki, tmp_path: Path) -> None:
    assert_usage_error(lokki("run", str(EXAMPLES / "birds.py"), "--resume", "birds-nope"), "no run birds-nope")
    ok = lokki("run", str(EXAMPLES / "birds.py"), "--json", "--store", "s")
    run_id = json.loads(ok.stdout)["run_id"]
    wrong = lokki("run", str(EXAMPLES / "wordcount.py"), "--store", "s", "--resume", run_id)
    assert_usage_error(wrong, f"run {run_id} belongs to flow 'birds', not 'wordcount'")
    again = lokki("run", str(EXAMPLES / "birds.py"), "--store", "s", "--resume", run_id, "-q")
    assert again.returncode == 0 and again.stdout == "flappy goose, flappy duck, flappy seagull\n"
    assert_usage_error(
        lokki("run", str(EXAMPLES / "birds.py"), "--store", "s", "--resume", run_id, "-p", "limit=1"),
        "a resume keeps the run's parameters: limit=3 (given 1)",
    )
    same = lokki("run", str(EXAMPLES / "birds.py"), "--store", "s", "--resume", run_id, "-p", "limit=3", "-q")
    assert same.returncode == 0 and same.stdout == again.stdout  # the identical -p is accepted


def test_repo_examples_run_from_repo_root(lokki: Lokki) -> None:
    result = lokki("run", "examples/wordcount.py", "-q", "-p", "top=2", cwd=REPO, LOKKI_STORE=str(REPO / ".lokki-test"))
    try:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == [["before", 5], ["nation", 5]]
    finally:
        import shutil

        shutil.rmtree(REPO / ".lokki-test", ignore_errors=True)


def test_progress_display_on_a_terminal_keeps_stdout_clean(tmp_path: Path) -> None:
    import os
    import pty

    from tests.conftest import LOKKI_SAM

    master, replica = pty.openpty()
    proc = subprocess.Popen(
        [LOKKI_SAM, "run", str(EXAMPLES / "birds.py"), "--store", str(tmp_path / "s")],
        cwd=tmp_path,
        env=lokki_env(tmp_path, TERM="xterm-256color", COLUMNS="100"),
        stdout=subprocess.PIPE,
        stderr=replica,
        text=True,
    )
    os.close(replica)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the terminal closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout, _ = proc.communicate(timeout=60)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert stdout == "flappy goose, flappy duck, flappy seagull\n"  # the result alone, no escape codes
    assert "\x1b[" in terminal and "map-flap" in terminal and "3/3" in terminal


def test_flow_file_shadowed_by_another_module_of_the_same_name_is_refused(lokki: Lokki, tmp_path: Path) -> None:
    """`lokki-sam run x/json.py` must not silently run the standard library's json instead."""
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "json.py").write_text(STEPS + "\n@flow\ndef f():\n    return nums().map(inc).agg(total)\n")
    assert_usage_error(lokki("run", "flows/json.py"), "already taken", "rename the file")


def test_tolerated_failures_are_reported_in_json(lokki: Lokki, write_module: Writer) -> None:
    path = write_module(
        "tolerant",
        STEPS + "\n@step\ndef picky(x: int) -> int:\n    if x == 1:\n        raise ValueError('one is bad')\n"
        "    return x\n\n@flow\ndef tolerant():\n"
        "    return nums(n=4).map(picky, tolerated_failure_count=1).agg(total)\n",
    )
    result = lokki("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["result"] == 0 + 2 + 3  # the agg got the successful items
    (failure,) = payload["failed_items"]
    assert failure["indexes"] == [1] and failure["step"] == "picky"
    assert failure["error_type"] == "ValueError" and failure["message"] == "one is bad"
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(e["event"] == "items_failed" and e["items"] == [1] for e in events)
    assert any(e["event"] == "map_finished" and e["failed"] == 1 and e["succeeded"] == 3 for e in events)
