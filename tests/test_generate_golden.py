"""Golden files: the generated template and events of every example, byte for byte.

After an intended change, refresh them with `UPDATE_GOLDEN=1 pytest tests/test_generate_golden.py`
and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.sam import EXAMPLES, forget_module, make_app, restored_sys_path

GOLDEN = Path(__file__).parent / "golden"
EXAMPLES_BY_NAME = {p.stem: p for p in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_matches_golden(tmp_path: Path, example: Path) -> None:
    # Pin the runtime: the default follows the Python running the generator.
    make_app(tmp_path, [example], runtime="python3.11")
    forget_module(example.stem)
    generated = {
        p.relative_to(tmp_path).as_posix(): p.read_text()
        for p in sorted([tmp_path / "template.yaml", *(tmp_path / "events").rglob("*.json")])
    }
    folder = GOLDEN / example.stem
    if os.environ.get("UPDATE_GOLDEN"):
        for name, text in generated.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    expected = {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}
    assert sorted(generated) == sorted(expected)
    for name, text in generated.items():
        assert text == expected[name], f"{name} differs from tests/golden/{example.stem}/{name}"


def test_image_packaged_example_matches_golden(tmp_path: Path) -> None:
    """birds with every step a container image (config package = "image"): the template, the one
    Dockerfile its three steps share, the .dockerignore; the runtime copy equals the installed runtime."""
    from lokki_sam.packaging import runtime_files

    make_app(tmp_path, [EXAMPLES_BY_NAME["birds"]], runtime="python3.11", package="image", architecture="x86_64")
    forget_module("birds")
    runtime_dir = tmp_path / "images" / "lokki-sam"
    copied = {p.relative_to(runtime_dir).as_posix(): p.read_text() for p in runtime_dir.rglob("*.py")}
    assert copied == {name: path.read_text() for name, path in runtime_files().items()}
    files = [tmp_path / "template.yaml", tmp_path / ".dockerignore", runtime_dir / "README.md"]
    files += sorted((tmp_path / "images").glob("*/Dockerfile"))
    generated = {p.relative_to(tmp_path).as_posix(): p.read_text() for p in files}
    folder = GOLDEN / "birds-image"
    if os.environ.get("UPDATE_GOLDEN"):
        for name, text in generated.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    expected = {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}
    assert generated == expected


def test_repository_example_app_is_fresh() -> None:
    """The repo ships the example app (template.yaml, statemachine/, events/ at the root)."""
    from lokki_sam.config import load_config
    from lokki_sam.generate import plan
    from lokki_sam.loader import load_flows

    repo = Path(__file__).resolve().parents[1]
    for example in EXAMPLES:
        forget_module(example.stem)
    with restored_sys_path():
        graphs = [f.graph for p in EXAMPLES for f in load_flows(str(p))]
        result = plan(graphs, repo / "template.yaml", load_config(repo, environ={}), code_uri="examples")
    stale = [str(p.relative_to(repo)) for p in result.stale()]
    for example in EXAMPLES:
        forget_module(example.stem)
    assert stale == [], "regenerate: lokki-sam generate examples/*.py --code-uri examples\n" + result.diff()
