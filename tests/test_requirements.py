"""Step requirements: parsed as pip parses them (the `packaging` library) when `generate` packages
them, kept valid (environment markers included), and never carrying a credential into a template."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lokki_sam import step
from lokki_sam.dependencies import normalize
from lokki_sam.errors import FlowDefinitionError
from tests.support.sam import generate_in_process, load

pytestmark = pytest.mark.usefixtures("unload_modules")

MARKERS = [
    'requests>=2; python_version < "3.12" and sys_platform == "linux"',
    'numpy<2.3 ; platform_machine not in "armv7l" or os_name == "nt"',
    'Pandas[Performance] ==2.2.3; (python_version >= "3.11" and implementation_name == "cpython") or extra == "x"',
    'pkg @ https://files.example.com/pkg-1.0-py3-none-any.whl ; python_version >= "3.10"',
    "SIX == 1.16.0",
    "zope.interface>=6,<7",
]


@pytest.mark.parametrize("line", MARKERS)
def test_normalizing_keeps_the_requirement_what_it_was(line: str) -> None:
    written = normalize(line, "step 'x'")
    again, original = Requirement(written), Requirement(line)  # what pip will read back
    assert again.name == original.name.lower().replace("_", "-").replace(".", "-")
    assert (again.extras, again.specifier, again.url, str(again.marker)) == (
        original.extras,
        original.specifier,
        original.url,
        str(original.marker),
    )
    assert normalize(written, "step 'x'") == written  # one spelling


def test_equal_requirements_spelt_otherwise_are_one_spelling() -> None:
    assert normalize("NumPy <2.3", "w") == normalize("numpy<2.3", "w") == "numpy<2.3"
    assert normalize("a_b.c>=1,<2", "w") == normalize("A-B-C <2, >=1", "w")


@pytest.mark.parametrize(
    ("line", "credential"),
    [
        ("pkg @ git+https://user:s3cret-pass@git.example.com/pkg.git", "a password"),
        ("pkg @ git+https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/org/pkg.git", "a user name"),
        ("pkg @ https://files.example.com/pkg.whl?X-Amz-Credential=AKIAABCDEFGHIJKLMNOP", "a credential"),
    ],
)
def test_a_requirement_with_credentials_is_refused_where_the_step_is_defined(line: str, credential: str) -> None:
    with pytest.raises(FlowDefinitionError) as caught:
        step(requirements=[line])(_fetch)
    message = caught.value.render()
    assert f"holds {credential}" in message and "step '_fetch'" in message
    assert "netrc" in message and "keyring" in message and "PIP_INDEX_URL" in message
    assert "s3cret" not in message and "ghp_" not in message  # the refusal does not print the secret


@pytest.mark.parametrize(
    "line",
    [
        "pkg @ git+ssh://git@github.com/org/pkg.git",  # an SSH user: the key authenticates
        "pkg @ git+https://${GITHUB_TOKEN}@github.com/org/pkg.git",  # pip reads it from the environment
        "pkg @ https://${PIP_USER}:${PIP_PASSWORD}@files.example.com/pkg.whl",
    ],
)
def test_urls_without_literal_credentials_are_accepted(line: str) -> None:
    assert step(requirements=[line])(fetch).options.requirements == (line,)


def _fetch() -> int:
    return 1


def fetch() -> int:
    return 1


FLOW = """
from lokki_sam import flow, step

@step(requirements={requirements!r})
def fetch() -> int:
    return 1

@flow
def deps():
    return fetch()
"""


def test_markers_reach_the_layer_and_its_description_valid(project: Path) -> None:
    (project / "src" / "deps.py").write_text(FLOW.format(requirements=MARKERS[:3]))
    code, _, err = generate_in_process("deps", "src/deps.py")
    assert code == 0, err
    (written,) = project.glob("layers/deps-*/requirements.txt")
    lines = [line for line in written.read_text().splitlines() if not line.startswith("#")]
    assert sorted(str(Requirement(line)) for line in lines) == sorted(normalize(m, "w") for m in MARKERS[:3])
    assert 'python_version < "3.12" and sys_platform == "linux"' in written.read_text()
    layer = next(r for r in load((project / "template.yaml").read_text())["Resources"].values() if "deps-" in str(r))
    assert 'platform_machine not in "armv7l" or os_name == "nt"' in layer["Properties"]["Description"]


def test_an_invalid_requirement_is_refused_at_generate_naming_the_step_and_its_line(project: Path) -> None:
    (project / "src" / "deps.py").write_text(FLOW.format(requirements=["numpy<<2"]))
    code, _, err = generate_in_process("deps", "src/deps.py")
    assert code == 2 and "requirement 'numpy<<2' is not a valid requirement" in err
    assert "flow 'deps', step 'fetch'" in err and "src/deps.py:4" in err and "Traceback" not in err
    assert not (project / "template.yaml").exists()


def test_a_requirements_file_with_credentials_is_refused_and_nothing_written(project: Path) -> None:
    (project / "src" / "deps.txt").write_text(
        textwrap.dedent(
            """\
            # private index package
            tabulate==0.9.0
            pkg @ git+https://deploy:hunter2@git.example.com/pkg.git
            """
        )
    )
    (project / "src" / "deps.py").write_text(FLOW.format(requirements="deps.txt"))
    code, _, err = generate_in_process("deps", "src/deps.py")
    assert code == 2 and "holds a password in its URL" in err and "deps.txt" in err
    assert "hunter2" not in err and not (project / "template.yaml").exists()
