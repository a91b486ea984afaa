"""Upstream lokki's `lokki.toml` (PyPI `lokkiflow`), read by lokki-sam.

Upstream groups its settings in sections (`[aws]`, `[lambda]`, `[logging]`, ...). A setting that
means something here sets one of lokki-sam's keys (`[lambda] timeout` is `timeout`); one that does
not (images, roles, the build directory, AWS Batch) is read, type-checked, and named in a warning
that says what replaces it (`[batch]` is also lokki-sam's own section: see config.SCHEMA's
batch_* keys). Anything else in those sections is an error, as an unknown key is:
typos must not pass silently. Tables cover current and earlier upstream layouts
(`[aws] ecr_repo_prefix`, `[aws.roles]`, `[lambda_defaults]`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from lokki_sam.errors import ConfigError

# What replaces the settings that have no meaning in lokki-sam (the warnings' second half).
BUILD = "`sam build` builds into .aws-sam/build (`sam build --build-dir DIR`); generate writes `template`"
IMAGES = (
    "lokki-sam deploys zip functions packaged by `sam build`; container images: see @step(package=...) "
    "(`sam deploy --resolve-image-repos` creates their ECR repositories)"
)
ROLES = (
    "lokki-sam generates a least-privilege role for each function and state machine; "
    "grant a step more with @step(permissions=[...])"
)
ENDPOINT = "set AWS_ENDPOINT_URL (or pass --endpoint-url) for invoke, runs, result and the SAM CLI"
ENVIRONMENT = (
    "give a step variables with @step(environment={...}), or every function through "
    "Globals.Function.Environment in template.yaml (generate keeps it)"
)
BATCH = (
    "lokki-sam generates each Batch step's job definition and container image from the step "
    '(@step(compute="batch", cpu=..., memory=..., environment={...}, architecture=...))'
)
SECRETS = (
    "put a secret's ARN or SSM parameter name in @step(environment={...}), grant it with "
    "permissions=[...] and read the value at run time: lokki-sam never writes secret values into a template"
)
INCLUDE = "`sam build` packages the files under code_uri with the functions; container images: see @step(package=...)"
MEMORY_STORE = "local runs always write their artifacts under `store` (what --resume reads)"
FLOW_NAME = "name a flow with @flow(name=...)"


class Mapped(NamedTuple):
    """Sets lokki-sam's `key` (checked as that key is), after `convert`."""

    key: str
    convert: Callable[[Any, str], Any] | None = None


class Replaced(NamedTuple):
    """No meaning here: checked against upstream's type, then named in a warning."""

    type: Any
    instead: str
    choices: tuple[str, ...] = ()
    same_as_here: Any = None  # a value that asks for what lokki-sam does anyway: no warning


def _python_runtime(value: Any, where: str) -> str:
    """Upstream's `python_version = "3.12"` is Lambda's runtime python3.12."""
    if not isinstance(value, str) or not re.fullmatch(r"3\.\d{1,2}", value):
        raise ConfigError(f'python_version must be a version string like "3.12", got {value!r}', where=where)
    return f"python{value}"


_LAMBDA: dict[str, Mapped | Replaced] = {
    "timeout": Mapped("timeout"),
    "memory": Mapped("memory"),
    "architecture": Mapped("architecture"),
    "python_version": Mapped("runtime", _python_runtime),
    "package_type": Replaced(str, IMAGES, ("image", "zip"), same_as_here="zip"),
    "base_image": Replaced(str, IMAGES),
    "image_tag": Replaced(str, IMAGES),
    "env": Replaced(dict[str, str], ENVIRONMENT),
}
# `[batch]` is lokki-sam's own section too (config.SCHEMA's batch_* keys); upstream's spellings
# of the same settings (vcpu, memory_mb, timeout_seconds) set them, as `@step` accepts both.
_BATCH: dict[str, Mapped | Replaced] = {
    "job_queue": Mapped("batch_job_queue"),
    "cpu": Mapped("batch_cpu"),
    "vcpu": Mapped("batch_cpu"),
    "memory": Mapped("batch_memory"),
    "memory_mb": Mapped("batch_memory"),
    "timeout": Mapped("batch_timeout"),
    "timeout_seconds": Mapped("batch_timeout"),
    "platform": Mapped("batch_platform"),
    "max_vcpus": Mapped("batch_max_vcpus"),
    "spot": Mapped("batch_spot"),
    "subnets": Mapped("batch_subnets"),
    "security_groups": Mapped("batch_security_groups"),
    "public_ip": Mapped("batch_public_ip"),
    "job_definition_name": Replaced(str, BATCH),
    "base_image": Replaced(str, BATCH),
    "image": Replaced(str, BATCH),
    "python_version": Replaced(str, BATCH),
    "architecture": Replaced(str, BATCH),
    "env": Replaced(dict[str, str], BATCH),
}
_ROLES: dict[str, Mapped | Replaced] = {"pipeline": Replaced(str, ROLES), "lambda": Replaced(str, ROLES)}

# Section -> its keys; "" holds upstream's top-level keys (artifact_bucket is one of ours too).
SECTIONS: dict[str, dict[str, Mapped | Replaced]] = {
    "": {
        "build_dir": Replaced(str, BUILD),
        "flow_name": Replaced(str, FLOW_NAME),
        "ecr_repo_prefix": Replaced(str, IMAGES),
    },
    "aws": {
        "artifact_bucket": Mapped("artifact_bucket"),
        "region": Mapped("region"),
        "endpoint": Replaced(str, ENDPOINT),
        "image_repository": Replaced(str, IMAGES),
        "ecr_repo_prefix": Replaced(str, IMAGES),
        "stepfunctions_role": Replaced(str, ROLES),
        "lambda_execution_role": Replaced(str, ROLES),
        "roles": Replaced(dict[str, str], ROLES),
    },
    "lambda": _LAMBDA,
    "lambda_defaults": _LAMBDA,
    "batch": _BATCH,
    "roles": _ROLES,
    "local": {"store_type": Replaced(str, MEMORY_STORE, ("local", "memory"), same_as_here="local")},
    "include": {"paths": Replaced(list[str], INCLUDE)},
    "secrets": {"secret_arns": Replaced(dict[str, str], SECRETS)},
    "logging": {
        "level": Mapped("log_level"),
        "format": Mapped("log_format"),
        "progress_interval": Mapped("progress_interval"),
        "show_timestamps": Mapped("show_timestamps"),
    },
}

# Upstream's environment variables that lokki-sam's LOKKI_<KEY> naming does not already cover.
ENVIRONMENT_VARIABLES: dict[str, Mapped | Replaced] = {
    "LOKKI_AWS_REGION": Mapped("region"),
    "LOKKI_AWS_ENDPOINT": Replaced(str, ENDPOINT),
    "LOKKI_IMAGE_REPOSITORY": Replaced(str, IMAGES),
    "LOKKI_BUILD_DIR": Replaced(str, BUILD),
    "LOKKI_BATCH_JOB_DEFINITION": Replaced(str, BATCH),
    "LOKKI_STORE_TYPE": Replaced(str, MEMORY_STORE, ("local", "memory"), same_as_here="local"),
    "LOKKI_INCLUDE_PATHS": Replaced(str, INCLUDE),
}


class Setting(NamedTuple):
    """One of lokki-sam's keys as an upstream setting gives it."""

    key: str
    value: Any
    label: str  # where it was written: "[lambda] timeout", "LOKKI_AWS_REGION"
    converted: bool = False  # `value` is already in lokki-sam's form (python_version -> runtime)


class Upstream:
    """What upstream settings gave: lokki-sam's keys, and the no-op settings by their replacement."""

    def __init__(self) -> None:
        self.settings: list[Setting] = []
        self.ignored: dict[str, list[str]] = {}  # replacement sentence -> labels

    def warnings(self, where: str) -> list[str]:
        lines = []
        for instead, labels in self.ignored.items():
            verb = "has" if len(labels) == 1 else "have"
            lines.append(f"{where}: {', '.join(labels)} {verb} no meaning in lokki-sam: {instead}")
        return lines

    def read_table(self, table: Mapping[str, Any], section: str, *, where: str, prefix: str = "") -> None:
        """Read one upstream section of the file at `where` (`prefix`: "tool.lokki." in pyproject.toml)."""
        for key, raw in table.items():
            self.read_key(section, key, raw, where=where, prefix=prefix)

    def read_key(self, section: str, key: str, raw: Any, *, where: str, prefix: str = "") -> None:
        """One upstream setting; `section` "" for upstream's top-level keys."""
        keys = SECTIONS[section]
        shown = f"[{prefix}{section}]" if section else ""
        spec = keys.get(key)
        if spec is None:
            raise ConfigError(
                f"unknown key '{key}' in {shown} (a section of upstream lokki's lokki.toml)",
                where=where,
                hint=f"the keys of {shown}: {', '.join(keys)}",
            )
        # A nested table reads as it is written: [lambda.env], not [lambda] env.
        label = f"[{prefix}{section}.{key}]" if section and isinstance(raw, dict) else f"{shown} {key}".strip()
        self._take(spec, raw, label, where)

    def read_environment(self, environ: Mapping[str, str]) -> None:
        for var, spec in ENVIRONMENT_VARIABLES.items():
            if var in environ:
                self._take(spec, environ[var], var, f"environment variable {var}")

    def _take(self, spec: Mapped | Replaced, raw: Any, label: str, where: str) -> None:
        if isinstance(spec, Mapped):
            value = spec.convert(raw, f"{where} {label}".strip()) if spec.convert else raw
            self.settings.append(Setting(spec.key, value, label, converted=spec.convert is not None))
            return
        if not _is_type(raw, spec.type):
            raise ConfigError(f"{label} must be {_type_name(spec.type)}, got {raw!r}", where=where)
        if spec.choices and raw not in spec.choices:
            raise ConfigError(f"{label} must be one of {', '.join(spec.choices)}, got {raw!r}", where=where)
        if spec.same_as_here is None or raw != spec.same_as_here:
            self.ignored.setdefault(spec.instead, []).append(label)


def _is_type(value: Any, expected: Any) -> bool:
    if expected == dict[str, str]:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if expected == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false"}
    if expected == dict[str, str]:
        return "a table of strings"
    if expected == list[str]:
        return "a list of strings"
    return names.get(expected, str(expected))
