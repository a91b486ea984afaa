"""Project configuration: `lokki.toml`, or `[tool.lokki]` in pyproject.toml, then LOKKI_* overrides.

Every key is declared in SCHEMA with its type; unknown keys and ill-typed values are errors that
name the file (or variable) and the key. Upstream lokki's sections (`[aws]`, `[lambda]`,
`[logging]`, ...) are read too (`upstream_config.py`): into these keys where they mean something
here, else into `Config.warnings`, which a command prints once.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam import runlog
from lokki_sam.batch import sizing as batch_sizing
from lokki_sam.errors import ConfigError
from lokki_sam.options import EXECUTORS
from lokki_sam.params import coerce, type_name
from lokki_sam.upstream_config import SECTIONS, Upstream


@dataclass(frozen=True)
class Key:
    type: Any
    default: Any
    help: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[Any, ...] = ()
    normalize: Callable[[Any], Any] | None = None  # applied before the choices are checked
    check: Callable[[Any], str | None] | None = None  # a reason the value is invalid, or None


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

# Upstream lokki's level names: the one vocabulary of `log_level` for every reader of the key
# (local runs map them in progress.LEVELS, deployed functions in runlog). Stored upper-case.
LOG_LEVELS = runlog.LEVELS
LOG_FORMATS = ("human", "json")


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a valid S3 general purpose bucket name (S3's naming rules), or None."""
    if not 3 <= len(name) <= 63:
        return "a bucket name has 3 to 63 characters"
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name):
        return "a bucket name uses lowercase letters, digits, '.' and '-', and starts and ends with a letter or digit"
    if ".." in name:
        return "a bucket name has no two adjacent periods"
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "a bucket name is not an IP address"
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(("-s3alias", "--ol-s3", ".mrap")):
        return (
            "names starting with xn--, sthree- or amzn-s3-demo-, or ending in -s3alias, --ol-s3 or .mrap are reserved"
        )
    return None


SCHEMA: dict[str, Key] = {
    "flow": Key(str, None, "default FLOW_REF for commands that take one"),
    "flows": Key(list[str], None, "the project's flow modules: FLOW_REFs, or folders of flow modules (generate)"),
    "store": Key(str, ".lokki/runs", "directory of local run artifacts"),
    "concurrency": Key(
        int, None, "default local map concurrency (a map's own `concurrency` wins)", 1, MAX_LOCAL_CONCURRENCY
    ),
    "executor": Key(
        str,
        None,
        "what runs local maps' batches: auto (the default), threads or processes (a map's own `executor` wins)",
        choices=EXECUTORS,
        normalize=lambda v: v.lower(),
    ),
    "template": Key(str, "template.yaml", "SAM template written by `lokki-sam generate`"),
    "target": Key(
        str,
        "sam",
        "what `lokki-sam generate` writes and the cloud commands read: sam (template.yaml, samconfig.toml) or "
        "serverless (serverless.yml, for the Serverless Framework)",
        choices=("sam", "serverless"),
    ),
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
    "artifact_bucket": Key(
        str,
        None,
        "an existing S3 bucket for run artifacts: the default of the template's ExistingArtifactBucket "
        "parameter (none: the stack creates one)",
        normalize=lambda v: v or None,  # upstream's default is "": no bucket
        check=bucket_name_problem,
    ),
    "log_level": Key(
        str,
        "INFO",
        "what local runs report and deployed functions log: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)",
        choices=LOG_LEVELS,
        normalize=lambda v: v.upper(),
    ),
    "log_format": Key(str, "human", "local run progress as human lines or JSON lines (stderr)", choices=LOG_FORMATS),
    "progress_interval": Key(
        int, 10, "report a map's progress in lines each time this percentage of its items finishes", 1, 100
    ),
    "show_timestamps": Key(bool, False, "start each human progress line with the time"),
    # [batch]: defaults of the steps that run as AWS Batch jobs (@step(compute="batch")); a step's
    # own cpu/memory/timeout/platform win. Written `[batch] cpu = 2` (or LOKKI_BATCH_CPU).
    "batch_job_queue": Key(
        str,
        None,
        "[batch] job_queue: an existing AWS Batch job queue (name or ARN) for the Batch steps "
        "(none: the stack creates a compute environment and a queue)",
        normalize=lambda v: v or None,
        check=batch_sizing.job_queue_problem,
    ),
    "batch_cpu": Key(
        float,
        1,
        "[batch] cpu: vCPUs of a Batch job (Fargate: 0.25, 0.5, 1, 2, 4, 8, 16; EC2: whole vCPUs)",
        check=batch_sizing.any_cpu_problem,
    ),
    "batch_memory": Key(int, 2048, "[batch] memory: MiB of a Batch job (Fargate: as its table pairs with cpu)", 4),
    "batch_timeout": Key(
        int,
        3600,
        "[batch] timeout: seconds before Batch stops a job",
        batch_sizing.MIN_TIMEOUT,
        batch_sizing.MAX_TIMEOUT,
    ),
    "batch_platform": Key(
        str,
        "fargate",
        "[batch] platform of Batch jobs without a GPU: fargate or ec2 (a GPU job runs on ec2)",
        choices=batch_sizing.PLATFORMS,
        normalize=lambda v: v.lower(),
    ),
    "batch_max_vcpus": Key(
        int, 256, "[batch] max_vcpus: the vCPUs the stack's compute environment runs at once (jobs queue beyond)", 1
    ),
    "batch_spot": Key(bool, False, "[batch] spot: run the stack's Fargate jobs on Fargate Spot (up to 70% cheaper)"),
    "batch_subnets": Key(
        list[str],
        None,
        "[batch] subnets: the default of the template's BatchSubnets parameter, where the stack's compute "
        "environments run jobs (the Serverless target writes them in serverless.yml)",
        check=batch_sizing.ids_problem("subnet"),
    ),
    "batch_security_groups": Key(
        list[str],
        None,
        "[batch] security_groups: the default of the template's BatchSecurityGroups parameter (the jobs' groups)",
        check=batch_sizing.ids_problem("sg"),
    ),
    "batch_public_ip": Key(
        bool,
        False,
        "[batch] public_ip: give Fargate jobs a public IP, to reach ECR and S3 from public subnets without a NAT "
        "gateway or VPC endpoints",
    ),
}
BATCH_SECTION = "batch"  # `[batch] cpu` is key `batch_cpu`: lokki-sam's section, read with upstream's spellings


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)
    # Upstream lokki settings that mean nothing here, each saying what replaces it (printed once).
    warnings: tuple[str, ...] = ()

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
    table, source, path, prefix = _read_table(root)
    in_file: dict[str, Any] = {}
    upstream = Upstream()
    for name, raw in table.items():
        if name in SCHEMA:
            in_file[name] = _check(name, raw, where=source, from_text=False)
        elif name and name in SECTIONS and isinstance(raw, dict):
            upstream.read_table(raw, name, where=path, prefix=prefix)
        elif name in SECTIONS[""]:
            upstream.read_key("", name, raw, where=source)
        elif name and name in SECTIONS:
            raise ConfigError(f"[{prefix}{name}] must be a table (a section of upstream lokki's config)", where=path)
        else:
            raise ConfigError(
                f"unknown key '{name}'",
                where=source,
                hint=f"known keys: {', '.join(sorted(SCHEMA))}; "
                f"and upstream lokki's sections: {', '.join(f'[{s}]' for s in SECTIONS if s)}",
            )
    _merge(in_file, upstream, where=path, from_text=False)
    values.update(in_file)
    sources.update(dict.fromkeys(in_file, source))
    sources.update({s.key: f"{path} {s.label}" for s in upstream.settings})
    in_env: dict[str, Any] = {}
    env_upstream = Upstream()
    for name in SCHEMA:
        var = f"LOKKI_{name.upper()}"
        if var in environ:
            in_env[name] = _check(name, environ[var], where=f"environment variable {var}", from_text=True)
    env_upstream.read_environment(environ)
    _merge(in_env, env_upstream, where="environment", from_text=True)
    values.update(in_env)
    sources.update({name: f"LOKKI_{name.upper()}" for name in in_env})
    sources.update({s.key: s.label for s in env_upstream.settings})
    _check_batch_defaults(values, sources)
    return Config(values, sources, (*upstream.warnings(path), *env_upstream.warnings("environment")))


def _check_batch_defaults(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """The `[batch]` defaults must make a job Fargate offers when they say Fargate (each key alone
    was checked already): a Batch step that sets neither cpu nor memory runs with exactly these."""
    if values["batch_platform"] != "fargate":
        return
    cpu, memory = values["batch_cpu"], values["batch_memory"]
    problem = batch_sizing.cpu_problem(cpu, "fargate") or batch_sizing.memory_problem(memory, "fargate")
    problem = problem or batch_sizing.pair_problem(cpu, memory)
    if problem is not None:
        raise ConfigError(
            f"[batch] cpu = {batch_sizing.shown_number(cpu)} and memory = {memory} are not a Fargate job size: "
            f"{problem}",
            where=" and ".join(dict.fromkeys(sources[k] for k in ("batch_cpu", "batch_memory"))),
            hint=f'Fargate\'s vCPU/memory pairs: {batch_sizing.describe_fargate()}; or [batch] platform = "ec2"',
        )


def _merge(level: dict[str, Any], upstream: Upstream, *, where: str, from_text: bool) -> None:
    """Add the keys upstream settings give to one level's values (the file's, or the environment's).
    The same key given twice there with different values, as lokki-sam's key and in upstream's
    spelling (`timeout` and `[lambda] timeout`), is an error naming both."""
    given = {name: name if where != "environment" else f"LOKKI_{name.upper()}" for name in level}
    for setting in upstream.settings:
        place = f"environment variable {setting.label}" if where == "environment" else f"{where} {setting.label}"
        value = (
            setting.value
            if setting.converted
            else _check(setting.key, setting.value, where=place, from_text=from_text, shown=setting.label)
        )
        if setting.key in level and level[setting.key] != value:
            raise ConfigError(
                f"'{setting.key}' is set twice, to different values: {given[setting.key]} = "
                f"{level[setting.key]!r} and {setting.label} = {value!r}",
                where=where,
                hint=f"keep one of them ({setting.label} is upstream lokki's spelling of {setting.key})",
            )
        level[setting.key] = value
        given[setting.key] = setting.label


def _read_table(root: Path) -> tuple[dict[str, Any], str, str, str]:
    """The config table, where it came from (for messages), its file and its section prefix."""
    lokki_toml = root / "lokki.toml"
    pyproject = root / "pyproject.toml"
    if lokki_toml.is_file():
        data = _parse(lokki_toml)
        return data, str(lokki_toml), str(lokki_toml), ""
    if pyproject.is_file():
        data = _parse(pyproject)
        tool = data.get("tool", {})
        if not isinstance(tool, dict):
            raise ConfigError("'tool' must be a table ([tool.*] sections)", where=str(pyproject))
        table = tool.get("lokki", {})
        if not isinstance(table, dict):
            raise ConfigError("[tool.lokki] must be a table", where=str(pyproject))
        return table, f"{pyproject} [tool.lokki]", str(pyproject), "tool.lokki."
    return {}, "defaults", "defaults", ""


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


def _check(name: str, raw: Any, *, where: str, from_text: bool, shown: str | None = None) -> Any:
    """`raw` as key `name`'s value; messages call it `shown` (an upstream spelling) when given."""
    key = SCHEMA[name]
    label = shown or f"'{name}'"
    # TOML is typed: a quoted "4" or "yes" for an int/bool key is a mistake, not a value to coerce.
    if not from_text and key.type in (int, float, bool) and isinstance(raw, bool | str) and type(raw) is not key.type:
        raise ConfigError(f"{label} must be {type_name(key.type)}, got {raw!r}", where=where, hint=key.help)
    if not from_text and key.type is str and not isinstance(raw, str):
        raise ConfigError(f"{label} must be a string, got {raw!r}", where=where)
    try:
        value = coerce(raw, key.type)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be {type_name(key.type)}, got {raw!r}", where=where, hint=key.help) from None
    if key.normalize is not None:
        value = key.normalize(value)
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{label} must be at least {key.minimum}, got {value!r}", where=where, hint=key.help)
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"{label} must be at most {key.maximum}, got {value!r}", where=where, hint=key.help)
    if key.choices and value not in key.choices:
        choices = ", ".join(map(str, key.choices))
        raise ConfigError(f"{label} must be one of {choices}, got {raw!r}", where=where, hint=key.help)
    problem = key.check(value) if key.check is not None and value is not None else None
    if problem is not None:
        raise ConfigError(f"{label} is not valid ({value!r}): {problem}", where=where, hint=key.help)
    return value


def generated_file(config: Config, target: str) -> str:
    """The file `generate` writes (and `push` reads): config `template` when set, else the target's own."""
    if target == "serverless" and config.sources.get("template", "default") == "default":
        return "serverless.yml"
    return str(config.get("template", "template.yaml"))
