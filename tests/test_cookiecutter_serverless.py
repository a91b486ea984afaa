"""cookiecutter-lokki asks which framework: with `serverless`, a project for the Serverless Framework.

Rendered with the real cookiecutter CLI (its post-gen hook runs the real `lokki-sam generate`), the
project has serverless.yml (the scaffold's skeleton: service, region, stage; lokki-sam's entries
merged in), package.json, no SAM files; its own tests pass; `lokki-sam run` works; the framework
packages it as its README says (`osls package --stage local`, against a moto endpoint here), and
the cloud commands find the stack the README names.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from lokki_sam.compile.serverless import NPM_PINS
from tests.support.moto_server import moto_endpoint
from tests.support.serverless import OSLS, osls, osls_env, packaged
from tests.test_cookiecutter import LOKKI_SAM, TEMPLATE, cookiecutter, env_for, run

pytestmark = [pytest.mark.external, pytest.mark.cli]

ANSWERS = {"project_name": "bird-pipes", "framework": "serverless", "aws_region": "eu-west-1"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def project(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("projects")
    done = cookiecutter(home, out, str(TEMPLATE), **ANSWERS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lokki-sam generate` failed" not in done.stderr, done.stderr
    assert "npm install; npx osls deploy" in done.stdout  # the hook's next steps are the framework's
    return out / "bird-pipes"


def test_the_project_is_a_serverless_service(project: Path) -> None:
    files = {p.name for p in project.iterdir()}
    assert {"serverless.yml", "package.json", "lokki.toml", "README.md", "statemachine", "layers"} <= files
    assert not {"template.yaml", "samconfig.toml", "_frameworks", "_starters"} & files
    text = (project / "serverless.yml").read_text()
    # The scaffold's own keys and comment, with lokki-sam's entries merged in.
    assert text.startswith("# The Serverless Framework service of bird-pipes.")
    assert "service: bird-pipes\nprovider:\n  name: aws\n  region: eu-west-1\n  stage: ${opt:stage, 'dev'}\n" in text
    assert "  BirdsGetBirds:\n" in text and "${file(statemachine/birds.asl.json)}" in text
    assert json.loads((project / "package.json").read_text())["devDependencies"] == NPM_PINS
    assert 'target = "serverless"' in (project / "lokki.toml").read_text()
    assert ".serverless/" in (project / ".gitignore").read_text()


def test_the_readme_is_the_frameworks(project: Path) -> None:
    readme = (project / "README.md").read_text()
    for command in (
        "npm install",
        "npx osls deploy --stage local",
        "lokki-sam invoke --config-env local -p limit=2",
        "npx osls invoke stepf --name birds --data '{\"limit\": 2}'",
        "npx osls logs -f BirdsGetBirds",
        "npx osls invoke local -f BirdsGetBirds -p events/birds/get_birds.json --stage local",
    ):
        assert command in readme, command
    assert "sam build" not in readme and "samconfig" not in readme
    assert not re.search(r"\{\{|\{%", readme)  # fully rendered


def test_the_projects_own_tests_pass_and_run_works(project: Path, home: Path, tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project, env_for(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "skipped" not in done.stdout
    ran = run([LOKKI_SAM, "run", "-p", "limit=2", "--store", str(tmp_path / "runs")], project, env_for(home))
    assert (ran.returncode, ran.stdout) == (0, "flappy goose, flappy duck\n"), ran.stderr


def test_the_framework_packages_it_and_the_stack_is_found(project: Path, home: Path) -> None:
    if not OSLS.exists():
        pytest.fail("osls is not installed: run `npm ci` in the repository (package.json pins it)")
    with moto_endpoint() as endpoint:
        done = osls(project, "package", "--stage", "local", env=osls_env(home, endpoint))
    assert done.returncode == 0, done.stdout + done.stderr
    machine = packaged(project)["Resources"]["BirdsStateMachine"]["Properties"]
    assert machine["StateMachineName"] == "bird-pipes-local-birds"
    # `lokki-sam invoke --config-env local` (the README's) looks for the stack the framework made.
    found = run(
        [LOKKI_SAM, "runs", "--config-env", "local", "--endpoint-url", "http://127.0.0.1:9"], project, env_for(home)
    )
    assert found.returncode == 2 and "endpoint" in found.stderr, found.stderr
    from lokki_sam.cloud.stack import serverless_stack

    assert serverless_stack(project / "serverless.yml", "local") == ("bird-pipes-local", "eu-west-1")
    assert serverless_stack(project / "serverless.yml", None) == ("bird-pipes-dev", "eu-west-1")


def test_an_unknown_framework_stops_before_anything_is_written(home: Path, tmp_path: Path) -> None:
    done = cookiecutter(home, tmp_path, str(TEMPLATE), framework="terraform")
    assert done.returncode != 0  # cookiecutter itself refuses a value outside the choices
    assert "choice variable framework, but the choices are ['sam', 'serverless']" in done.stderr
    assert list(tmp_path.iterdir()) == []
