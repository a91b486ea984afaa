"""cookiecutter-lokki: render the template with every choice, then use each project as its user would.

Each project is rendered once (module fixture) with the real cookiecutter CLI, and its post-gen
hook runs the real `lokki-sam generate`. In each: its own tests pass, `lokki-sam run` prints
the expected result, `generate --check` passes, `sam validate --lint` passes, and its code is
ruff-clean. `sam init --location` renders another project, which `sam build` packages (once).
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import __version__
from lokki_sam.config import load_config
from tests.conftest import lokki_env

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "cookiecutter-lokki"
BIN = Path(sys.executable).parent
LOKKI_SAM = str(BIN / "lokki-sam")
SAM = str(BIN / "sam")
RUFF = [sys.executable, "-m", "ruff"]


@dataclass(frozen=True)
class Variant:
    """Answers given to cookiecutter, and what the project must look like and do."""

    answers: dict[str, str]
    folder: str
    slug: str
    flow: str
    starter: str
    runtime: str
    architecture: str
    region: str
    stack: str
    requirement: str
    run_args: tuple[str, ...]
    result: Any


WORDS_TOP3 = [["water", 6], ["bread", 4], ["every", 3]]
# The answer `auto`: the project pins the lokki-sam that rendered it (an editable checkout here: a wheel of it).
PINNED = f"./wheels/lokki_sam-{__version__}-py3-none-any.whl"
# The pre-prompt hook's defaults: the Python running cookiecutter and this machine's architecture.
HERE_RUNTIME = f"python3.{sys.version_info.minor}"
HERE_ARCH = "arm64" if platform.machine().lower() in ("arm64", "aarch64") else "x86_64"
# Together the variants use every choice of every answer that has choices.
VARIANTS = {
    "defaults": Variant(
        {},
        "my-lokki-flow",
        "my_lokki_flow",
        "birds",
        "birds",
        HERE_RUNTIME,
        HERE_ARCH,
        "us-east-1",
        "my-lokki-flow",
        PINNED,
        ("-p", "limit=2"),
        "flappy goose, flappy duck",
    ),
    "wordcount": Variant(
        {
            "project_name": "Word Stats",
            "starter": "wordcount",
            "flow_name": "words",
            "runtime": "python3.13",
            "architecture": "x86_64",
            "aws_region": "eu-west-2",
            "stack_name": "word-stats-dev",
            "lokki_sam_requirement": "lokki-sam>=0.1,<2",
        },
        "Word Stats",
        "word_stats",
        "words",
        "wordcount",
        "python3.13",
        "x86_64",
        "eu-west-2",
        "word-stats-dev",
        "lokki-sam>=0.1,<2",
        ("-p", "top=3"),
        WORDS_TOP3,
    ),
    "minimal": Variant(
        {"project_name": "tiny.flows", "starter": "minimal", "runtime": "python3.11", "architecture": "arm64"},
        "tiny.flows",
        "tiny_flows",
        "pipeline",
        "minimal",
        "python3.11",
        "arm64",
        "us-east-1",
        "tiny-flows",
        PINNED,
        ("-p", "name=Ada"),
        "HELLO ADA!",
    ),
}
FIRST_STEP = {"birds": "get_birds", "wordcount": "list_documents", "minimal": "greet"}


def env_for(home: Path, **extra: str) -> dict[str, str]:
    """A private HOME (cookiecutter's replay dir, SAM's ~/.aws-sam), dummy AWS settings, no pytest
    variables leaking into nested pytest runs."""
    env = {k: v for k, v in lokki_env(home, **extra).items() if not k.startswith("PYTEST_")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def cookiecutter(home: Path, out: Path, *args: str, **answers: str) -> subprocess.CompletedProcess[str]:
    pairs = [f"{k}={v}" for k, v in answers.items()]
    command = [sys.executable, "-m", "cookiecutter", *args, "--no-input", "-o", str(out), *pairs]
    return run(command, cwd=home, env=env_for(home))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def projects(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("projects")
    rendered = {}
    for name, variant in VARIANTS.items():
        # The defaults go through the `cookiecutter <repo> --directory cookiecutter-lokki` form.
        args = [str(REPO), "--directory", "cookiecutter-lokki"] if name == "defaults" else [str(TEMPLATE)]
        done = cookiecutter(home, out / name, *args, **variant.answers)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "lokki-sam generate` failed" not in done.stderr, done.stderr
        rendered[name] = out / name / variant.folder
    return rendered


def project_files(root: Path) -> set[str]:
    skip = {".lokki", ".pytest_cache", "__pycache__", ".ruff_cache", ".aws-sam"}
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not skip.intersection(p.relative_to(root).parts)
    }


@pytest.mark.parametrize("name", VARIANTS)
def test_the_project_has_the_chosen_starter_and_generated_sam_files(name: str, projects: dict[str, Path]) -> None:
    v, root = VARIANTS[name], projects[name]
    files = project_files(root)
    expected = {
        ".gitignore",
        "README.md",
        "lokki.toml",
        "samconfig.toml",
        "pyproject.toml",
        "requirements-dev.txt",
        "src/requirements.txt",
        f"src/{v.slug}/__init__.py",
        f"src/{v.slug}/flow.py",
        "tests/test_flow.py",
        "tests/test_template.py",
        "template.yaml",
        f"statemachine/{v.flow}.asl.json",
        f"events/{v.flow}/{FIRST_STEP[v.starter]}.json",
    }
    assert expected <= files
    assert not any(f.startswith("_starters") for f in files)
    data = {f for f in files if f.startswith(f"src/{v.slug}/data/")}
    assert bool(data) == (v.starter == "wordcount")
    readme = (root / "README.md").read_text()
    assert f"lokki-sam run {' '.join(v.run_args)}" in readme
    assert "sam deploy --guided" in readme and "lokki-sam invoke" in readme
    assert "{{" not in readme and "{%" not in readme
    # The README's `sam local invoke` names a function of the template, an event and env.json that exist.
    invoke = re.search(r"sam local invoke (\w+) -e (\S+) --env-vars (\S+?)`", readme)
    assert invoke, readme
    assert f"\n  {invoke[1]}:\n    Type: AWS::Serverless::Function" in (root / "template.yaml").read_text()
    assert (root / invoke[2]).is_file() and (root / invoke[3]).is_file()
    assert invoke[1] in json.loads((root / invoke[3]).read_text())


@pytest.mark.parametrize("name", VARIANTS)
def test_settings_carry_the_answers(name: str, projects: dict[str, Path]) -> None:
    v, root = VARIANTS[name], projects[name]
    config = load_config(root, environ={})
    assert (config["flow"], config["code_uri"]) == (f"src/{v.slug}/flow.py", "src")
    assert (config["runtime"], config["architecture"]) == (v.runtime, v.architecture)

    samconfig = tomllib.loads((root / "samconfig.toml").read_text())
    deploy = samconfig["default"]["deploy"]["parameters"]
    assert samconfig["default"]["global"]["parameters"] == {"stack_name": v.stack, "region": v.region}
    assert deploy["stack_name"] == v.stack and deploy["region"] == v.region
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True and deploy["confirm_changeset"] is True
    local = samconfig["local"]["deploy"]["parameters"]
    assert local["confirm_changeset"] is False and local["resolve_s3"] is True
    assert samconfig["default"]["validate"]["parameters"] == {"lint": True}

    # The functions' requirements list only the flow's own (none in a starter): lokki-sam is a layer.
    requirements = (root / "src" / "requirements.txt").read_text().splitlines()
    assert [line for line in requirements if line and not line.startswith("#")] == []
    dev = (root / "requirements-dev.txt").read_text().splitlines()
    assert v.requirement in dev and "-r src/requirements.txt" in dev
    assert (root / v.requirement).is_file() == (v.requirement == PINNED)  # the pinned wheel is in the project

    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((root / "template.yaml").read_text())
    function = template["Globals"]["Function"]
    assert (function["Runtime"], function["CodeUri"]) == (v.runtime, "src")
    functions = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert functions
    for props in functions:
        assert props["Architectures"] == [v.architecture]
        assert props["Environment"]["Variables"]["LOKKI_MODULE"] == f"{v.slug}.flow"


@pytest.mark.parametrize("name", VARIANTS)
def test_the_projects_own_tests_pass(name: str, projects: dict[str, Path], home: Path) -> None:
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], projects[name], env_for(home))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary


@pytest.mark.parametrize("name", VARIANTS)
def test_lokki_sam_run_uses_lokki_toml(name: str, projects: dict[str, Path], home: Path, tmp_path: Path) -> None:
    v = VARIANTS[name]
    args = [LOKKI_SAM, "run", *v.run_args, "--json", "--store", str(tmp_path / "runs")]
    done = run(args, projects[name], env_for(home))
    assert done.returncode == 0, done.stdout + done.stderr
    payload = json.loads(done.stdout)
    assert payload["flow"] == v.flow
    assert payload["result"] == v.result


@pytest.mark.parametrize("name", VARIANTS)
def test_generated_files_are_fresh(name: str, projects: dict[str, Path], home: Path) -> None:
    done = run([LOKKI_SAM, "generate", "--check"], projects[name], env_for(home))
    assert done.returncode == 0, done.stdout + done.stderr


def test_generate_check_fails_when_the_flow_changes(projects: dict[str, Path], home: Path, tmp_path: Path) -> None:
    v = VARIANTS["defaults"]
    root = shutil.copytree(projects["defaults"], tmp_path / "copy")
    flow_py = root / "src" / v.slug / "flow.py"
    flow_py.write_text(flow_py.read_text().replace(".map(flap).agg(join)", ".map(flap)"))
    # The project's own freshness test runs `lokki-sam generate --check`, which exits 1.
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "template"], root, env_for(home))
    assert done.returncode == 1 and "run `lokki-sam generate`" in done.stdout, done.stdout


@pytest.mark.parametrize("name", VARIANTS)
def test_sam_validate_lint_passes(name: str, projects: dict[str, Path], home: Path) -> None:
    done = run([SAM, "validate", "--lint"], projects[name], env_for(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


@pytest.mark.parametrize("name", VARIANTS)
def test_generated_code_is_ruff_clean(name: str, projects: dict[str, Path]) -> None:
    for args in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        done = subprocess.run([*RUFF, *args], cwd=projects[name], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", VARIANTS)
def test_the_hook_knows_every_top_level_name_of_the_starter(name: str, projects: dict[str, Path]) -> None:
    """A flow named like a starter's step would silently replace it: the pre-gen hook refuses
    such names, so its list must cover what each starter defines and imports."""
    v = VARIANTS[name]
    known = set(hook_constant("STARTER_NAMES")[v.starter]) | set(hook_constant("IMPORTED"))
    module = ast.parse((projects[name] / "src" / v.slug / "flow.py").read_text())
    defined = set()
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    assert defined - {v.flow} <= known


def hook_constant(name: str) -> Any:
    hook = ast.parse((TEMPLATE / "hooks" / "pre_gen_project.py").read_text())
    for node in hook.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in the pre-gen hook")


def test_the_hook_offers_only_runtimes_the_generator_supports() -> None:
    from lokki_sam.compile.sam import LAMBDA_PYTHONS

    runtimes = hook_constant("RUNTIMES")
    assert set(runtimes) <= set(LAMBDA_PYTHONS)
    assert all(int(r.removeprefix("python3.")) >= 11 for r in runtimes)  # lokki-sam's requires-python
    assert json.loads((TEMPLATE / "cookiecutter.json").read_text())["runtime"] in runtimes


# ------------------------------------------- a new user: pip install lokki-sam, sam init, sam build, deploy

CLI_PACKAGES = ("click", "rich", "ruamel", "yaml")


@dataclass(frozen=True)
class BuiltApp:
    root: Path
    venv: Path  # a fresh venv holding only the lokki-sam wheel, installed without extras
    init: subprocess.CompletedProcess[str]
    build: subprocess.CompletedProcess[str]

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """The new user's shell: their venv's lokki-sam first on PATH, the SAM CLI after it."""
        env = env_for(home, **extra)
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), str(BIN), "/usr/local/bin", "/usr/bin", "/bin"])
        return env


@pytest.fixture(scope="module")
def sam_app(home: Path, tmp_path_factory: pytest.TempPathFactory) -> BuiltApp:
    """As a new user: `pip install lokki-sam` (a wheel of this checkout, into a fresh venv, no
    extras), `sam init --location` with the wordcount starter, then `sam build` with no package
    index at all (PIP_NO_INDEX=1, no PIP_FIND_LINKS): lokki-sam reaches the functions as its layer."""
    from tests.support.lokki_wheel import build_wheel

    tmp = tmp_path_factory.mktemp("sam-init")
    wheels = build_wheel(tmp / "wheel")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    (wheel,) = wheels.glob("lokki_sam-*.whl")
    install = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], tmp, env_for(home))
    assert install.returncode == 0, install.stdout + install.stderr
    app = BuiltApp(tmp / "out" / "sam-made", venv, None, None)  # type: ignore[arg-type]
    context = json.dumps({"starter": "wordcount", "runtime": HERE_RUNTIME})
    args = [SAM, "init", "--location", str(TEMPLATE), "--no-input", "--name", "sam-made", "--extra-context", context]
    init = run([*args, "-o", str(tmp / "out")], tmp, app.env(home))
    assert init.returncode == 0, init.stdout + init.stderr
    build = run([SAM, "build"], app.root, app.env(home, PIP_NO_INDEX="1"))
    assert build.returncode == 0, build.stdout + build.stderr
    return BuiltApp(app.root, venv, init, build)


def test_the_plain_install_has_a_working_command_line(sam_app: BuiltApp, home: Path) -> None:
    from lokki_sam import __version__

    lokki_sam = str(sam_app.venv / "bin" / "lokki-sam")
    helped = run([lokki_sam, "--help"], sam_app.root, sam_app.env(home))
    assert helped.returncode == 0 and "generate" in helped.stdout and "invoke" in helped.stdout, helped.stderr
    version = run([lokki_sam, "--version"], sam_app.root, sam_app.env(home))
    assert version.returncode == 0 and version.stdout.strip() == f"lokki-sam, version {__version__}"


def test_sam_init_location_renders_the_project(sam_app: BuiltApp) -> None:
    """SAM keeps our samconfig.toml (it writes its own unless the folder, named after --name, has one)."""
    root = sam_app.root
    assert [p.name for p in root.parent.iterdir()] == ["sam-made"]  # no stray folder from SAM
    samconfig = tomllib.loads((root / "samconfig.toml").read_text())
    assert samconfig["local"]["deploy"]["parameters"]["stack_name"] == "sam-made"
    assert (root / "template.yaml").is_file() and (root / "src" / "sam_made" / "data" / "bread.txt").is_file()
    assert (root / "layers" / "lokki-sam" / "Makefile").is_file()


def test_sam_init_project_passes_its_tests_and_sam_validate(sam_app: BuiltApp, home: Path) -> None:
    # Its tests include tests/test_template.py, i.e. `lokki-sam generate --check`.
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], sam_app.root, env_for(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout.strip().splitlines()[-1], done.stdout
    done = run([SAM, "validate", "--lint"], sam_app.root, env_for(home))
    assert done.returncode == 0, done.stdout + done.stderr


def test_sam_build_packages_the_code_once_and_lokki_sam_only_as_its_layer(
    sam_app: BuiltApp, home: Path, tmp_path: Path
) -> None:
    from lokki_sam import __version__

    output = sam_app.build.stdout + sam_app.build.stderr
    assert "Build Succeeded" in output
    # Five functions share one CodeUri and runtime: SAM builds that code once.
    assert output.count("Building codeuri:") == 1, output
    build = sam_app.root / ".aws-sam" / "build"
    functions = sorted(p for p in build.iterdir() if p.is_dir() and p.name.endswith("Function"))
    assert [p.name for p in functions] == sorted(
        f"Wordcount{step}Function" for step in ("ListDocuments", "Tokenize", "Count", "Merge", "TopWords")
    )
    layer = build / "LokkiSamRuntimeLayer" / "python"
    assert f'__version__ = "{__version__}"' in (layer / "lokki_sam" / "__init__.py").read_text()
    for folder in [*functions, layer]:
        present = {p.name.split("-")[0].split(".")[0].lower() for p in folder.iterdir()}
        assert not present & set(CLI_PACKAGES), (folder, present)  # no CLI dependency in a function
    for function in functions:
        assert not (function / "lokki_sam").exists()
        assert (function / "sam_made" / "flow.py").is_file()
        assert (function / "sam_made" / "data" / "rivers.txt").is_file()

    # Code + layer alone run the flow: no site-packages (-S), so nothing comes from a venv.
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "from lokki_sam.testing import run_flow_in_process\n"
        "from sam_made.flow import wordcount\n"
        "print(run_flow_in_process(wordcount, top=3).result)\n"
    )
    done = run([sys.executable, "-S", "-c", code, str(functions[0]), str(layer)], tmp_path, env_for(home))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([tuple(w) for w in WORDS_TOP3])


def test_the_project_deploys_to_the_local_cloud_and_its_flow_runs(sam_app: BuiltApp, home: Path) -> None:
    """The README's local-cloud journey with the new user's lokki-sam: `lokki-sam emulator start`
    (LocalStack, the default), `sam deploy --config-env local`, `lokki-sam invoke --config-env local`
    prints what `lokki-sam run` prints, `lokki-sam emulator stop`."""
    from lokki_sam.emulator.process import free_port
    from tests.support.emulator import exported

    root = sam_app.root
    lokki_sam = str(sam_app.venv / "bin" / "lokki-sam")
    local = run([lokki_sam, "run", "-p", "top=3", "--json", "-q"], root, sam_app.env(home))
    assert local.returncode == 0, local.stderr
    started = run([lokki_sam, "emulator", "start", "--port", str(free_port())], root, sam_app.env(home), timeout=900)
    assert started.returncode == 0, started.stderr
    assert "localstack 4.14.0 ready on http://127.0.0.1:" in started.stderr
    try:
        env = sam_app.env(home, SAM_CLI_POLL_DELAY="0.5", **exported(started.stdout))
        deploy = run([SAM, "deploy", "--config-env", "local"], root, env, timeout=600)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        invoke = run([lokki_sam, "invoke", "--config-env", "local", "-p", "top=3"], root, env)
        assert invoke.returncode == 0, invoke.stdout + invoke.stderr
    finally:
        stopped = run([lokki_sam, "emulator", "stop"], root, sam_app.env(home))
        assert stopped.returncode == 0, stopped.stderr
    printed = run([lokki_sam, "run", "-p", "top=3", "-q"], root, sam_app.env(home))
    assert invoke.stdout == printed.stdout  # invoke prints exactly what run prints
    assert json.loads(local.stdout)["result"] == WORDS_TOP3


# ------------------------------------------------------------------ bad answers, missing lokki-sam

BAD_ANSWERS = [
    ({"project_slug": "class"}, "project_slug 'class' is a Python keyword"),
    ({"project_slug": "2fast"}, "project_slug '2fast' is not a Python identifier"),
    ({"project_slug": "json"}, "would shadow the module 'json'"),
    ({"project_name": "-x"}, "project_name '-x' must be a folder name"),
    ({"flow_name": "join"}, "flow_name 'join' clashes with a name the flow module uses"),
    ({"flow_name": "list"}, "flow_name 'list' clashes"),
    ({"flow_name": "my-flow"}, "flow_name 'my-flow' is not a Python identifier"),
    ({"runtime": "python3.9"}, "runtime 'python3.9' is not supported; use one of python3.11, python3.12, python3.13"),
    ({"architecture": "arm"}, "architecture 'arm' is not one of arm64, x86_64"),
    ({"aws_region": "mars-1"}, "aws_region 'mars-1' is not an AWS region name"),
    ({"stack_name": "9lives"}, "stack_name '9lives' is not a CloudFormation stack name"),
    ({"lokki_sam_requirement": "requests"}, "lokki_sam_requirement 'requests' must be auto or one pip requirement"),
    # Answers are full-matched: a trailing newline (`$` matches before it) is not part of a valid answer,
    ({"project_slug": "my_flow\n"}, "project_slug 'my_flow\\n' is not a Python identifier"),
    ({"aws_region": "us-east-1\n"}, "aws_region 'us-east-1\\n' is not an AWS region name"),
    # and a control character would split one requirement into several pip options.
    ({"lokki_sam_requirement": "lokki-sam\f--index-url=http://x"}, "must be auto or one pip requirement line"),
]


@pytest.mark.parametrize(
    ("answers", "message"), BAD_ANSWERS, ids=[next(iter(a)) + "=" + v for a, _ in BAD_ANSWERS for v in a.values()]
)
def test_bad_answers_stop_before_anything_is_written(
    answers: dict[str, str], message: str, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = cookiecutter(home, out, str(TEMPLATE), **answers)
    assert done.returncode != 0
    assert "error: cannot create the project:" in done.stderr
    assert message in done.stderr, done.stderr
    assert "hint:" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir())


def test_every_problem_is_reported_at_once(home: Path, tmp_path: Path) -> None:
    done = cookiecutter(home, tmp_path / "out", str(TEMPLATE), project_slug="def", runtime="python2.7", aws_region="x")
    assert done.returncode != 0
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3, done.stderr


def test_without_lokki_sam_the_project_is_created_with_instructions(home: Path, tmp_path: Path) -> None:
    """Cookiecutter runs hooks with its own interpreter: one without site-packages (-S) stands
    for a cookiecutter or SAM CLI installed apart from lokki-sam; PATH has no lokki-sam either."""
    bare = tmp_path / "bin" / "python-bare"
    bare.parent.mkdir()
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    bare.chmod(0o755)
    launch = "import sys; sys.executable = sys.argv.pop(1); from cookiecutter.__main__ import main; main()"
    env = env_for(home)
    env["PATH"] = "/usr/bin:/bin"
    out = tmp_path / "out"
    command = [sys.executable, "-c", launch, str(bare), str(TEMPLATE), "--no-input", "-o", str(out)]
    done = run(command, tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lokki-sam is not installed here" in done.stderr
    assert "pip install lokki-sam" in done.stderr and "lokki-sam generate" in done.stderr
    root = out / "my-lokki-flow"
    assert (root / "src" / "my_lokki_flow" / "flow.py").is_file()
    assert not (root / "template.yaml").exists() and not (root / "_starters").exists()


# ------------------------------------------------------------------------ lokki-sam init and the pin


def fresh_shell(home: Path) -> dict[str, str]:
    """A new user's shell: no venv active, so what runs comes from the project's own .venv."""
    env = {k: v for k, v in lokki_env(home).items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != BIN)
    return env


def readme_block(readme: str, section: str) -> str:
    """The first ```bash block under `## <section>` of a README."""
    found = re.search(rf"^## {re.escape(section)}\n.*?```bash\n(.*?)```", readme, flags=re.M | re.S)
    assert found, f"no bash block under '## {section}'"
    return found.group(1).strip()


def test_lokki_sam_init_pins_itself_and_the_readme_set_up_works_as_written(home: Path, tmp_path: Path) -> None:
    """`lokki-sam init`, then the project's README set-up line by line in a fresh shell: the
    requirements name this very lokki-sam (a wheel of it in the project), so `pip install -r
    requirements-dev.txt` finds it, and the project's own run and tests pass with what it installed."""
    answers = ["project_name=first-ten", "starter=minimal", f"runtime={HERE_RUNTIME}"]
    made = run([LOKKI_SAM, "init", "--no-input", "-o", str(tmp_path), *answers], tmp_path, env_for(home))
    assert made.returncode == 0, made.stdout + made.stderr
    root = Path(made.stdout.strip().splitlines()[-1])
    assert root == tmp_path / "first-ten"
    assert f"lokki-sam pinned in requirements-dev.txt: {PINNED}" in made.stderr
    assert (root / PINNED).is_file() and (root / "template.yaml").is_file()
    setup = readme_block((root / "README.md").read_text(), "Set up")
    script = (
        f"set -e\n{setup}\nlokki-sam --version\nlokki-sam run -p name=Ada -q\npython -m pytest -q -p no:cacheprovider\n"
    )
    done = run(["bash", "-c", script], root, fresh_shell(home), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert f"lokki-sam, version {__version__}" in lines and "HELLO ADA!" in lines
    assert "passed" in lines[-1] and "failed" not in lines[-1]
    assert (root / ".venv" / "bin" / "lokki-sam").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["colour=red"], "unknown answer(s): colour"),
        (["oops"], "answer 'oops' is not NAME=VALUE"),
        (["--lokki-sam", "nonsense"], "--lokki-sam 'nonsense' is not a source lokki-sam can be pinned to"),
        (["--lokki-sam", "index", "lokki_sam_requirement=lokki-sam"], "--lokki-sam and lokki_sam_requirement= both"),
        (["project_slug=class"], "the template refused the answers"),
    ],
)
def test_lokki_sam_init_refuses_bad_input_and_writes_nothing(
    args: list[str], message: str, home: Path, tmp_path: Path
) -> None:
    done = run([LOKKI_SAM, "init", "--no-input", "-o", str(tmp_path / "out"), *args], tmp_path, env_for(home))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_lokki_sam_init_refuses_an_existing_project_folder(home: Path, tmp_path: Path) -> None:
    (tmp_path / "my-lokki-flow").mkdir()
    done = run([LOKKI_SAM, "init", "--no-input", "-o", str(tmp_path)], tmp_path, env_for(home))
    assert done.returncode == 2 and "my-lokki-flow" in done.stderr and "Traceback" not in done.stderr
    assert not any((tmp_path / "my-lokki-flow").iterdir())
