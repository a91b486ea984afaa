"""The local cloud's images (lokki_sam/emulator/localstack_batch/images.py): the project folder stands
in for a registry. Unit tests on a generated project: which Dockerfile a job definition's image
names, the task root a host process runs on (links to what the Dockerfile copies), the image's
Python, and the reason given when a lokki-sam image is not there. (The module imports only the
standard library: LocalStack's side of it runs in tests/test_batch_journey.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lokki_sam.emulator.localstack_batch import images
from tests.support.sam import REPO, forget_module, make_app

pytestmark = pytest.mark.usefixtures("unload_modules")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_app(tmp_path, [REPO / "tests" / "flows" / "batch_mixed.py"], architecture="x86_64")
    forget_module("batch_mixed")
    monkeypatch.setenv(images.PROJECT_ENV, str(tmp_path))
    return tmp_path


def image_of(project: Path) -> str:
    tag = re.search(r"/\$\{Repository\}:([0-9a-f]{10}-[0-9a-f]{16})\n", (project / "template.yaml").read_text())
    assert tag
    return f"000000000000.dkr.ecr.us-east-1.amazonaws.com/stack-batchimagerepository-1:{tag.group(1)}"


def test_a_job_definitions_image_is_the_projects_dockerfile(project: Path) -> None:
    found = images.find(image_of(project))
    assert found is not None
    key = image_of(project).rsplit(":", 1)[1].split("-")[0]
    assert found.dockerfile == project / "images" / key / "Dockerfile" and found.context == project
    assert found.python == "3.11" and found.runs == 0  # no requirements: no RUN line
    assert found.copies == (("images/lokki-sam/lokki_sam/", "lokki_sam/"), ("src/", ""))
    assert images.missing(image_of(project)) is None


def test_a_host_process_runs_the_flow_from_the_task_root(project: Path, tmp_path: Path) -> None:
    """The task root holds links to the runtime copy and the flow code (a COPY of a folder merges its
    entries, as Docker's does): Python imports both from it, and writes nothing into the project."""
    found = images.find(image_of(project))
    assert found is not None
    root = images.task_root(found, tmp_path / "task")
    runtime = project / "images" / "lokki-sam" / "lokki_sam"
    assert (root / "lokki_sam" / "runtime.py").resolve() == (runtime / "runtime.py").resolve()
    assert (root / "batch_mixed.py").resolve() == (project / "src" / "batch_mixed.py").resolve()
    command = images.host_command(["python3", "-m", "lokki_sam.batch"], found)
    assert command[1:] == ["-m", "lokki_sam.batch"]
    done = subprocess.run(
        [sys.executable, "-c", "import lokki_sam, batch_mixed; print(lokki_sam.__file__, batch_mixed.__file__)"],
        cwd=root, env={"PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.split() == [
        str(root / "lokki_sam" / "__init__.py"),
        str(root / "batch_mixed.py"),
    ], done.stderr
    assert not list((project / "images").rglob("__pycache__"))  # nothing written into the project


def test_the_images_python_is_its_from_tags(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = images.find(image_of(project))
    assert found is not None
    monkeypatch.setenv(images.PYTHONS_ENV, json.dumps({"python3.11": "/opt/py/bin/python3.11"}))
    assert images.host_command(["python3", "-m", "lokki_sam.batch"], found)[0] == "/opt/py/bin/python3.11"
    assert images.host_command(["/bin/sh", "-c", "true"], found) == ["/bin/sh", "-c", "true"]  # not Python


def test_a_lokki_sam_image_the_project_lacks_is_a_clear_pull_error(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv(images.PROJECT_ENV, str(elsewhere))
    image = image_of(project)
    assert images.find(image) is None
    reason = images.missing(image)
    assert reason is not None and reason.startswith("CannotPullContainerError: lokki-sam local cloud: no images/")
    assert str(elsewhere) in reason and "start it in the project's folder" in reason
    assert images.missing("python:3.11-slim") is None  # not lokki-sam's: runs as before
