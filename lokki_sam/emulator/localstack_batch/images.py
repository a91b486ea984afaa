"""The local cloud's images: the project it serves stands in for a registry.

A job definition names its image as AWS does (`<account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>`),
and nothing was pushed to this machine: `lokki-sam push` pushes to ECR, and the local cloud has no
registry. It takes the image from the project `lokki-sam emulator start` ran in
(`LOKKI_EMULATOR_PROJECT`), where `lokki-sam generate` wrote it: the tag `<key>-<digest>` names its
Dockerfile, `images/<key>/Dockerfile`, whose context is the project folder (compile/batch_images.py).

- With a Docker daemon, the image is built there once under the job definition's name (`docker build
  --network host`, as it would be built for ECR), and the job runs in it as a container.
- Without, the job runs as a host process on the image's files in place: a task root assembled from
  the Dockerfile's `COPY ... ${LAMBDA_TASK_ROOT}/...` lines (links to the project's files), the
  image's Python (`python3.X` of its `FROM` tag, where this machine has it). Its `RUN` lines are not
  run: what they would install must be importable by that Python.

A changed project is still the image of the tag it had: the job's stamp check (the flow's
fingerprint) refuses code that is not the deployed flow's, as it would on AWS.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ENV = "LOKKI_EMULATOR_PROJECT"  # the folder `lokki-sam emulator start` ran in
PYTHONS_ENV = "LOKKI_EMULATOR_PYTHONS"  # python3.X -> an interpreter of this machine (plugin.py)
TASK_ROOT = "${LAMBDA_TASK_ROOT}"
IMAGES_DIR = "images"
BUILD_TIMEOUT = 1800


@dataclass(frozen=True)
class ProjectImage:
    """The Dockerfile a job's image tag names, in the project folder."""

    dockerfile: Path
    context: Path
    python: str | None  # "3.11": the Python of its FROM image
    copies: tuple[tuple[str, str], ...] = field(default=())  # (source in the context, path under the task root)
    runs: int = 0  # RUN lines (not run for a host process)


TAG = re.compile(r"^(?P<key>[0-9a-f]{10})-[0-9a-f]{16}$")  # compile/batch_images.py's tags


def find(image: str) -> ProjectImage | None:
    """The project's image of `image` (a name with a `<key>-<digest>` tag), or None."""
    key, project = _key(image), os.environ.get(PROJECT_ENV, "").strip()
    dockerfile = Path(project) / IMAGES_DIR / key / "Dockerfile" if key and project else None
    if dockerfile is None or not dockerfile.is_file():
        return None
    return parse(dockerfile, Path(project))


def missing(image: str) -> str | None:
    """Why a lokki-sam image cannot be found here (what AWS would report as CannotPullContainerError),
    or None: the image is the project's, or not lokki-sam's."""
    key = _key(image)
    if key is None or find(image) is not None:
        return None
    project = os.environ.get(PROJECT_ENV, "").strip() or "(none)"
    return (
        f"CannotPullContainerError: lokki-sam local cloud: no {IMAGES_DIR}/{key}/Dockerfile in {project}, the "
        "folder `lokki-sam emulator start` ran in: start it in the project's folder (or set "
        f"{PROJECT_ENV}), after `lokki-sam generate`"
    )


def _key(image: str) -> str | None:
    name = image.rsplit("/", 1)[-1]
    found = TAG.match(name.rsplit(":", 1)[1]) if ":" in name else None
    return found["key"] if found else None


def parse(dockerfile: Path, context: Path) -> ProjectImage:
    python, copies, runs = None, [], 0
    for line in _instructions(dockerfile.read_text(encoding="utf-8")):
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            found = re.search(r":(3\.\d+)", rest)
            python = found.group(1) if found else None
        elif word == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            if len(parts) == 2 and parts[1].startswith(TASK_ROOT):
                copies.append((parts[0], parts[1][len(TASK_ROOT) :].lstrip("/")))
        elif word == "RUN":
            runs += 1
    return ProjectImage(dockerfile, context, python, tuple(copies), runs)


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, one per line (continuations joined, comments dropped)."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    return out


def task_root(image: ProjectImage, root: Path) -> Path:
    """The image's task root at `root`: each COPY into it as links to the project's files (later
    COPY lines win, as later layers do)."""
    root.mkdir(parents=True, exist_ok=True)
    for source, target in image.copies:
        src = (image.context / source).resolve()
        if not src.is_relative_to(image.context.resolve()) or not src.exists():
            continue  # outside the context, or absent: docker build would refuse it too
        destination = root / target
        if src.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            for child in src.iterdir():
                if child.name != "__pycache__":
                    _link(child, destination / child.name)
        elif not target or target.endswith("/"):
            _link(src, destination / src.name)
        else:
            _link(src, destination)
    return root


def _link(source: Path, link: Path) -> None:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(source)


def host_command(command: list[str], image: ProjectImage) -> list[str]:
    """The job's command with `python3` as the image's Python (`python3.X` of this machine), if found."""
    if not command or command[0] not in ("python3", "python") or image.python is None:
        return command
    pythons = json.loads(os.environ.get(PYTHONS_ENV, "{}") or "{}")
    found = pythons.get(f"python{image.python}") or shutil.which(f"python{image.python}")
    return [str(found), *command[1:]] if found else command


def build(image: ProjectImage, name: str) -> tuple[bool, str]:
    """`docker build` of the project's image under `name`; (built, docker's output)."""
    args = ["docker", "build", "--network", "host", "-t", name, "-f", str(image.dockerfile), str(image.context)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stdout + done.stderr)[-4000:]
