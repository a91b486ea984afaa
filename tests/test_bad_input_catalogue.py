"""The bad-input catalogue: one table of distinct bad inputs across every entry point.

Each row sets up a working directory (and a moto S3 bucket), takes a snapshot of both, feeds
one bad input, and asserts: the message names what and where, the documented exit code
(CLI: 2, no traceback) or error type (API), and that nothing was written or lost (the
snapshot is unchanged, except the run record a refused resume marks as failed).

`pytest tests/test_bad_input_catalogue.py -q -rA` prints the per-area counts (test_catalogue_size).
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from cookiecutter.exceptions import FailedHookException as HookFailed

from lokki_sam import Retry, flow, runtime, serialization, step
from lokki_sam.cli import cli
from lokki_sam.errors import FlowDefinitionError, LokkiError, ParamError, StoreError
from lokki_sam.loader import load_flow
from lokki_sam.local import run_flow
from lokki_sam.serialization import FORMAT_VERSION, MAGIC
from lokki_sam.store import S3Store
from tests.conftest import EXAMPLES, REPO
from tests.support.keys import Keys, function_env, prefix, stamped
from tests.support.moto_s3 import SharedS3, shared_s3

FDE = FlowDefinitionError
BUCKET = "catalogue-artifacts"
RUN = "r1"
MAP = "map-cat_double"
COOKIECUTTER = REPO / "cookiecutter-lokki"


# ------------------------------------------------------------------- a flow for store/runtime rows


@step
def cat_items(n: int = 6) -> list[int]:
    return list(range(n))


@step
def cat_double(x: int) -> int:
    return 2 * x


@step
def cat_sum(xs: list[int]) -> int:
    return sum(xs)


@flow
def catalogue_flow(n: int = 6):
    return cat_items(n=n).map(cat_double, batch_size=2).agg(cat_sum)


TYPED_FLOW = """
from lokki_sam import flow, step

@step
def source(n: int, flags: list[int] = [], opts: dict = {}, fast: bool = False) -> list[int]:
    return list(range(n))

@flow
def typed(n: int, flags: list[int] = [], opts: dict = {}, fast: bool = False):
    return source(n=n, flags=flags, opts=opts, fast=fast)
"""

APP_FLOW = """
from lokki_sam import flow, step

@step
def fetch(limit: int = 3) -> list[int]:
    return list(range(limit))

@step
def square(x: int) -> int:
    return x * x

@flow
def calc(limit: int = 3):
    return fetch(limit=limit).map(square)
"""


# ------------------------------------------------------------------------------- the harness


@dataclass
class Env:
    dir: Path
    s3: Any
    capfd: pytest.CaptureFixture[str]

    @property
    def runs(self) -> Path:
        return self.dir / "runs"

    def write(self, rel: str, text: str) -> Path:
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def store(self) -> S3Store:
        return S3Store(BUCKET, prefix(catalogue_flow), self.s3)


@dataclass(frozen=True)
class Outcome:
    code: int | None  # CLI exit code (None for API calls)
    error: type[BaseException] | None  # the exception an API call raised
    text: str  # the message the user sees


@dataclass(frozen=True)
class Case:
    area: str
    name: str
    act: Callable[[Env], Outcome]
    fragments: tuple[str, ...]
    expect: int | type[BaseException]  # exit code, or the exception type (or a base of it)
    setup: Callable[[Env], None] | None = None
    may_change: tuple[str, ...] = ()  # relative paths a refusal may rewrite (a run record marked failed)


class CliAct:
    """`lokki-sam ARGS` in-process; `with_json()` is the same command with --json."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str] | None) -> None:
        self.args, self.env = args, env

    def __call__(self, e: Env) -> Outcome:
        result = self.invoke(self.args)
        return Outcome(result.exit_code, None, result.stdout + result.stderr)

    def invoke(self, args: tuple[str, ...]) -> Any:
        result = CliRunner(mix_stderr=False).invoke(cli, list(args), env=self.env)
        # Anything but SystemExit escaping the command is a crash the user would see as a traceback.
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    @property
    def takes_json(self) -> bool:
        command = cli.get_command(click.Context(cli), self.args[0]) if self.args else None
        return command is not None and any(param.name == "as_json" for param in command.params)


def cli_run(*args: str, env: dict[str, str] | None = None) -> CliAct:
    return CliAct(args, env)


def api(fn: Callable[[Env], Any]) -> Callable[[Env], Outcome]:
    def act(e: Env) -> Outcome:
        try:
            fn(e)
        except Exception as exc:
            return Outcome(None, type(exc), str(exc))
        raise AssertionError("the bad input was accepted")

    return act


def write_files(**files: str) -> Callable[[Env], None]:
    def setup(e: Env) -> None:
        for rel, text in files.items():
            e.write(rel.replace("__", "/"), text)

    return setup


def app(template: str | None = None) -> Callable[[Env], None]:
    """A SAM app folder with src/calc.py and optionally an existing template.yaml."""

    def setup(e: Env) -> None:
        e.write("src/calc.py", APP_FLOW)
        e.write("src/requirements.txt", "lokki-sam\n")
        if template is not None:
            (e.dir / "template.yaml").write_text(template)

    return setup


# -------------------------------------------------------------------------- store row helpers


def completed_run(e: Env) -> None:
    run_flow(catalogue_flow, {}, store=e.runs, run_id=RUN)


def local_key(e: Env, pattern: str) -> Path:
    matches = sorted((e.runs / RUN).glob(pattern))
    assert matches, f"no {pattern} under {e.runs / RUN}"
    return matches[0]


def corrupt_local(pattern: str, transform: Callable[[bytes], bytes]) -> Callable[[Env], None]:
    def setup(e: Env) -> None:
        completed_run(e)
        path = local_key(e, pattern)
        path.write_bytes(transform(path.read_bytes()))

    return setup


def corrupt_map_output(transform: Callable[[bytes], bytes]) -> Callable[[Env], None]:
    """A finished run whose aggregation must run again (its output is gone), over a damaged map output."""

    def setup(e: Env) -> None:
        corrupt_local("step=cat_double/*.pkl", transform)(e)
        local_key(e, "step=cat_sum/*/output.pkl").unlink()

    return setup


def sequence_bytes(header: Any, values: list[Any]) -> bytes:
    """An artifact in the format of map outputs and items chunks (serialization.dump_sequence)."""
    sink = io.BytesIO()
    serialization.dump_sequence(header, values, sink)
    return sink.getvalue()


def resume(e: Env) -> None:
    run_flow(catalogue_flow, None, store=e.runs, resume=RUN)


def with_version(version: int) -> Callable[[bytes], bytes]:
    return lambda data: MAGIC + bytes((version,)) + data[len(MAGIC) + 1 :]


class Trap:
    """Unpickling this creates a file: proof that a foreign object was (not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.path),))


def trap_pickle(e: Env) -> bytes:
    return pickle.dumps(Trap(str(e.dir / "UNPICKLED")))


def foreign_agg_output(e: Env) -> None:
    completed_run(e)
    local_key(e, "step=cat_sum/*/output.pkl").write_bytes(trap_pickle(e))


def resume_foreign(e: Env) -> None:
    try:
        resume(e)
    finally:
        assert not (e.dir / "UNPICKLED").exists(), "a foreign object was unpickled"


def manifest_setup(entries: Any, raw: str | None = None) -> Callable[[Env], None]:
    """A run whose map has not started yet (its manifest and items only): the next resume reads both."""

    def setup(e: Env) -> None:
        completed_run(e)
        for path in (e.runs / RUN).glob("step=cat_double/*.pkl"):
            path.unlink()
        local_key(e, "step=cat_sum/*/output.pkl").unlink()
        text = raw if raw is not None else json.dumps(entries)
        local_key(e, "step=cat_items/*/manifest.json").write_text(text)

    return setup


def edit_record(**changes: Any) -> Callable[[Env], None]:
    def setup(e: Env) -> None:
        completed_run(e)
        path = e.runs / RUN / "run.json"
        record = json.loads(path.read_text())
        record.update(changes)
        path.write_text(json.dumps(record))

    return setup


# ----------------------------------------------------------------------- Lambda row helpers


def lambda_env(step_name: str, **overrides: str) -> dict[str, str]:
    return function_env(catalogue_flow, step_name, BUCKET, __name__, **overrides)


def invoke(event: Any, step_name: str = "cat_items", **overrides: str) -> Callable[[Env], Outcome]:
    return api(lambda e: runtime.handle(stamp(event), lambda_env(step_name, **overrides), e.s3))


def stamp(event: Any) -> Any:
    """The state machine's stamp on a well-formed event (a malformed one stays as it is)."""
    return stamped(catalogue_flow, event) if isinstance(event, dict) else event


def item(i: int = 0, c: int = 0, **extra: Any) -> dict[str, Any]:
    return {"i": i, "c": c, "run_id": RUN, "params": {}} | extra


def map_event(value: Any) -> dict[str, Any]:
    return {"node": "cat_double", "map": MAP, "input": value}


def cloud_source(e: Env) -> None:
    """The source step has run in the cloud: manifest + items chunk in S3."""
    runtime.handle(stamp({"node": "cat_items", "run_id": RUN, "params": {}}), lambda_env("cat_items"), e.s3)


def cloud_object(key: Callable[[Env], str], body: Callable[[Env], bytes]) -> Callable[[Env], None]:
    def setup(e: Env) -> None:
        cloud_source(e)
        e.store().put_bytes(key(e), body(e))

    return setup


def cloud_map_item(e: Env) -> None:
    try:
        runtime.handle(stamp(map_event(item())), lambda_env("cat_double"), e.s3)
    finally:
        assert not (e.dir / "UNPICKLED").exists(), "a foreign object was unpickled"


# ------------------------------------------------------------------------------ flow API rows


def nested_map(e: Env) -> None:
    @flow
    def nested():
        return cat_items().map(cat_double().map(cat_double))

    nested.graph  # noqa: B018  (building the graph is what refuses it)


def two_steps_one_name(e: Env) -> None:
    def make() -> Any:
        @step
        def cat_double(x: int) -> int:  # another step of the same name as the module's
            return x

        return cat_double

    @flow
    def doubled_twice():
        return cat_items().map(cat_double).next(make())

    doubled_twice.graph  # noqa: B018


def flow_returning(value: Any) -> Callable[[Env], None]:
    def build(e: Env) -> None:
        @flow
        def bad_return():
            return value

        bad_return.graph  # noqa: B018

    return build


def map_option(**options: Any) -> Callable[[Env], None]:
    def build(e: Env) -> None:
        @flow
        def opts():
            return cat_items().map(cat_double, **options)

        opts.graph  # noqa: B018

    return build


def step_option(**options: Any) -> Callable[[Env], None]:
    def build(e: Env) -> None:
        @step(**options)
        def configured(x: int) -> int:
            return x

    return build


def batch_in_map(*, execution_type: str, first: bool = True) -> Callable[[Env], None]:
    """A map whose body holds a Batch step: as the map's step, or after a Lambda step."""

    def build(e: Env) -> None:
        @step(compute="batch")
        def heavy(x: int) -> int:
            return x

        @flow
        def mixed():
            if first:
                return cat_items().map(heavy, execution_type=execution_type)
            return cat_items().map(cat_double, execution_type=execution_type).next(heavy)

    return build


def flow_package(package: str) -> Callable[[Env], None]:
    def build(e: Env) -> None:
        @flow(package=package)
        def packed():
            return cat_items().map(cat_double)

    return build


def cookiecutter(**answers: str) -> Callable[[Env], Outcome]:
    """Render the project template in-process (hooks run as subprocesses, as under `sam init`)."""

    def act(e: Env) -> Outcome:
        from cookiecutter.main import cookiecutter as render

        try:
            render(str(COOKIECUTTER), no_input=True, extra_context=answers, output_dir=str(e.dir / "out"))
        except (HookFailed, ValueError) as exc:
            captured = e.capfd.readouterr()
            return Outcome(None, type(exc), captured.out + captured.err + str(exc))
        raise AssertionError("the bad answers were accepted")

    return act


# -------------------------------------------------------------------------------- the table

BIRDS = str(EXAMPLES / "birds.py")
LONG_STACK = "s" * 129

CASES: list[Case] = [
    # --- CLI
    Case("cli", "run file missing", cli_run("run", "missing/flow.py"), ("file not found: missing/flow.py",), 2),
    Case("cli", "run unknown option", cli_run("run", BIRDS, "--frobnicate"), ("No such option: --frobnicate",), 2),
    Case(
        "cli",
        "run module with a syntax error",
        cli_run("run", "broken.py"),
        ("SyntaxError", "(broken.py, line 2)"),
        2,
        write_files(**{"broken.py": "from lokki_sam import flow\ndef oops(:\n"}),
    ),
    Case(
        "cli",
        "run a flow the module lacks",
        cli_run("run", f"{EXAMPLES / 'numeric.py'}:tau"),
        ("no flow 'tau'", "flows there: pi, zscores"),
        2,
    ),
    Case("cli", "run invalid resume id", cli_run("run", BIRDS, "--resume", "../x"), ("invalid run id '../x'",), 2),
    Case("cli", "run unknown executor", cli_run("run", BIRDS, "--executor", "gpu"), ("'gpu' is not one of",), 2),
    Case(
        "cli",
        "run --store is a file",
        cli_run("run", BIRDS, "--store", "afile"),
        ("afile", "must be a writable directory"),
        2,
        write_files(afile="not a directory\n"),
    ),
    Case("cli", "graph unknown format", cli_run("graph", BIRDS, "--format", "png"), ("'png' is not one of",), 2),
    Case("cli", "param given a dash", cli_run("run", BIRDS, "-p", "limit=-"), ("limit",), 2),
    # --- params (through `lokki-sam run`, so "no run directory" is checked)
    Case(
        "params",
        "missing required int",
        cli_run("run", "typed.py", "--store", "runs"),
        ("missing required parameter 'n' (int)",),
        2,
        write_files(**{"typed.py": TYPED_FLOW}),
    ),
    Case(
        "params",
        "list[int] with a word",
        cli_run("run", "typed.py", "--store", "runs", "-p", "n=1", "-p", "flags=1,x"),
        ("parameter 'flags' expects list[int]",),
        2,
        write_files(**{"typed.py": TYPED_FLOW}),
    ),
    Case(
        "params",
        "dict given a JSON list",
        cli_run("run", "typed.py", "--store", "runs", "-p", "n=1", "-p", "opts=[1,2]"),
        ("parameter 'opts' expects dict",),
        2,
        write_files(**{"typed.py": TYPED_FLOW}),
    ),
    Case(
        "params",
        "bool given maybe",
        cli_run("run", "typed.py", "--store", "runs", "-p", "n=1", "-p", "fast=maybe"),
        ("parameter 'fast' expects bool",),
        2,
        write_files(**{"typed.py": TYPED_FLOW}),
    ),
    Case(
        "params",
        "int given a float",
        cli_run("run", "typed.py", "--store", "runs", "-p", "n=1.5"),
        ("parameter 'n' expects int, got '1.5'",),
        2,
        write_files(**{"typed.py": TYPED_FLOW}),
    ),
    Case(
        "params",
        "unknown parameter",
        cli_run("run", BIRDS, "--store", "runs", "-p", "birds=3"),
        ("unknown parameter(s) birds", "limit"),
        2,
    ),
    Case(
        "params",
        "resume with a changed parameter",
        cli_run("run", BIRDS, "--store", "runs", "--resume", RUN, "-p", "limit=1"),
        ("a resume keeps the run's parameters: limit=3 (given 1)",),
        2,
        lambda e: run_flow(load_flow(BIRDS), {}, store=e.runs, run_id=RUN),
    ),
    # --- config (each through `lokki-sam run`: no run directory may appear)
    Case(
        "config",
        "negative concurrency",
        cli_run("run", BIRDS),
        ("lokki.toml", "'concurrency' must be at least 1"),
        2,
        write_files(**{"lokki.toml": "concurrency = -1\n"}),
    ),
    Case(
        "config",
        "unknown executor",
        cli_run("run", BIRDS),
        ("lokki.toml", "'executor' must be one of auto, threads, processes, got 'turbo'"),
        2,
        write_files(**{"lokki.toml": 'executor = "turbo"\n'}),
    ),
    Case(
        "config",
        "memory below Lambda's minimum",
        cli_run("run", BIRDS),
        ("lokki.toml", "'memory' must be at least 128"),
        2,
        write_files(**{"lokki.toml": "memory = 64\n"}),
    ),
    Case(
        "config",
        "store of the wrong type",
        cli_run("run", BIRDS),
        ("lokki.toml", "'store' must be a string"),
        2,
        write_files(**{"lokki.toml": "store = 5\n"}),
    ),
    Case(
        "config",
        "[tool.lokki] not a table",
        cli_run("run", BIRDS),
        ("pyproject.toml", "[tool.lokki] must be a table"),
        2,
        write_files(**{"pyproject.toml": '[tool]\nlokki = "yes"\n'}),
    ),
    Case(
        "config",
        "LOKKI_TRACING not a boolean",
        cli_run("run", BIRDS, env={"LOKKI_TRACING": "perhaps"}),
        ("LOKKI_TRACING", "'tracing'"),
        2,
    ),
    Case(
        "config",
        "config flow points at a missing file",
        cli_run("run"),
        ("file not found: nowhere.py",),
        2,
        write_files(**{"lokki.toml": 'flow = "nowhere.py"\n'}),
    ),
    # --- existing templates (lokki-sam generate must leave them byte-identical)
    Case(
        "template",
        "unparseable YAML",
        cli_run("generate", "src/calc.py"),
        ("template.yaml:", "cannot parse the existing template"),
        2,
        app("Resources:\n  A:\n    Type: [unclosed\n"),
    ),
    Case(
        "template",
        "top level is a list",
        cli_run("generate", "src/calc.py"),
        ("template.yaml",),
        2,
        app("- a\n- b\n"),
    ),
    Case(
        "template",
        "Resources is a list",
        cli_run("generate", "src/calc.py"),
        ("template.yaml", "Resources"),
        2,
        app("Transform: AWS::Serverless-2016-10-31\nResources:\n  - a\n"),
    ),
    Case(
        "template",
        "another transform",
        cli_run("generate", "src/calc.py"),
        ("AWS::Serverless-2016-10-31",),
        2,
        app("Transform: AWS::LanguageExtensions\nResources: {}\n"),
    ),
    Case(
        "template",
        "user resource with a generated logical ID",
        cli_run("generate", "src/calc.py"),
        ("CalcFetchFunction",),
        2,
        app("Transform: AWS::Serverless-2016-10-31\nResources:\n  CalcFetchFunction:\n    Type: AWS::SQS::Queue\n"),
    ),
    Case(
        "template",
        "duplicate keys",
        cli_run("generate", "src/calc.py"),
        ("template.yaml", "Resources"),
        2,
        app("Resources: {}\nResources: {}\n"),
    ),
    Case(
        "template",
        "flow outside CodeUri",
        cli_run("generate", "src/calc.py", "--code-uri", "elsewhere"),
        ("is not inside the functions' CodeUri",),
        2,
        app("Transform: AWS::Serverless-2016-10-31\nResources: {}\n"),
    ),
    Case(
        "template",
        "image steps with CodeUri outside the Docker context",
        cli_run("generate", "--template", "sub/template.yaml", "--code-uri", "../src", "src/calc.py"),
        ("image steps need the functions' CodeUri inside the template's folder",),
        2,
        write_files(**{"src__calc.py": APP_FLOW, "lokki.toml": 'package = "image"\n', "sub__README": "here\n"}),
    ),
    Case(
        "template",
        "a user output refers to a generated function this run removes",
        cli_run("generate", "src/calc.py"),
        ("Outputs.OldArn.Value (Fn::GetAtt CalcOldFunction)", "Resources.CalcOldFunction", "--force"),
        2,
        app(
            "Transform: AWS::Serverless-2016-10-31\nResources:\n  CalcOldFunction:\n"
            "    Type: AWS::Serverless::Function\n    Metadata: {lokki-sam: generated}\n    Properties: {}\n"
            "Outputs:\n  OldArn:\n    Value: !GetAtt CalcOldFunction.Arn\n"
        ),
    ),
    Case(
        "template",
        "JSON template with a duplicate key",
        cli_run("generate", "src/calc.py", "--template", "template.json"),
        ("template.json", "duplicate key 'Resources'"),
        2,
        write_files(**{"src__calc.py": APP_FLOW, "template.json": '{"Resources": {}, "Resources": {}}'}),
    ),
    Case(
        "template",
        "a flow name the template records from another module that still defines it",
        cli_run("generate", "src/other.py"),
        ("flow 'calc' is defined in src/other.py:calc", "from src/calc.py:calc", "--prune"),
        2,
        write_files(
            **{
                "src__calc.py": APP_FLOW,
                "src__other.py": APP_FLOW,
                "template.yaml": "Transform: AWS::Serverless-2016-10-31\nMetadata:\n  lokki-sam:\n    flows:\n"
                "      calc: src/calc.py:calc\nResources: {}\n",
            }
        ),
    ),
    Case(
        "template",
        "a step requirement pip cannot parse",
        cli_run("generate", "src/calc.py"),
        ("requirement 'numpy<<2' is not a valid requirement", "step 'fetch'", "src/calc.py:3"),
        2,
        write_files(**{"src__calc.py": APP_FLOW.replace("@step\ndef", "@step(requirements=['numpy<<2'])\ndef", 1)}),
    ),
    Case(
        "config",
        "unknown package",
        cli_run("generate", "src/calc.py"),
        ("lokki.toml", "'package' must be one of zip, image, got 'Image'"),
        2,
        write_files(**{"src__calc.py": APP_FLOW, "lokki.toml": 'package = "Image"\n'}),
    ),
    # --- flow API
    Case("flow API", "nested map", api(nested_map), ("nested maps) is not supported",), FlowDefinitionError),
    Case(
        "flow API",
        "two different steps with one name",
        api(two_steps_one_name),
        ("two different steps are named 'cat_double'", "test_bad_input_catalogue.py:"),
        FDE,
    ),
    Case(
        "flow API",
        "a requirement URL with a password",
        api(lambda e: step(requirements=["pkg @ https://me:hunter2@files.example.com/pkg.whl"])(cat_sum.func)),
        ("holds a password in its URL", "netrc"),
        FDE,
    ),
    Case("flow API", "flow returns an int", api(flow_returning(3)), ("flow 'bad_return'",), FlowDefinitionError),
    Case("flow API", "@step on a number", api(lambda e: step(42)), ("@step needs a function, got 42",), LokkiError),
    Case("flow API", "batch_size 0", api(map_option(batch_size=0)), ("batch_size must be an integer >= 1",), FDE),
    Case(
        "flow API",
        "tolerated_failure 150",
        api(map_option(tolerated_failure=150)),
        ("tolerated_failure is a percentage between 0 and 100",),
        LokkiError,
    ),
    Case("flow API", "unknown map mode", api(map_option(mode="turbo")), ("mode must be one of",), LokkiError),
    Case(
        "flow API",
        "negative retries",
        api(lambda e: Retry(retries=-1)),
        ("retries must be an integer >= 0",),
        FlowDefinitionError,
    ),
    Case("flow API", "memory 64 MB", api(step_option(memory=64)), ("memory must be an integer from",), LokkiError),
    Case("flow API", "unknown package", api(step_option(package="docker")), ("package must be one of zip",), FDE),
    Case("flow API", "flow package", api(flow_package("oci")), ("flow 'packed'", "package must be one of"), FDE),
    Case("flow API", "timeout 1000 s", api(step_option(timeout=1000)), ("timeout must be an integer from",), FDE),
    Case(
        "flow API",
        "literal secret in a step environment",
        api(step_option(environment={"API_TOKEN": "s3cr3t-value"})),
        ("environment variable API_TOKEN holds a literal secret", "SSM parameter"),
        FDE,
    ),
    Case(
        "flow API",
        "reserved variable in a step environment",
        api(step_option(environment={"AWS_REGION": "eu-west-1"})),
        ("environment variable AWS_REGION is reserved",),
        FDE,
    ),
    Case("flow API", "architecture sparc", api(step_option(architecture="sparc")), ("architecture",), LokkiError),
    Case(
        "flow API",
        "upstream job_type spark",
        api(step_option(job_type="spark")),
        ("job_type must be one of lambda, batch, got 'spark'",),
        FDE,
    ),
    Case(
        "flow API", "unknown compute", api(step_option(compute="ecs")), ("compute must be one of lambda, batch",), FDE
    ),
    Case(
        "flow API",
        "compute and job_type",
        api(step_option(compute="batch", job_type="batch")),
        ("compute and job_type are one setting",),
        FDE,
    ),
    Case("flow API", "upstream vcpu on Lambda", api(step_option(vcpu=4)), ("has no meaning on AWS Lambda",), FDE),
    Case("flow API", "gpu on Lambda", api(step_option(gpu=1)), ("gpu is a setting of AWS Batch jobs",), FDE),
    Case(
        "flow API",
        "cpu and vcpu",
        api(step_option(compute="batch", cpu=2, vcpu=2)),
        ("cpu and vcpu are one setting",),
        FDE,
    ),
    Case(
        "flow API",
        "memory and memory_mb",
        api(step_option(memory=512, memory_mb=1024)),
        ("memory and memory_mb are one setting",),
        FDE,
    ),
    Case(
        "flow API",
        "GPU on Fargate",
        api(step_option(compute="batch", gpu=1, platform="fargate")),
        ("Fargate has no GPUs", "a GPU job runs on EC2"),
        FDE,
    ),
    Case(
        "flow API",
        "Fargate without that vCPU/memory pair",
        api(step_option(job_type="batch", vcpu=2, memory_mb=1024)),
        ("Fargate offers 2 vCPU with 4096-16384 in steps of 1024 MiB, not 1024 MiB", 'platform="ec2"'),
        FDE,
    ),
    Case("flow API", "Fargate 3 vCPUs", api(step_option(compute="batch", cpu=3)), ("Fargate offers 0.25, 0.5",), FDE),
    Case(
        "flow API",
        "half a vCPU on EC2",
        api(step_option(compute="batch", cpu=0.5, platform="ec2")),
        ("on EC2 a job takes whole vCPUs",),
        FDE,
    ),
    Case(
        "flow API",
        "Batch timeout of two years",
        api(step_option(compute="batch", timeout=2 * 365 * 24 * 3600)),
        ("a Batch job's timeout is an integer from 60", "31536000"),
        FDE,
    ),
    Case(
        "flow API",
        "Batch timeout under a minute",
        api(step_option(job_type="batch", timeout_seconds=30)),
        ("a Batch job's timeout is an integer from 60",),
        FDE,
    ),
    Case(
        "flow API",
        "zip-packaged Batch step",
        api(step_option(compute="batch", package="zip")),
        ("a Batch step always runs as a container image",),
        FDE,
    ),
    Case(
        "flow API",
        "Batch step in an EXPRESS map",
        api(batch_in_map(execution_type="EXPRESS")),
        ("step 'heavy' runs as an AWS Batch job, which an EXPRESS map cannot wait for", "STANDARD"),
        FDE,
    ),
    Case(
        "flow API",
        "Batch step later in an EXPRESS map's body",
        api(batch_in_map(execution_type="EXPRESS", first=False)),
        (".next(heavy)", "an EXPRESS map cannot wait for"),
        FDE,
    ),
    Case(
        "cli",
        "run: GPU on Fargate at the step's line",
        cli_run("run", "gpu.py"),
        ("gpu.py:3: step 'fit': Fargate has no GPUs",),
        2,
        setup=write_files(
            **{
                "gpu.py": "from lokki_sam import flow, step\n\n"
                '@step(compute="batch", gpu=1, platform="fargate")\n'
                "def fit() -> int:\n    return 1\n\n"
                "@flow\ndef gpu():\n    return fit()\n"
            }
        ),
    ),
    Case(
        "cli",
        "generate a Batch step for the Serverless target without [batch] subnets",
        cli_run("generate", "src/heavy.py", "--code-uri", "src", "--target", "serverless"),
        ("lokki.toml [batch] subnets", "passes no CloudFormation parameters", "[batch] job_queue"),
        2,
        setup=write_files(
            **{
                "src__heavy.py": "from lokki_sam import flow, step\n\n"
                '@step(compute="batch")\n'
                "def fit() -> int:\n    return 1\n\n"
                "@flow\ndef heavy():\n    return fit()\n"
            }
        ),
    ),
    Case(
        "cli",
        "generate EC2 Batch steps of two architectures",
        cli_run("generate", "src/ec2.py", "--code-uri", "src"),
        ("share one compute environment", "arm64 and x86_64", "give them one architecture"),
        2,
        setup=write_files(
            **{
                "src__ec2.py": "from lokki_sam import flow, step\n\n"
                '@step(compute="batch", platform="ec2", architecture="arm64")\n'
                "def a() -> int:\n    return 1\n\n"
                '@step(compute="batch", platform="ec2", architecture="x86_64")\n'
                "def b(x: int) -> int:\n    return x\n\n"
                "@flow\ndef ec2():\n    return a().next(b)\n"
            }
        ),
    ),
    Case(
        "config",
        "[batch] security_groups that are not ids",
        cli_run("plan", BIRDS),
        ("[batch] security_groups", "not sg ids (sg- and 8 or 17 hex digits): 'default'"),
        2,
        setup=write_files(**{"lokki.toml": '[batch]\nsecurity_groups = ["default"]\n'}),
    ),
    Case(
        "config",
        "[batch] size Fargate does not offer",
        cli_run("plan", BIRDS),
        ("[batch] cpu = 4 and memory = 2048 are not a Fargate job size",),
        2,
        setup=write_files(**{"lokki.toml": "[batch]\ncpu = 4\n"}),
    ),
    # --- cookiecutter answers (distinct from tests/test_cookiecutter.py's rows)
    Case("cookiecutter", "slug lokki_sam", cookiecutter(project_slug="lokki_sam"), ("would shadow",), HookFailed),
    Case(
        "cookiecutter",
        "stack name of 129 characters",
        cookiecutter(stack_name=LONG_STACK),
        ("is not a CloudFormation stack name",),
        HookFailed,
    ),
    Case(
        "cookiecutter",
        "requirement with a second line",
        cookiecutter(lokki_sam_requirement="lokki-sam\nevil-package"),
        ("must be auto or one pip requirement line",),
        HookFailed,
    ),
    Case(
        "cookiecutter",
        "unknown starter",
        cookiecutter(starter="huge"),
        ("huge provided for choice variable starter", "birds", "wordcount", "minimal"),
        ValueError,  # cookiecutter itself refuses it, before any hook or file
    ),
    # --- Lambda events (lokki_sam.runtime.handle with the function's environment, moto S3)
    Case("lambda event", "event is a list", invoke([1, 2]), ("the event must be a JSON object, got list",), LokkiError),
    Case("lambda event", "node is a number", invoke({"node": 5, "run_id": RUN}), ("must name a node",), LokkiError),
    Case(
        "lambda event",
        "map input is a string",
        invoke(map_event("items.json"), "cat_double"),
        ("a map step's 'input' must be an item or a batch",),
        LokkiError,
    ),
    Case(
        "lambda event",
        "batch Items is an object",
        invoke(map_event({"Items": {"i": 0}}), "cat_double"),
        ("a batch needs a non-empty 'Items' list",),
        LokkiError,
    ),
    Case(
        "lambda event",
        "item without run_id",
        invoke(map_event({"i": 0, "c": 0}), "cat_double"),
        ("the event has no 'run_id'",),
        LokkiError,
    ),
    Case(
        "lambda event",
        "ill-typed parameter",
        invoke({"node": "cat_items", "run_id": RUN, "params": {"n": "many"}}),
        ("parameter 'n' expects int", "execution input of flow 'catalogue_flow'"),
        ParamError,
    ),
    Case(
        "lambda event",
        "run id of 200 characters",
        invoke({"node": "cat_items", "run_id": "r" * 200}),
        ("invalid run id",),
        StoreError,
    ),
    Case(
        "lambda event",
        "prefix is a number",
        invoke({"node": "cat_items", "run_id": RUN, "prefix": 7}),
        ("the event's prefix must be a string",),
        LokkiError,
    ),
    Case(
        "lambda event",
        "function prefix escapes the bucket prefix",
        invoke({"node": "cat_items", "run_id": RUN}, LOKKI_PREFIX="lokki/./catalogue_flow"),
        ("refusing store key",),
        StoreError,
    ),
    # --- store contents, local (a resume reads them)
    Case(
        "store",
        "truncated batch output",
        api(resume),
        ("artifact is corrupt or truncated", "cat_double"),
        StoreError,
        corrupt_map_output(lambda d: d[: len(d) // 2]),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "foreign pickle as the aggregation output",
        api(resume_foreign),
        ("not a lokki-sam artifact (missing header); refusing to unpickle it", "output.pkl"),
        StoreError,
        foreign_agg_output,
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "newer format version",
        api(resume),
        (f"artifact format version {FORMAT_VERSION + 1} is newer", "upgrade lokki-sam"),
        StoreError,
        corrupt_local("step=cat_sum/*/output.pkl", with_version(FORMAT_VERSION + 1)),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "format version 0",
        api(resume),
        ("unknown artifact format version 0",),
        StoreError,
        corrupt_map_output(with_version(0)),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "unknown codec",
        api(resume),
        ("unknown codec 9",),
        StoreError,
        corrupt_local("step=cat_sum/*/output.pkl", lambda d: d[: len(MAGIC) + 1] + b"\x09" + d[len(MAGIC) + 2 :]),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "manifest is not a list",
        api(resume),
        ("map manifest is not a JSON list", "manifest.json"),
        LokkiError,
        manifest_setup({"Bucket": "elsewhere", "Key": "x"}),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "manifest entry before its chunk",
        api(resume),
        ("is inconsistent",),
        LokkiError,
        manifest_setup([{"i": 0, "c": -2}]),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "manifest entry without its digest",
        api(resume),
        ("map manifest entry without its item's digest", "manifest.json"),
        StoreError,
        manifest_setup([{"i": 0, "c": 0}]),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "manifest entry naming a path",
        api(resume),
        ("malformed map item reference",),
        LokkiError,
        manifest_setup([{"i": "../../other/x", "c": 0}]),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "manifest pointing past its chunk",
        api(resume),
        ("map item 6 is not in its chunk",),
        LokkiError,
        manifest_setup([{"i": 6, "c": 0, "d": "0" * 32}]),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "manifest not JSON",
        api(resume),
        ("not valid JSON", "manifest.json"),
        StoreError,
        manifest_setup(None, raw="[{'i': 0"),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "run record of another flow",
        api(resume),
        ("belongs to flow 'birds', not 'catalogue_flow'",),
        LokkiError,
        edit_record(flow="birds"),
    ),
    Case(
        "store",
        "run record with ill-typed params",
        api(resume),
        ("run r1", "parameter 'n' expects int"),
        ParamError,
        edit_record(params={"n": "six"}),
    ),
    Case(
        "store",
        "run record not JSON",
        api(resume),
        ("run.json", "not valid JSON"),
        StoreError,
        corrupt_local("run.json", lambda d: b"{oops"),
    ),
    Case(
        "store",
        "batch output with fewer outputs than indexes",
        api(resume),
        ("not a map batch output", "cat_double/"),
        StoreError,
        corrupt_map_output(lambda d: sequence_bytes({"first": 0, "ids": "a" * 96}, [0])),
        ("runs/r1/run.json",),
    ),
    Case(
        "store",
        "batch output that is not a pair",
        api(resume),
        ("not a sequence artifact",),
        StoreError,
        corrupt_map_output(lambda d: serialization.dumps("hello")),
        ("runs/r1/run.json",),
    ),
    # --- store contents, S3 (the Lambda runtime reads them)
    Case(
        "store",
        "S3 items chunk is a foreign pickle",
        api(cloud_map_item),
        (
            "not a lokki-sam artifact",
            f"s3://{BUCKET}/{prefix(catalogue_flow)}/{RUN}/step=cat_items/",
            "items/00000000.pkl",
        ),
        StoreError,
        cloud_object(lambda e: Keys(catalogue_flow, RUN, e.store()).items_chunk(MAP, 0), trap_pickle),
    ),
    Case(
        "store",
        "S3 items chunk truncated to its header",
        api(cloud_map_item),
        ("artifact is corrupt or truncated",),
        StoreError,
        cloud_object(
            lambda e: Keys(catalogue_flow, RUN, e.store()).items_chunk(MAP, 0),
            lambda e: MAGIC + bytes((FORMAT_VERSION, 0)),
        ),
    ),
    Case(
        "store",
        "S3 items chunk missing",
        api(lambda e: runtime.handle(stamp(map_event(item(i=0, c=0))), lambda_env("cat_double"), e.s3)),
        ("step 'cat_items' has no output in run r1", f"s3://{BUCKET}/{prefix(catalogue_flow)}/{RUN}/step=cat_items/"),
        StoreError,
    ),
]


def test_catalogue_size() -> None:
    by_area = Counter(case.area for case in CASES)
    print(f"\nbad-input catalogue: {len(CASES)} cases: " + ", ".join(f"{a} {n}" for a, n in sorted(by_area.items())))
    assert len({(c.area, c.name) for c in CASES}) == len(CASES), "duplicate case names"
    assert len(CASES) >= 40


# --------------------------------------------------------------------------------- the test


def snapshot(e: Env) -> dict[str, bytes]:
    files = {
        p.relative_to(e.dir).as_posix(): p.read_bytes()
        for p in e.dir.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".cookiecutter_replay" not in p.parts
    }
    for obj in e.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        files[f"s3://{obj['Key']}"] = e.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return files


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedS3]:
    """One moto S3 for the whole table (starting moto per row costs more than all rows together)."""
    with shared_s3() as s3:
        yield s3


@pytest.fixture
def env(
    shared: SharedS3,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    unload_modules: None,
) -> Iterator[Env]:
    s3 = shared.fresh(BUCKET)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    runtime.reset_cache()
    yield Env(work, s3, capfd)
    runtime.reset_cache()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}: {c.name}" for c in CASES])
def test_bad_input(case: Case, env: Env) -> None:
    if case.setup is not None:
        case.setup(env)
    before = snapshot(env)

    outcome = case.act(env)

    if isinstance(case.expect, int):
        assert outcome.code == case.expect, outcome.text
        assert "Traceback" not in outcome.text, outcome.text
    else:
        assert outcome.error is not None and issubclass(outcome.error, case.expect), (outcome.error, outcome.text)
    for fragment in case.fragments:
        assert fragment in outcome.text, f"{fragment!r} not in:\n{outcome.text}"
    assert_unchanged(case, env, before, outcome.error.__name__ if outcome.error is not None else None)


JSON_CASES = [c for c in CASES if isinstance(c.act, CliAct) and c.act.takes_json]


@pytest.mark.parametrize("case", JSON_CASES, ids=[f"{c.area}: {c.name} --json" for c in JSON_CASES])
def test_bad_input_with_json_prints_one_error_document(case: Case, env: Env) -> None:
    """With --json, stdout holds JSON only, on errors too: one document whose `error` says what
    the human message says, with the same exit code."""
    assert isinstance(case.act, CliAct)
    if case.setup is not None:
        case.setup(env)
    before = snapshot(env)

    result = case.act.invoke((*case.act.args, "--json"))

    assert result.exit_code == case.expect, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["exit_code"] == case.expect and error["type"] and error["message"]
    where = f"{error['where']}: " if error["where"] else ""
    said = f"{where}{error['message']} {error['hint'] or ''}"  # as the human message renders them
    for fragment in case.fragments:
        assert fragment in said, f"{fragment!r} not in:\n{said}"
    assert "Traceback" not in result.stderr
    assert_unchanged(case, env, before, error["type"])


def assert_unchanged(case: Case, env: Env, before: dict[str, bytes], error: str | None = None) -> None:
    after = snapshot(env)
    lost = sorted(set(before) - set(after))
    written = sorted(set(after) - set(before))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k] and k not in case.may_change)
    # A refused map batch stores why (execution.record_failure, read back by invoke/result): not an output.
    records = [k for k in written if "/failures/" in k]
    for key in records:
        record = json.loads(after[key])
        assert error is not None and record["error"] == error, record
    written = [k for k in written if k not in records]
    assert not lost, f"lost {lost}"
    assert not written, f"wrote {written}"
    assert not changed, f"changed {changed}"
    for key in case.may_change:  # a refused resume marks its run failed, nothing more
        assert json.loads(after[key])["status"] == "failed"
