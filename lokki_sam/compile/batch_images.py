"""The container images of AWS Batch steps, and the tag that names what each one holds.

One image per set of step requirements and architecture (`ImageSet.batch`: a kind of its own, so
a Lambda image step and a Batch step with the same requirements never share a Dockerfile). It is
the Lambda base image with the step's requirements, the lokki-sam runtime copy and the flow code,
as an image step's is (`images.dockerfile`), run as the command `python3 -m lokki_sam.batch`.

The job definitions name the image `<repository>:<key>-<digest>`. The digest covers everything
the image is built from: lokki-sam's runtime (its version and files), the Python of the base
image, the requirements and architecture (the key), CodeUri's files as `docker build` receives
them, and a Dockerfile the user made theirs. So a changed file gives a new tag (a new job
definition revision, an image `lokki-sam push` has not pushed yet), an unchanged project the same
tag (nothing to push), and the repository's tags can be immutable, as AWS advises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from lokki_sam import __version__
from lokki_sam.compile.images import IMAGES_DIR, NEVER_SENT, ImageSet, owned
from lokki_sam.compile.layers import step_requirements
from lokki_sam.ir import FlowGraph

DIGEST_LENGTH = 16  # hex characters: 64 bits
# What `generate` (and the tools after it) write beside the code when CodeUri is the template's folder:
# not part of what the steps compute, and the template holds the tag itself (it must not hash itself).
GENERATED = (
    IMAGES_DIR,
    "statemachine",
    "events",
    "layers",
    ".dockerignore",
    ".serverless_plugins",
    ".serverless",
    "package.json",
    "package-lock.json",
    "samconfig.toml",
    "lokki.toml",
)


def image_sets(graphs: Sequence[FlowGraph], architecture: str) -> dict[tuple[str, str], ImageSet]:
    """(flow, step) -> the image of every Batch step (steps with the same set share one)."""
    found: dict[tuple[str, str], ImageSet] = {}
    for graph in graphs:
        for step in graph.steps:
            if step.options.on_batch:
                where = f"flow '{graph.name}', step '{step.name}'"
                arch = step.options.architecture or architecture
                found[(graph.name, step.name)] = ImageSet(step_requirements(step, where), arch, batch=True)
    return found


def tag(image: ImageSet, runtime: str, root: Path, code_uri: str, template: str) -> str:
    """`<key>-<digest>`: the image's key, and the digest of what it is built from (see above).
    `root` is the template's folder (the Docker context), `template` the template's file name."""
    from lokki_sam.packaging import runtime_files

    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)

    add("lokki-sam batch image 1", __version__, runtime, image.key, code_uri)
    for relative, source in runtime_files().items():
        add(relative, source.read_bytes())
    dockerfile = root / image.dockerfile
    text = dockerfile.read_text(encoding="utf-8") if dockerfile.is_file() else None
    if not owned(text):
        add("user's Dockerfile", text or "")
    code = (root / code_uri).resolve()
    skipped = {code / name for name in (*GENERATED, template)} if code == root.resolve() else set()
    for path in context_files(code, skipped):
        add(path.relative_to(code).as_posix(), path.read_bytes())
    return f"{image.key}-{digest.hexdigest()[:DIGEST_LENGTH]}"


def context_files(code: Path, skipped: set[Path]) -> Iterator[Path]:
    """CodeUri's files as `docker build` receives them (.dockerignore: images.dockerignore), in a
    stable order; `skipped`: paths left out as well."""
    if not code.is_dir():
        return
    for path in sorted(code.iterdir()):
        if path in skipped or path.name in NEVER_SENT or path.name == "__pycache__":
            continue
        if path.is_dir() and not path.is_symlink():
            yield from context_files(path, skipped)
        elif path.is_file() and path.suffix not in (".pyc", ".pyo"):
            yield path
