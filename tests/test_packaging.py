"""Packaging a project: per-step dependencies in their own layers, several flow modules in one
template, and the bad input around them. `sam build` is the real SAM CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import __version__, flow, names, runtime, step
from lokki_sam.compile.layers import RUNTIME_LAYER_ID
from lokki_sam.errors import FlowDefinitionError
from tests.conftest import sam_cli_env
from tests.support.keys import function_env
from tests.support.sam import load

BIN = Path(sys.executable).parent
Lokki = Callable[..., subprocess.CompletedProcess[str]]

DEPENDENT = """
from lokki_sam import flow, step

@step(requirements=["six==1.16.0"])
def listing(n: int = 3) -> list[int]:
    import six  # only this function's package has it
    return list(six.moves.range(n))

@step(requirements="requirements/pretty.txt")
def pretty(xs: list[int]) -> str:
    import tabulate
    return tabulate.tabulate([xs])

@step(requirements=["SIX == 1.16.0"])  # the same set, spelled otherwise: the same layer
def again(text: str) -> str:
    return text

@step
def plain(text: str) -> int:
    return len(text)

@flow
def dependent(n: int = 3):
    return listing(n=n).next(pretty).next(again).next(plain)
"""


def sam_build(root: Path, env: dict[str, str]) -> Path:
    """Run the real `sam build` in root; the build folder."""
    build = subprocess.run([str(BIN / "sam"), "build"], cwd=root, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    return root / ".aws-sam" / "build"


def write_app(root: Path) -> None:
    (root / "src" / "requirements").mkdir(parents=True)
    (root / "src" / "dependent.py").write_text(textwrap.dedent(DEPENDENT))
    (root / "src" / "requirements" / "pretty.txt").write_text("# for pretty\ntabulate==0.9.0\n")


def test_each_function_gets_only_its_own_steps_dependencies(tmp_path: Path, lokki: Lokki) -> None:
    write_app(tmp_path)
    assert lokki("generate", "src/dependent.py").returncode == 0
    template = load((tmp_path / "template.yaml").read_text())
    resources = template["Resources"]
    deps_layers = {rid: r for rid, r in resources.items() if rid.startswith("LokkiSamDeps")}
    assert len(deps_layers) == 2  # `listing` and `again` share one set

    def layers_of(step_name: str) -> list[str]:
        props = resources[names.function_id("dependent", step_name)]["Properties"]
        return [ref["Ref"] for ref in props.get("Layers", [])]

    assert layers_of("listing") == layers_of("again") and len(layers_of("listing")) == 1
    assert len(layers_of("pretty")) == 1 and layers_of("pretty") != layers_of("listing")
    assert layers_of("plain") == []
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": RUNTIME_LAYER_ID}]
    requirements = {
        (tmp_path / r["Properties"]["ContentUri"] / "requirements.txt").read_text().splitlines()[-1]
        for r in deps_layers.values()
    }
    assert requirements == {"six==1.16.0", "tabulate==0.9.0"}

    env = sam_cli_env(tmp_path / "home")
    built = sam_build(tmp_path, env)
    (six_layer,) = (built / rid / "python" for rid in layers_of("listing"))
    (tabulate_layer,) = (built / rid / "python" for rid in layers_of("pretty"))
    assert (six_layer / "six.py").is_file() and not (six_layer / "tabulate.py").exists()
    assert (tabulate_layer / "tabulate").exists() and not (tabulate_layer / "six.py").exists()
    for name in ("listing", "pretty", "again", "plain"):  # nobody's code carries a dependency
        code = built / names.function_id("dependent", name)
        assert not (code / "six.py").exists() and not (code / "tabulate").exists()
    sizes = subprocess.run([str(BIN / "lokki-sam"), "size"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert sizes.returncode == 0, sizes.stderr
    print("\n" + sizes.stdout)
    lines = {line.split()[0]: line for line in sizes.stdout.splitlines()}
    assert set(layers_of("pretty")) <= set(lines[names.function_id("dependent", "pretty")].replace(",", " ").split())
    assert "LokkiSamDeps" not in lines[names.function_id("dependent", "plain")]


@pytest.mark.parametrize(
    ("requirements", "message"),
    [
        (["-r other.txt"], "is not a single requirement (pip options"),
        (["requests\n--index-url=http://x"], "is not a single requirement"),
        ([""], "requirement '' is empty"),
        (["pkg @ git+https://user:hunter2@example.com/pkg.git"], "holds a password in its URL"),
        ("", "requirements must be a list of requirement lines or the path of a requirements file"),
        ([3], "requirements must be a list of strings"),
    ],
)
def test_a_bad_requirement_is_refused_naming_the_step(requirements: Any, message: str) -> None:
    """Refused where the step is defined (its syntax is parsed at generate: tests/test_requirements.py)."""
    with pytest.raises(FlowDefinitionError, match=message.replace("(", r"\(")) as caught:
        step(requirements=requirements)(_fetch)
    assert "step '_fetch'" in caught.value.render() and "hunter2" not in caught.value.render()


def _fetch() -> int:
    return 1


def test_a_missing_requirements_file_is_refused_at_generate(tmp_path: Path, lokki: Lokki) -> None:
    write_app(tmp_path)
    (tmp_path / "src" / "requirements" / "pretty.txt").unlink()
    done = lokki("generate", "src/dependent.py")
    assert done.returncode == 2 and "requirements file" in done.stderr and "pretty.txt not found" in done.stderr
    assert "step 'pretty'" in done.stderr and not (tmp_path / "template.yaml").exists()


# ====================================================================== several flow modules

ALPHA = """
from lokki_sam import flow, step

@step
def a_items(n: int = 2) -> list[int]:
    return list(range(n))

@flow
def alpha(n: int = 2):
    return a_items(n=n)
"""
BETA = ALPHA.replace("a_items", "b_items").replace("alpha", "beta")


def two_modules(root: Path) -> None:
    (root / "src").mkdir()
    (root / "src" / "a.py").write_text(textwrap.dedent(ALPHA))
    (root / "src" / "b.py").write_text(textwrap.dedent(BETA))


def recorded(root: Path) -> dict[str, str]:
    return dict(load((root / "template.yaml").read_text())["Metadata"]["lokki-sam"]["flows"])


def test_a_project_of_several_modules_generates_all_and_keeps_them(tmp_path: Path, lokki: Lokki) -> None:
    two_modules(tmp_path)
    (tmp_path / "lokki.toml").write_text('flows = ["src/a.py", "src/b.py"]\n')
    assert lokki("generate").returncode == 0
    assert recorded(tmp_path) == {"alpha": "src/a.py:alpha", "beta": "src/b.py:beta"}
    # Generating one module keeps the other (loaded again from where the template says it came).
    (tmp_path / "lokki.toml").unlink()
    one = lokki("generate", "src/a.py")
    assert one.returncode == 0, one.stderr
    assert recorded(tmp_path) == {"alpha": "src/a.py:alpha", "beta": "src/b.py:beta"}
    assert (tmp_path / "statemachine" / "beta.asl.json").is_file()
    # With no argument at all: every flow the template records.
    again = lokki("generate", "--check")
    assert again.returncode == 0, again.stdout + again.stderr
    pruned = lokki("generate", "src/a.py", "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert "removed flow 'beta' (--prune)" in pruned.stdout
    assert recorded(tmp_path) == {"alpha": "src/a.py:alpha"}
    assert not (tmp_path / "statemachine" / "beta.asl.json").exists()
    assert "BetaStateMachine" not in (tmp_path / "template.yaml").read_text()


def test_a_folder_of_flows_in_lokki_toml(tmp_path: Path, lokki: Lokki) -> None:
    two_modules(tmp_path)
    (tmp_path / "src" / "helpers.py").write_text("VALUE = 1\n")  # no flow: not imported
    (tmp_path / "lokki.toml").write_text('flows = "src"\n')
    done = lokki("generate")
    assert done.returncode == 0, done.stderr
    assert set(recorded(tmp_path)) == {"alpha", "beta"}


def test_a_flow_gone_from_its_module_is_kept_until_pruned(tmp_path: Path, lokki: Lokki) -> None:
    two_modules(tmp_path)
    assert lokki("generate", "src/a.py", "src/b.py").returncode == 0
    before = (tmp_path / "template.yaml").read_text()
    (tmp_path / "src" / "b.py").unlink()
    kept = lokki("generate", "src/a.py")
    assert kept.returncode == 2 and "flow 'beta', recorded in the template from src/b.py:beta" in kept.stderr
    assert "--prune" in kept.stderr and (tmp_path / "template.yaml").read_text() == before  # nothing lost


def test_two_modules_defining_the_same_flow_name_are_refused(tmp_path: Path, lokki: Lokki) -> None:
    two_modules(tmp_path)
    (tmp_path / "src" / "b.py").write_text(textwrap.dedent(BETA).replace("def beta", "def alpha"))
    done = lokki("generate", "src/a.py", "src/b.py")
    assert done.returncode == 2, done.stderr
    assert "two flows are named 'alpha': in src/a.py:alpha and in src/b.py:alpha" in done.stderr
    assert not (tmp_path / "template.yaml").exists()


def test_a_module_listed_in_lokki_toml_that_does_not_exist(tmp_path: Path, lokki: Lokki) -> None:
    two_modules(tmp_path)
    (tmp_path / "lokki.toml").write_text('flows = ["src/a.py", "src/missing.py"]\n')
    done = lokki("generate")
    assert done.returncode == 2 and "src/missing.py (from" in done.stderr and "lokki.toml" in done.stderr
    assert "file not found" in done.stderr and not (tmp_path / "template.yaml").exists()


# ====================================================================== the runtime's version


@step
def versioned_items() -> list[int]:
    return [1]


@flow
def versioned():
    return versioned_items()


def test_a_function_built_with_another_lokki_sam_is_refused() -> None:
    env = function_env(versioned, "versioned_items", "bucket", __name__, LOKKI_VERSION="0.0.1")
    event = {"node": "versioned_items", "run_id": "r1", "params": {}}
    expected = rf"generated by lokki-sam 0\.0\.1, but this function runs lokki-sam {__version__}"
    with pytest.raises(runtime.FlowMismatch, match=expected):
        runtime.handle(event, env, client=object())


PROJECT = """
import os
import six  # src/requirements.txt: `sam build` installs it next to the code, with its .dist-info
from lokki_sam import flow, step
from wording import shout  # the project's own module

PREFIX = os.environ.get("WORD_PREFIX", "")  # the Lambda's environment differs from the generator's

@step
def words() -> list[str]:
    return list(six.moves.map(str, range(3)))

@step
def loud(xs: list[str]) -> str:
    from parts import marks  # a namespace package (no __init__.py), imported inside the body
    return PREFIX + shout(" ".join(xs)) + marks.END

@flow
def project():
    return words().next(loud)
"""


def test_built_functions_compute_the_fingerprint_their_state_machine_sends(tmp_path: Path, lokki: Lokki) -> None:
    """The generator sees six in site-packages, wording.py and parts/ in src/ and no WORD_PREFIX; a
    built function sees them in its own folder (six with its .dist-info) and its own environment.
    Each built function must still compute the flow fingerprint the state machine stamps on its
    payloads, or every deployed run would be refused."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "project.py").write_text(textwrap.dedent(PROJECT))
    (tmp_path / "src" / "wording.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    (tmp_path / "src" / "parts").mkdir()
    (tmp_path / "src" / "parts" / "marks.py").write_text("END = '.'\n")
    (tmp_path / "src" / "requirements.txt").write_text("six==1.16.0\n")
    assert lokki("generate", "src/project.py").returncode == 0
    definition = (tmp_path / "statemachine" / "project.asl.json").read_text()
    (stamp,) = set(re.findall(r'"flow": "([0-9a-f]{16})"', definition))
    built = sam_build(tmp_path, sam_cli_env(tmp_path / "home"))
    layer = built / RUNTIME_LAYER_ID / "python"
    for name in ("words", "loud"):
        code = built / names.function_id("project", name)
        assert (code / "six.py").is_file() and list(code.glob("six-*.dist-info")), list(code.iterdir())
        assert (code / "parts" / "marks.py").is_file()
        probe = (
            f"import sys; sys.path[:0] = [{str(code)!r}, {str(layer)!r}]; from lokki_sam import runtime; "
            "graph = runtime.load_graph('project', 'project'); import six, wording; "
            "assert six.__file__.startswith(sys.path[0]) and wording.__file__.startswith(sys.path[0]); "
            "print(graph.fingerprints.flow)"
        )
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", probe],
            cwd=code,
            env={"WORD_PREFIX": "prod-", "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == stamp
    (tmp_path / "src" / "wording.py").write_text("def shout(text):\n    return text.upper() + '!!'\n")
    check = lokki("generate", "src/project.py", "--check")
    assert check.returncode != 0, check.stdout + check.stderr  # an edit of the project module is a new flow
    assert lokki("generate", "src/project.py").returncode == 0
    (tmp_path / "src" / "parts" / "marks.py").write_text("END = '?'\n")
    check = lokki("generate", "src/project.py", "--check")
    assert check.returncode != 0, check.stdout + check.stderr  # so is an edit of what a step imports inside
