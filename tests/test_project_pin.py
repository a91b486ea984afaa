"""Which lokki-sam a new project installs (`lokki_sam.project.pin`): from where the running one came,
or as the user chooses; the requirements line it writes; the wheel of the running lokki-sam."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from lokki_sam import __version__
from lokki_sam.project import pin
from lokki_sam.project.pin import Origin, PinError

WHEEL = f"./wheels/lokki_sam-{__version__}-py3-none-any.whl"
SITE = "https://example.org"
GIT = f"{SITE}/lokki-sam.git"
REMOTE_WHEEL = f"{SITE}/lokki_sam-1-py3-none-any.whl"


@pytest.mark.parametrize(
    ("found", "requirement", "needs_wheel"),
    [
        (Origin("index"), f"lokki-sam=={__version__}", False),
        (Origin("vcs", f"git+{GIT}@abc123"), f"lokki-sam @ git+{GIT}@abc123", False),
        (
            Origin("archive", f"{SITE}/lokki_sam-1-py3-none-any.whl"),
            f"lokki-sam @ {SITE}/lokki_sam-1-py3-none-any.whl",
            False,
        ),
        (Origin("archive", "file:///tmp/lokki_sam-1-py3-none-any.whl"), WHEEL, True),
        (Origin("directory", "file:///src/lokki-sam"), WHEEL, True),
    ],
)
def test_by_default_the_pin_follows_where_this_lokki_sam_came_from(
    found: Origin, requirement: str, needs_wheel: bool
) -> None:
    chosen = pin.choose(None, found)
    assert (chosen.requirement, chosen.needs_wheel) == (requirement, needs_wheel)


def test_the_user_chooses_the_source() -> None:
    checkout = Origin("directory", "file:///src/lokki-sam")
    assert pin.choose("checkout", checkout).requirement == "lokki-sam @ file:///src/lokki-sam"
    assert "the checkout /src/lokki-sam" in pin.choose("checkout", checkout).why
    assert pin.choose("index", checkout).requirement == f"lokki-sam=={__version__}"
    assert pin.choose("wheel", Origin("index")).requirement == WHEEL
    url = "git+https://example.org/lokki-sam.git@v1"
    assert pin.choose(url, checkout).requirement == f"lokki-sam @ {url}"
    with pytest.raises(PinError, match="installed from a package index, not from a checkout"):
        pin.choose("checkout", Origin("index"))
    with pytest.raises(PinError, match="'latest' is not a source"):
        pin.choose("latest", checkout)
    with pytest.raises(PinError):
        pin.choose("https://example.org/x.whl --index-url=http://evil", checkout)  # one URL, no pip options


def test_the_running_lokki_sam_is_a_checkout_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install of this checkout; also when the checkout (with its .egg-info) is the cwd."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    found = pin.origin()
    assert found.kind == "directory" and Path(found.url.removeprefix("file://")).joinpath("pyproject.toml").is_file()


def test_pinning_replaces_the_lokki_sam_line_and_says_why_once(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements-dev.txt"
    requirements.write_text("# dev tools\n-r src/requirements.txt\nlokki-sam>=0.1\npytest>=8\n")
    pin.pin_requirements(requirements, pin.choose("index", Origin("index")))
    pin.pin_requirements(requirements, pin.choose("wheel", Origin("index")))  # again: replaced, not added
    lines = requirements.read_text().splitlines()
    assert lines == [
        "# dev tools",
        "-r src/requirements.txt",
        f"{pin.PIN_COMMENT} a wheel of lokki-sam {__version__}, built from a package index",
        WHEEL,
        "pytest>=8",
    ]
    empty = tmp_path / "other.txt"
    empty.write_text("pytest>=8\n")
    pin.pin_requirements(empty, pin.choose("index", Origin("index")))
    assert empty.read_text().splitlines()[-1] == f"lokki-sam=={__version__}"


def test_the_wheel_of_the_running_lokki_sam_carries_its_code_template_and_metadata(tmp_path: Path) -> None:
    wheel = pin.write_project_wheel(tmp_path)
    assert wheel == tmp_path / WHEEL
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"lokki_sam-{__version__}.dist-info"
        assert {
            "lokki_sam/__init__.py",
            "lokki_sam/runtime.py",
            "lokki_sam/project/template/cookiecutter.json",
        } <= names
        assert "lokki_sam/project/template/{{cookiecutter.project_name}}/.gitignore" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        metadata = archive.read(f"{info}/METADATA").decode()
        assert f"Version: {__version__}" in metadata and "Requires-Dist: click" in metadata
        assert "lokki-sam = lokki_sam.cli:main" in archive.read(f"{info}/entry_points.txt").decode()
        for path, digest, size in csv.reader(io.StringIO(archive.read(f"{info}/RECORD").decode())):
            if not path.endswith("RECORD"):
                data = archive.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert (digest, int(size)) == (f"sha256={expected}", len(data)), path
