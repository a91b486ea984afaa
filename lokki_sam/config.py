"""Project configuration: `lokki.toml`, or `[tool.lokki]` in pyproject.toml, then LOKKI_* overrides.

Every key is declared in SCHEMA with its type; unknown keys and ill-typed values are errors that
name the file (or variable) and the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam.errors import ConfigError
from lokki_sam.params import coerce, type_name


@dataclass(frozen=True)
class Key:
    type: Any
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[Any, ...] = ()


# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
MAX_LOCAL_CONCURRENCY = 256  # threads per map on one machine; more only costs memory and contention


SCHEMA: dict[str, Key] = {
    "flow": Key(str, None, "default FLOW_REF for commands that take one"),
    "flows": Key(list[str], None, "the project's flow modules: FLOW_REFs, or folders of flow modules (generate)"),
    "store": Key(str, ".lokki/runs", "directory of local run artifacts"),
    "concurrency": Key(
        int, None, "default local map concurrency (a map's own `concurrency` wins)", 1, MAX_LOCAL_CONCURRENCY
    ),
    "template": Key(str, "template.yaml", "SAM template written by `lokki-sam generate`"),
    "code_uri": Key(str, "src", "CodeUri of the generated functions (the directory holding the flow modules)"),
    "runtime": Key(str, None, "Lambda runtime, e.g. python3.12 (default: the generator's Python)"),
    "architecture": Key(str, "arm64", "default Lambda architecture (x86_64 or arm64)", choices=("x86_64", "arm64")),
    "package": Key(str, "zip", "default packaging of the functions: zip or image", choices=("zip", "image")),
    "memory": Key(int, 512, "default Lambda memory in MB (Lambda: 128 to 10240)", 128, 10240),
    "timeout": Key(int, 300, "default Lambda timeout in seconds (Lambda: at most 900)", 1, 900),
    "artifact_expiry_days": Key(int, 30, "days before run artifacts expire in the bucket", 1),
    "log_retention_days": Key(
        int, 30, "log retention in days (a CloudWatch Logs retention period)", choices=LOG_RETENTION_DAYS
    ),
    "tracing": Key(bool, False, "X-Ray tracing for the generated functions and state machines"),
    "stack_name": Key(str, None, "deployed stack for invoke/runs/result (else samconfig.toml)"),
    "region": Key(str, None, "AWS region for invoke/runs/result"),
}


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value


def load_config(root: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    root = Path(root or Path.cwd())
    environ = os.environ if environ is None else environ
    values = {name: key.default for name, key in SCHEMA.items()}
    sources = {name: "default" for name in SCHEMA}
    table, source = _read_table(root)
    for name, raw in table.items():
        if name not in SCHEMA:
            raise ConfigError(f"unknown key '{name}'", where=source, hint=f"known keys: {', '.join(sorted(SCHEMA))}")
        values[name] = _check(name, raw, where=source, from_text=False)
        sources[name] = source
    for name in SCHEMA:
        var = f"LOKKI_{name.upper()}"
        if var in environ:
            values[name] = _check(name, environ[var], where=f"environment variable {var}", from_text=True)
            sources[name] = var
    return Config(values, sources)


def _read_table(root: Path) -> tuple[dict[str, Any], str]:
    lokki_toml = root / "lokki.toml"
    pyproject = root / "pyproject.toml"
    if lokki_toml.is_file():
        data = _parse(lokki_toml)
        return data, str(lokki_toml)
    if pyproject.is_file():
        data = _parse(pyproject)
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise ConfigError("'tool' must be a table ([tool.*] sections)", where=str(pyproject))
        table = tool.get("lokki", {})
        if not isinstance(table, dict):
            raise ConfigError("[tool.lokki] must be a table", where=str(pyproject))
        return table, f"{pyproject} [tool.lokki]"
    return {}, "defaults"


def _parse(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start}): TOML files are UTF-8", where=str(path), hint="save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", where=str(path)) from None


def _check(name: str, raw: Any, *, where: str, from_text: bool) -> Any:
    key = SCHEMA[name]
    # TOML is typed: a quoted "4" or "yes" for an int/bool key is a mistake, not a value to coerce.
    if not from_text and key.type in (int, bool) and isinstance(raw, bool | str) and type(raw) is not key.type:
        raise ConfigError(f"'{name}' must be {type_name(key.type)}, got {raw!r}", where=where, hint=key.help)
    if not from_text and key.type is str and not isinstance(raw, str):
        raise ConfigError(f"'{name}' must be a string, got {raw!r}", where=where)
    try:
        value = coerce(raw, key.type)
    except (TypeError, ValueError):
        raise ConfigError(f"'{name}' must be {type_name(key.type)}, got {raw!r}", where=where, hint=key.help) from None
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"'{name}' must be at least {key.minimum}, got {value!r}", where=where, hint=key.help)
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"'{name}' must be at most {key.maximum}, got {value!r}", where=where, hint=key.help)
    if key.choices and value not in key.choices:
        shown = ", ".join(map(str, key.choices))
        raise ConfigError(f"'{name}' must be one of {shown}, got {value!r}", where=where, hint=key.help)
    return value
