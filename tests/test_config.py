"""Configuration: lokki.toml, [tool.lokki] in pyproject.toml, LOKKI_* overrides, validation that says where."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from lokki_sam.config import SCHEMA, load_config
from lokki_sam.errors import ConfigError

Lokki = Callable[..., subprocess.CompletedProcess[str]]


def test_defaults_without_any_file(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config["store"] == ".lokki/runs"
    assert config.get("flow") is None and config.get("flow", "x") == "x"
    assert set(config.values) == set(SCHEMA)
    assert set(config.sources.values()) == {"default"}


def test_lokki_toml_values_and_sources(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text('flow = "flows/etl.py:nightly"\nconcurrency = 4\nmemory = 1024\n')
    config = load_config(tmp_path, environ={})
    assert (config["flow"], config["concurrency"], config["memory"]) == ("flows/etl.py:nightly", 4, 1024)
    assert config.sources["concurrency"] == str(tmp_path / "lokki.toml")
    assert config.sources["store"] == "default"


def test_pyproject_tool_lokki(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.lokki]\nstore = "runs"\n')
    config = load_config(tmp_path, environ={})
    assert config["store"] == "runs"
    assert config.sources["store"] == f"{tmp_path / 'pyproject.toml'} [tool.lokki]"


def test_pyproject_without_tool_lokki_uses_defaults(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_config(tmp_path, environ={})["store"] == ".lokki/runs"


def test_lokki_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.lokki]\nstore = "from-pyproject"\n')
    (tmp_path / "lokki.toml").write_text('store = "from-lokki-toml"\n')
    assert load_config(tmp_path, environ={})["store"] == "from-lokki-toml"


def test_environment_overrides_files(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text("concurrency = 4\n")
    config = load_config(tmp_path, environ={"LOKKI_CONCURRENCY": "2", "LOKKI_STORE": "/tmp/x", "OTHER": "1"})
    assert config["concurrency"] == 2 and config["store"] == "/tmp/x"
    assert config.sources["concurrency"] == "LOKKI_CONCURRENCY"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", r"lokki.toml: unknown key 'colour'[\s\S]*known keys: .*concurrency"),
        ('concurrency = "4"\n', r"lokki.toml: 'concurrency' must be int, got '4'"),
        ("concurrency = true\n", r"'concurrency' must be int, got True"),
        ("concurrency = 0\n", r"'concurrency' must be at least 1, got 0"),
        ("memory = 64\n", r"'memory' must be at least 128"),
        ("store = 5\n", r"'store' must be a string, got 5"),
        ('architecture = "sparc"\n', r"'architecture' must be one of x86_64, arm64, got 'sparc'"),
        ("flow = \n", r"lokki.toml: invalid TOML"),
    ],
)
def test_bad_lokki_toml(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "lokki.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ={})


def test_bad_tool_lokki_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool]\nlokki = "yes"\n')
    with pytest.raises(ConfigError, match=r"pyproject.toml: \[tool.lokki\] must be a table"):
        load_config(tmp_path, environ={})
    (tmp_path / "pyproject.toml").write_text("[tool.lokki]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"pyproject.toml \[tool.lokki\]: unknown key 'bogus'"):
        load_config(tmp_path, environ={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOKKI_CONCURRENCY": "many"}, r"environment variable LOKKI_CONCURRENCY: 'concurrency' must be int"),
        ({"LOKKI_MEMORY": "100"}, r"environment variable LOKKI_MEMORY: 'memory' must be at least 128"),
        ({"LOKKI_ARCHITECTURE": "mips"}, r"LOKKI_ARCHITECTURE: 'architecture' must be one of x86_64, arm64"),
    ],
)
def test_bad_environment_values(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ=env)


THREADS_FLOW = """
import os, threading, time
from lokki_sam import flow, step

@step
def items() -> list[int]:
    return list(range(12))

@step
def where(x: int) -> str:
    time.sleep(0.01)
    return threading.current_thread().name

@step
def distinct(names: list[str]) -> int:
    return len(set(names))

@flow
def threads():
    return items().map(where).agg(distinct)
"""


def test_concurrency_and_store_from_config_reach_the_runner(lokki: Lokki, tmp_path: Path) -> None:
    (tmp_path / "threads_flow.py").write_text(THREADS_FLOW)
    (tmp_path / "lokki.toml").write_text('store = "my-runs"\nconcurrency = 1\n')
    result = lokki("run", "threads_flow.py", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"  # one worker thread
    assert (tmp_path / "my-runs").is_dir()
    result = lokki("run", "threads_flow.py", "-q", LOKKI_CONCURRENCY="3")
    assert result.stdout == "3\n"


def test_every_config_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "flows.md").read_text()
    missing = [name for name in SCHEMA if f"| `{name}` |" not in doc]
    assert not missing, f"add these keys to the table in docs/flows.md: {missing}"
