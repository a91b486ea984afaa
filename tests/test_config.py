"""Configuration: lokki.toml, [tool.lokki] in pyproject.toml, LOKKI_* overrides, validation that says where."""

from __future__ import annotations

import json
import re
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
        (
            "colour = 1\n",
            r"lokki.toml: unknown key 'colour'[\s\S]*known keys: .*concurrency.*upstream lokki's sections: \[aws\]",
        ),
        ('concurrency = "4"\n', r"lokki.toml: 'concurrency' must be int, got '4'"),
        ("concurrency = true\n", r"'concurrency' must be int, got True"),
        ("concurrency = 0\n", r"'concurrency' must be at least 1, got 0"),
        ("memory = 64\n", r"'memory' must be at least 128"),
        ("store = 5\n", r"'store' must be a string, got 5"),
        ('architecture = "sparc"\n', r"'architecture' must be one of x86_64, arm64, got 'sparc'"),
        ('executor = "gpu"\n', r"'executor' must be one of auto, threads, processes, got 'gpu'"),
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
        ({"LOKKI_EXECUTOR": "turbo"}, r"LOKKI_EXECUTOR: 'executor' must be one of auto, threads, processes"),
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
    # Threads, not the default auto executor: a map this short would finish on its probe thread.
    (tmp_path / "lokki.toml").write_text('store = "my-runs"\nconcurrency = 1\nexecutor = "threads"\n')
    result = lokki("run", "threads_flow.py", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"  # one worker thread
    assert (tmp_path / "my-runs").is_dir()
    result = lokki("run", "threads_flow.py", "-q", LOKKI_CONCURRENCY="3")
    assert result.stdout == "3\n"


EXECUTOR_FLOW = """
import os
from lokki_sam import flow, step

@step
def items() -> list[int]:
    return [os.getpid()] * 4

@step
def elsewhere(runner: int) -> bool:
    return os.getpid() != runner

@step
def every(flags: list[bool]) -> bool:
    return all(flags)

@flow
def where():
    return items().map(elsewhere).agg(every)

@flow
def pinned():
    return items().map(elsewhere, executor="threads").agg(every)
"""


def test_the_executor_from_config_flags_and_the_map_reaches_the_runner(lokki: Lokki, tmp_path: Path) -> None:
    """Precedence: the map's own executor, then --executor, then LOKKI_EXECUTOR, then lokki.toml."""
    (tmp_path / "where_flow.py").write_text(EXECUTOR_FLOW)
    (tmp_path / "lokki.toml").write_text('executor = "processes"\n')

    def elsewhere(flow_name: str, *args: str, **env: str) -> str:
        done = lokki("run", f"where_flow.py:{flow_name}", "-q", *args, **env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert elsewhere("where") == "true"  # lokki.toml: the items ran in worker processes
    assert elsewhere("where", LOKKI_EXECUTOR="threads") == "false"
    assert elsewhere("where", "--executor", "threads", LOKKI_EXECUTOR="processes") == "false"
    assert elsewhere("pinned", "--executor", "processes") == "false"  # the map's own wins
    (tmp_path / "lokki.toml").write_text("")
    assert elsewhere("where") == "false"  # the default


def test_every_config_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "flows.md").read_text()
    missing = [name for name in SCHEMA if f"| `{name}` |" not in doc]
    assert not missing, f"add these keys to the table in docs/flows.md: {missing}"


# ------------------------------------------------------------------- upstream lokki's lokki.toml

# Upstream's tests/flows/lambda_batch_pipeline/lokki.toml (every section it documents in use).
UPSTREAM_TOML = """
build_dir = "lokki-build"

[aws]
artifact_bucket = "lokki-artifacts"
image_repository = "registry:ci"
endpoint = "http://localhost:4566"
region = "eu-north-1"
stepfunctions_role = "arn:aws:iam::123456789012:role/sfn"

[lambda]
package_type = "image"
base_image = "public.ecr.aws/lambda/python:3.13"
timeout = 600
memory = 1024
image_tag = "latest"
python_version = "3.12"

[lambda.env]
LOG_LEVEL = "INFO"

[batch]
job_queue = "default"
vcpu = 2
memory_mb = 4096

[logging]
level = "debug"
format = "json"
progress_interval = 25
show_timestamps = true
"""


def test_upstream_sections_set_the_keys_they_mean_and_warn_once_about_the_rest(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text(UPSTREAM_TOML)
    config = load_config(tmp_path, environ={})
    got = {k: config[k] for k in ("artifact_bucket", "region", "timeout", "memory", "runtime")}
    assert got == {
        "artifact_bucket": "lokki-artifacts",
        "region": "eu-north-1",
        "timeout": 600,
        "memory": 1024,
        "runtime": "python3.12",
    }
    logging = {k: config[k] for k in ("log_level", "log_format", "progress_interval", "show_timestamps")}
    assert logging == {"log_level": "DEBUG", "log_format": "json", "progress_interval": 25, "show_timestamps": True}
    assert config.sources["timeout"] == f"{tmp_path / 'lokki.toml'} [lambda] timeout"
    # [batch] is lokki-sam's section too: upstream's spellings there set the Batch defaults.
    batch = {k: config[k] for k in ("batch_job_queue", "batch_cpu", "batch_memory")}
    assert batch == {"batch_job_queue": "default", "batch_cpu": 2, "batch_memory": 4096}
    assert config.sources["batch_cpu"] == f"{tmp_path / 'lokki.toml'} [batch] vcpu"
    # One warning per replacement, naming every key it covers and what replaces them.
    text = "\n".join(config.warnings)
    assert len(config.warnings) == len(set(config.warnings)) == 5, text
    expected = [
        r"build_dir has no meaning in lokki-sam: `sam build` builds into \.aws-sam/build",
        r"\[aws\] image_repository, \[lambda\] package_type, \[lambda\] base_image, \[lambda\] image_tag have no "
        r"meaning in lokki-sam: .*container images: see @step\(package=\.\.\.\).*--resolve-image-repos",
        r"\[aws\] endpoint has no meaning .*AWS_ENDPOINT_URL",
        r"\[aws\] stepfunctions_role has no meaning .*least-privilege role for each function and state machine",
        r"\[lambda.env\] has no meaning .*@step\(environment=\{\.\.\.\}\).*Globals\.Function\.Environment",
    ]
    for pattern in expected:
        assert any(re.search(pattern, w) for w in config.warnings), f"{pattern} not in:\n{text}"
    assert all(w.startswith(f"{tmp_path / 'lokki.toml'}: ") for w in config.warnings)


def test_upstream_values_that_ask_for_what_lokki_sam_does_give_no_warning(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text('[lambda]\npackage_type = "zip"\n\n[local]\nstore_type = "local"\n')
    assert load_config(tmp_path, environ={"LOKKI_STORE_TYPE": "local"}).warnings == ()


def test_upstream_sections_in_pyproject_tool_lokki(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lokki.lambda]\nmemory = 2048\n\n[tool.lokki.batch]\nvcpu = 4\nmemory = 8192\nimage = "x"\n'
    )
    config = load_config(tmp_path, environ={})
    assert (config["memory"], config["batch_cpu"], config["batch_memory"]) == (2048, 4, 8192)
    assert config.warnings == (
        f"{tmp_path / 'pyproject.toml'}: [tool.lokki.batch] image has no meaning in lokki-sam: lokki-sam generates "
        "each Batch step's job definition and container image from the step "
        '(@step(compute="batch", cpu=..., memory=..., environment={...}, architecture=...))',
    )
    with pytest.raises(
        ConfigError, match=r"pyproject.toml \[tool.lokki.lambda\] memory: \[tool.lokki.lambda\] memory must"
    ):
        (tmp_path / "pyproject.toml").write_text("[tool.lokki.lambda]\nmemory = 64\n")
        load_config(tmp_path, environ={})


def test_upstream_environment_variables(tmp_path: Path) -> None:
    env = {
        "LOKKI_ARTIFACT_BUCKET": "from-env-bucket",
        "LOKKI_LOG_LEVEL": "warning",
        "LOKKI_LOG_FORMAT": "json",
        "LOKKI_AWS_REGION": "ap-south-1",
        "LOKKI_BUILD_DIR": "out",
        "LOKKI_IMAGE_REPOSITORY": "registry:ci",
    }
    (tmp_path / "lokki.toml").write_text('[aws]\nartifact_bucket = "from-file"\nregion = "eu-west-1"\n')
    config = load_config(tmp_path, environ=env)
    assert (config["artifact_bucket"], config["log_level"], config["log_format"]) == (
        "from-env-bucket",
        "WARNING",
        "json",
    )
    assert (config["region"], config.sources["region"]) == ("ap-south-1", "LOKKI_AWS_REGION")  # the environment wins
    assert config.sources["artifact_bucket"] == "LOKKI_ARTIFACT_BUCKET"
    assert config.warnings == (
        "environment: LOKKI_IMAGE_REPOSITORY has no meaning in lokki-sam: lokki-sam deploys zip functions packaged by "
        "`sam build`; container images: see @step(package=...) (`sam deploy --resolve-image-repos` creates their "
        "ECR repositories)",
        "environment: LOKKI_BUILD_DIR has no meaning in lokki-sam: `sam build` builds into .aws-sam/build "
        "(`sam build --build-dir DIR`); generate writes `template`",
    )


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        # a flat key and its upstream spelling disagreeing: both named
        (
            "timeout = 100\n[lambda]\ntimeout = 300\n",
            {},
            r"lokki.toml: 'timeout' is set twice, to different values: "
            r"timeout = 100 and \[lambda\] timeout = 300.*keep one of them",
        ),
        ('[aws]\nartifact_bucket = "a-bucket"\n[lambda_defaults]\n', {}, None),
        (
            'artifact_bucket = "one-bucket"\n[aws]\nartifact_bucket = "two-bucket"\n',
            {},
            r"'artifact_bucket' is set twice",
        ),
        (
            'runtime = "python3.11"\n[lambda]\npython_version = "3.12"\n',
            {},
            r"runtime = 'python3.11' and \[lambda\] "
            r"python_version = 'python3.12'",
        ),
        (
            "",
            {"LOKKI_REGION": "a", "LOKKI_AWS_REGION": "b"},
            r"environment: 'region' is set twice, to different values: "
            r"LOKKI_REGION = 'a' and LOKKI_AWS_REGION = 'b'",
        ),
        # wrong types: file, section and key named
        (
            '[lambda]\ntimeout = "300"\n',
            {},
            r"lokki.toml \[lambda\] timeout: \[lambda\] timeout must be int, got '300'",
        ),
        ("[lambda]\nmemory = 99999\n", {}, r"lokki.toml \[lambda\] memory: \[lambda\] memory must be at most 10240"),
        ('[lambda]\narchitecture = "sparc"\n', {}, r"\[lambda\] architecture must be one of x86_64, arm64"),
        (
            "[lambda]\npython_version = 3.12\n",
            {},
            r"lokki.toml \[lambda\] python_version: python_version must be a "
            r'version string like "3.12", got 3.12',
        ),
        ('[batch]\nvcpu = "2"\n', {}, r"lokki.toml \[batch\] vcpu: \[batch\] vcpu must be float, got '2'"),
        ("[lambda]\nimage_tag = 5\n", {}, r"lokki.toml: \[lambda\] image_tag must be a string, got 5"),
        ("[lambda.env]\nLOG_LEVEL = 10\n", {}, r"lokki.toml: \[lambda.env\] must be a table of strings"),
        ('[include]\npaths = "data/*"\n', {}, r"\[include\] paths must be a list of strings"),
        ('[lambda]\npackage_type = "docker"\n', {}, r"\[lambda\] package_type must be one of image, zip, got 'docker'"),
        ('[logging]\nshow_timestamps = "yes"\n', {}, r"\[logging\] show_timestamps must be bool, got 'yes'"),
        ('[logging]\nlevel = "LOUD"\n', {}, r"\[logging\] level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ('[logging]\nformat = "xml"\n', {}, r"\[logging\] format must be one of human, json, got 'xml'"),
        ("[logging]\nprogress_interval = 0\n", {}, r"\[logging\] progress_interval must be at least 1"),
        (
            '[aws]\nartifact_bucket = "My_Bucket"\n',
            {},
            r"\[aws\] artifact_bucket is not valid \('My_Bucket'\): a "
            r"bucket name uses lowercase letters",
        ),
        (
            "",
            {"LOKKI_STORE_TYPE": "disk"},
            r"environment variable LOKKI_STORE_TYPE: LOKKI_STORE_TYPE must be one of local",
        ),
        # typos inside upstream sections are caught like unknown keys
        ("[lambda]\ntimout = 3\n", {}, r"unknown key 'timout' in \[lambda\].*the keys of \[lambda\]: timeout, memory"),
        ("[aws]\nbucket = 'x'\n", {}, r"unknown key 'bucket' in \[aws\].*artifact_bucket"),
        ("lambda = 3\n", {}, r"lokki.toml: \[lambda\] must be a table"),
    ],
)
def test_bad_upstream_settings(tmp_path: Path, text: str, env: dict[str, str], message: str | None) -> None:
    (tmp_path / "lokki.toml").write_text(text)
    if message is None:
        load_config(tmp_path, environ=env)
        return
    with pytest.raises(ConfigError, match="(?s)" + message):
        load_config(tmp_path, environ=env)


def test_upstreams_empty_artifact_bucket_means_none(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text('[aws]\nartifact_bucket = ""\n')
    assert load_config(tmp_path, environ={}).get("artifact_bucket") is None
    assert load_config(tmp_path, environ={"LOKKI_ARTIFACT_BUCKET": ""}).get("artifact_bucket") is None


def test_the_same_value_in_both_spellings_is_no_conflict(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text("memory = 1024\n[lambda]\nmemory = 1024\n")
    assert load_config(tmp_path, environ={})["memory"] == 1024


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("my-bucket.data-2", True),
        ("abc", True),
        ("ab", False),
        ("a" * 64, False),
        ("-bucket", False),
        ("bucket-", False),
        ("Bucket", False),
        ("my..bucket", False),
        ("192.168.5.4", False),
        ("xn--bucket", False),
        ("bucket-s3alias", False),
        ("under_score", False),
    ],
)
def test_artifact_bucket_names_follow_s3s_rules(name: str, ok: bool) -> None:
    from lokki_sam.config import bucket_name_problem

    assert (bucket_name_problem(name) is None) == ok


@pytest.mark.parametrize(
    ("given", "stored"), [("debug", "DEBUG"), ("Info", "INFO"), ("WARNING", "WARNING"), ("error", "ERROR")]
)
def test_log_level_takes_upstreams_names_in_any_case(tmp_path: Path, given: str, stored: str) -> None:
    (tmp_path / "lokki.toml").write_text(f'log_level = "{given}"\n')
    assert load_config(tmp_path, environ={})["log_level"] == stored
    assert load_config(tmp_path, environ={"LOKKI_LOG_LEVEL": given.lower()})["log_level"] == stored


def test_artifact_bucket_becomes_the_templates_existing_bucket_default(tmp_path: Path) -> None:
    from lokki_sam.compile import model, sam
    from tests.flows.shapes import map_agg

    (tmp_path / "lokki.toml").write_text(
        '[aws]\nartifact_bucket = "team-artifacts"\n[lambda]\nmemory = 2048\ntimeout = 60\n'
    )
    config = load_config(tmp_path, environ={})
    settings = sam.Settings(
        artifact_bucket=config["artifact_bucket"], memory=config["memory"], timeout=config["timeout"]
    )
    template = sam.render(model.build([map_agg.graph], settings))
    parameter = template.parameters[sam.BUCKET_PARAMETER]
    assert parameter["Default"] == "team-artifacts"
    assert re.fullmatch(parameter["AllowedPattern"], "team-artifacts")
    assert (template.globals_function["MemorySize"], template.globals_function["Timeout"]) == (2048, 60)
    default = sam.render(model.build([map_agg.graph], sam.Settings()))
    assert default.parameters[sam.BUCKET_PARAMETER]["Default"] == ""


UPSTREAM_CI_TOML = """
[aws]
artifact_bucket = "lokki"
image_repository = "local"
endpoint = "http://localhost:4566"

[lambda]
package_type = "zip"
timeout = 300
memory = 1024
image_tag = "latest"

[lambda.env]
LOG_LEVEL = "INFO"
"""


def test_upstream_lokki_toml_does_not_stop_run_and_warns_once_on_stderr(lokki: Lokki, tmp_path: Path) -> None:
    """Upstream's tests/flows/ci_pipeline/lokki.toml: `run` works and says once what is ignored."""
    (tmp_path / "threads_flow.py").write_text(THREADS_FLOW)
    (tmp_path / "lokki.toml").write_text(UPSTREAM_CI_TOML)
    result = lokki("run", "threads_flow.py", "--store", "runs")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: ") == 3, result.stderr
    assert result.stderr.count("[aws] image_repository, [lambda] image_tag have no meaning") == 1
    assert "[lambda.env] has no meaning" in result.stderr and "[aws] endpoint has no meaning" in result.stderr
    as_json = lokki("run", "threads_flow.py", "--json", "--store", "runs")
    events = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert [e["event"] for e in events].count("config_warning") == 3  # stderr stays JSON lines
    quiet = lokki("run", "threads_flow.py", "-q", "--store", "runs")
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_generate_writes_the_configured_bucket_as_the_parameters_default(lokki: Lokki, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "threads_flow.py").write_text(THREADS_FLOW)
    (tmp_path / "lokki.toml").write_text(UPSTREAM_CI_TOML)
    result = lokki("generate", "src/threads_flow.py")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning: ") == 3, result.stderr
    template = (tmp_path / "template.yaml").read_text()
    assert re.search(r"ExistingArtifactBucket:\n(\s+\w+: .*\n)*?\s+Default: lokki\n", template), template
    assert "MemorySize: 1024" in template


def test_batch_section_sets_the_batch_defaults_in_either_spelling(tmp_path: Path) -> None:
    (tmp_path / "lokki.toml").write_text(
        '[batch]\ncpu = 0.5\nmemory = 4096\ntimeout = 7200\njob_queue = "analytics"\n'
        'platform = "FARGATE"\nspot = true\nsubnets = ["subnet-0123456789abcdef0"]\npublic_ip = true\n'
    )
    config = load_config(tmp_path, environ={"LOKKI_BATCH_MAX_VCPUS": "64"})
    got = {k: config[k] for k in SCHEMA if k.startswith("batch_")}
    assert got == {
        "batch_job_queue": "analytics",
        "batch_cpu": 0.5,
        "batch_memory": 4096,
        "batch_timeout": 7200,
        "batch_platform": "fargate",
        "batch_max_vcpus": 64,
        "batch_spot": True,
        "batch_subnets": ["subnet-0123456789abcdef0"],
        "batch_security_groups": None,
        "batch_public_ip": True,
    }
    assert config.sources["batch_max_vcpus"] == "LOKKI_BATCH_MAX_VCPUS" and config.warnings == ()
    # Subnet and security group ids are checked where they are written.
    (tmp_path / "lokki.toml").write_text('[batch]\nsecurity_groups = ["sg-1", "default"]\n')
    with pytest.raises(ConfigError, match=r"not sg ids \(sg- and 8 or 17 hex digits\): 'sg-1', 'default'"):
        load_config(tmp_path, environ={})
    # EC2 takes whole vCPUs with any memory: no Fargate pair needed.
    (tmp_path / "lokki.toml").write_text('[batch]\ncpu = 3\nmemory = 1000\nplatform = "ec2"\n')
    assert (load_config(tmp_path, environ={})["batch_cpu"], load_config(tmp_path, environ={})["batch_memory"]) == (
        3,
        1000,
    )


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        (
            "[batch]\ncpu = 4\n",
            {},
            r"\[batch\] cpu = 4 and memory = 2048 are not a Fargate job size: Fargate offers 4 vCPU",
        ),
        ("", {"LOKKI_BATCH_CPU": "16"}, r"LOKKI_BATCH_CPU and default: \[batch\] cpu = 16 and memory = 2048"),
        ("[batch]\ncpu = 1.5\n", {}, r"\[batch\] cpu is not valid \(1.5\): Fargate offers .* on EC2 a job takes whole"),
        ("[batch]\ncpu = 2\nvcpu = 4\n", {}, r"'batch_cpu' is set twice, to different values: \[batch\] cpu = 2"),
        ("[batch]\ntimeout = 30\n", {}, r"\[batch\] timeout must be at least 60, got 30"),
        ('[batch]\nplatform = "lambda"\n', {}, r"\[batch\] platform must be one of fargate, ec2"),
        ('[batch]\njob_queue = "my queue"\n', {}, r"\[batch\] job_queue is not valid \('my queue'\): a job queue name"),
        ('[batch]\njob_queue = "arn:aws:batch:eu-west-1:12:job-queue/q"\n', {}, r"a job queue ARN looks like"),
        ("[batch]\ngpu = 1\n", {}, r"unknown key 'gpu' in \[batch\]"),
    ],
)
def test_bad_batch_settings(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    (tmp_path / "lokki.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, environ=env)
