"""Container-image steps in `generate`: options, the template, Dockerfiles (owned or kept), the runtime
copy, events/env.json, and the runtime's LOKKI_ENDPOINT_URL. The images themselves are built and invoked
on a real Docker daemon in tests/test_sam_local.py."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import flow, names, runtime, step

# sam and merge imported here, before any test: `unload_modules` drops what a test imports first, and
# a re-imported sam.Justified would no longer be the class merge.py checks for (its comments vanish).
from lokki_sam.compile import events, images, merge, model, sam
from lokki_sam.config import load_config
from lokki_sam.errors import ConfigError, FlowDefinitionError, LokkiError
from lokki_sam.packaging import CLI_ONLY, runtime_files
from tests.support.sam import generate_in_process, lint, load, transform

pytestmark = pytest.mark.usefixtures("unload_modules")

FLOW = """
from lokki_sam import flow, step

@step
def fetch(n: int = 3) -> list[int]:
    return list(range(n))

@step(package="image", requirements=["six==1.16.0"])
def square(x: int) -> int:
    return x * x

@step(package="image", requirements=["SIX == 1.16.0"])  # the same set, spelt otherwise: one image
def total(xs: list[int]) -> int:
    return sum(xs)

@step(package="image")
def show(t: int) -> str:
    return str(t)

@flow
def calc(n: int = 3):
    return fetch(n=n).map(square).agg(total).next(show)
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text(FLOW)
    (tmp_path / "src" / "requirements.txt").write_text("# nothing every function needs\n")
    (tmp_path / "lokki.toml").write_text('runtime = "python3.11"\narchitecture = "x86_64"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")  # no daemon answers there
    return tmp_path


def generate(*args: str) -> tuple[int, str, str]:
    return generate_in_process("calc", *args)


assert merge.Justified is sam.Justified


def resources(app: Path) -> dict[str, Any]:
    return dict(load((app / "template.yaml").read_text())["Resources"])


def dockerfiles(app: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in sorted((app / "images").glob("*/Dockerfile"))}


# ------------------------------------------------------------------------------------ the template


def test_image_steps_share_an_image_per_requirement_set(app: Path) -> None:
    code, out, err = generate("src/calc.py")
    assert code == 0, err
    res = resources(app)
    meta = {fid: res[fid]["Metadata"] for fid in ("CalcSquareFunction", "CalcTotalFunction", "CalcShowFunction")}
    # SAM builds one image per distinct Metadata (and architecture): square and total share theirs.
    assert meta["CalcSquareFunction"] == meta["CalcTotalFunction"] != meta["CalcShowFunction"]
    key = meta["CalcSquareFunction"]["Dockerfile"].split("/")[1]
    assert meta["CalcSquareFunction"]["DockerContext"] == "."
    assert meta["CalcSquareFunction"]["DockerTag"] == f"python3.11-{key}"
    assert sorted(dockerfiles(app)) == sorted({m["Dockerfile"].split("/")[1] for m in meta.values()})
    assert (app / "images" / key / "requirements.txt").read_text().splitlines()[1:] == ["six==1.16.0"]
    for fid in meta:
        props = res[fid]["Properties"]
        assert props["PackageType"] == "Image"
        assert not {"Runtime", "Handler", "CodeUri", "Layers"} & set(props)
        assert res[fid]["IgnoreGlobals"] == ["CodeUri", "Handler", "Layers", "Runtime"]
    zip_fn = res["CalcFetchFunction"]
    assert "PackageType" not in zip_fn["Properties"] and "IgnoreGlobals" not in zip_fn
    # Only zip functions carry layers: the image steps' requirements are in their images, not a layer.
    assert [r for r in res.values() if r["Type"] == "AWS::Serverless::LayerVersion"] == [res["LokkiSamRuntimeLayer"]]
    assert lint((app / "template.yaml").read_text()) == []
    cfn = transform((app / "template.yaml").read_text())["Resources"]
    assert "Runtime" in cfn["CalcFetchFunction"]["Properties"]
    assert {"Runtime", "Handler", "Layers"}.isdisjoint(cfn["CalcShowFunction"]["Properties"])
    assert "wrote images/lokki-sam/ (" in out and "runtime of image steps" in out


def test_dockerfile_base_image_requirements_runtime_and_code(app: Path) -> None:
    (app / "src" / "requirements.txt").write_text("requests>=2.31\n")  # every function's: images too
    assert generate("src/calc.py")[0] == 0
    files = dockerfiles(app)
    with_reqs = next(text for text in files.values() if "step-requirements" in text)
    without = next(text for text in files.values() if "step-requirements" not in text)
    for text in files.values():
        assert text.startswith(images.MARKER)
        assert "\nFROM public.ecr.aws/lambda/python:3.11-x86_64\n" in text
        assert "COPY images/lokki-sam/lokki_sam/ ${LAMBDA_TASK_ROOT}/lokki_sam/" in text
        assert "COPY src/ ${LAMBDA_TASK_ROOT}/" in text
        assert text.rstrip().endswith(f'CMD ["{names.HANDLER}"]')
        assert "COPY src/requirements.txt /tmp/lokki-sam/flow-requirements.txt" in text
        # pip before the code: a code change keeps the (slow) pip layer in Docker's cache
        code = text.index("COPY src/ ${LAMBDA_TASK_ROOT}/")
        assert text.index("RUN pip install") < text.index("COPY images/lokki-sam") < code
    assert "-r /tmp/lokki-sam/flow-requirements.txt -r /tmp/lokki-sam/step-requirements.txt" in with_reqs
    assert "# Steps: calc.square, calc.total" in with_reqs and "# Steps: calc.show" in without
    # A requirements.txt of comments only: no pip at all (it would need pip and the network for nothing).
    (app / "src" / "requirements.txt").write_text("# none\n\n")
    assert generate("src/calc.py")[0] == 0
    assert "flow-requirements" not in "".join(dockerfiles(app).values())
    assert "RUN" not in next(t for t in dockerfiles(app).values() if "calc.show" in t)


def test_arm64_images_and_architecture_per_step(app: Path, write_module: Any) -> None:
    (app / "lokki.toml").write_text('runtime = "python3.12"\n')  # architecture: arm64 by default
    (app / "src" / "calc.py").write_text(
        FLOW.replace('@step(package="image")', '@step(package="image", architecture="x86_64")')
    )
    assert generate("src/calc.py")[0] == 0
    froms = sorted(line for t in dockerfiles(app).values() for line in t.splitlines() if line.startswith("FROM"))
    assert froms == ["FROM public.ecr.aws/lambda/python:3.12-arm64", "FROM public.ecr.aws/lambda/python:3.12-x86_64"]
    assert resources(app)["CalcShowFunction"]["Properties"]["Architectures"] == ["x86_64"]


def test_flow_and_config_defaults(app: Path) -> None:
    (app / "src" / "calc.py").write_text(FLOW.replace("@flow\n", '@flow(package="image")\n'))
    assert generate("src/calc.py")[0] == 0
    assert resources(app)["CalcFetchFunction"]["Properties"]["PackageType"] == "Image"  # the flow's default
    (app / "src" / "calc.py").write_text(FLOW.replace('@step(package="image")', '@step(package="zip")'))
    (app / "lokki.toml").write_text('runtime = "python3.11"\npackage = "image"\n')
    assert generate("src/calc.py")[0] == 0
    res = resources(app)
    assert res["CalcFetchFunction"]["Properties"]["PackageType"] == "Image"  # config's default
    assert "PackageType" not in res["CalcShowFunction"]["Properties"]  # the step's own zip wins


def test_all_images_drop_the_zip_globals_and_the_runtime_layer(app: Path) -> None:
    (app / "lokki.toml").write_text('runtime = "python3.11"\npackage = "image"\n')
    assert generate("src/calc.py")[0] == 0
    doc = load((app / "template.yaml").read_text())
    assert set(doc["Globals"]["Function"]) == {"MemorySize", "Timeout"}
    assert "LokkiSamRuntimeLayer" not in doc["Resources"] and not (app / "layers" / "lokki-sam").exists()
    assert not [r for r in doc["Resources"].values() if "IgnoreGlobals" in r]
    assert lint((app / "template.yaml").read_text()) == []
    # A user's own layer in Globals would reach the images: they ignore it (samtranslator refuses
    # an IgnoreGlobals entry Globals lacks, so the list follows what Globals has).
    text = (
        (app / "template.yaml")
        .read_text()
        .replace(
            "    MemorySize: 512\n",
            "    MemorySize: 512\n    Layers:\n      - arn:aws:lambda:us-east-1:123456789012:layer:mine:1\n",
        )
    )
    (app / "template.yaml").write_text(text)
    assert generate("src/calc.py")[0] == 0
    doc = load((app / "template.yaml").read_text())
    assert doc["Globals"]["Function"]["Layers"] == ["arn:aws:lambda:us-east-1:123456789012:layer:mine:1"]
    functions = [r for r in doc["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert [r["IgnoreGlobals"] for r in functions] == [["Layers"]] * 4
    assert lint((app / "template.yaml").read_text()) == []


def test_switching_back_to_zip_removes_what_images_needed_and_keeps_user_edits(app: Path) -> None:
    assert generate("src/calc.py")[0] == 0
    text = (
        (app / "template.yaml")
        .read_text()
        .replace("      DockerTag: ", "      DockerBuildArgs:\n        MODE: fast\n      DockerTag: ", 1)
    )
    (app / "template.yaml").write_text(text)
    assert generate("src/calc.py")[0] == 0
    assert "DockerBuildArgs" in (app / "template.yaml").read_text()  # the user's own metadata survives
    (app / "src" / "calc.py").write_text(
        FLOW.replace('package="image", ', "").replace('@step(package="image")', "@step")
    )
    code, out, _ = generate("src/calc.py")
    assert code == 0
    assert "removed images/lokki-sam/ (" in out and "removed .dockerignore" in out
    assert not (app / "images").exists() and not (app / ".dockerignore").exists()
    res = resources(app)
    assert not [r for r in res.values() if "IgnoreGlobals" in r or "PackageType" in r.get("Properties", {})]
    for fid in ("CalcSquareFunction", "CalcTotalFunction", "CalcShowFunction"):
        assert not {"Dockerfile", "DockerContext", "DockerTag"} & set(res[fid]["Metadata"]), fid
    assert res["CalcSquareFunction"]["Metadata"].get("DockerBuildArgs") == {"MODE": "fast"}  # still the user's


# ----------------------------------------------------------------------------- owned or kept


def test_an_edited_dockerfile_is_rewritten_while_it_keeps_the_marker_and_kept_without(app: Path) -> None:
    assert generate("src/calc.py")[0] == 0
    key, text = next((k, t) for k, t in dockerfiles(app).items() if "calc.show" in t)
    path = app / "images" / key / "Dockerfile"
    path.write_text(text.replace("CMD [", "RUN echo edited\nCMD ["))
    code, out, _ = generate("src/calc.py")
    assert code == 0 and f"wrote images/{key}/Dockerfile" in out and path.read_text() == text
    mine = "\n".join(text.splitlines()[1:]).replace("CMD [", "RUN dnf install -y libgomp\nCMD [") + "\n"
    path.write_text(mine)  # without the first line: the user's file now
    code, out, err = generate("src/calc.py")
    assert code == 0 and path.read_text() == mine
    assert f"note: kept images/{key}/Dockerfile: it does not start with lokki-sam's marker line" in err
    code, _, err = generate("--check", "src/calc.py")
    assert code == 0, err  # a kept file is never stale
    (app / ".dockerignore").write_text("# mine\n*\n!src\n!images\n")
    code, _, err = generate("src/calc.py")
    assert code == 0 and (app / ".dockerignore").read_text() == "# mine\n*\n!src\n!images\n"
    assert "kept .dockerignore" in err


def test_images_of_removed_requirement_sets_go_unless_yours(app: Path) -> None:
    assert generate("src/calc.py")[0] == 0
    before = dockerfiles(app)
    (app / "src" / "calc.py").write_text(
        FLOW.replace("six==1.16.0", "six==1.17.0").replace("SIX == 1.16.0", "six==1.17.0")
    )
    code, out, _ = generate("src/calc.py")
    assert code == 0
    after = dockerfiles(app)
    (gone,) = set(before) - set(after)
    assert f"removed images/{gone}/Dockerfile" in out and not (app / "images" / gone).exists()
    # a Dockerfile of yours in images/ (no marker) that no step uses is left alone
    (app / "images" / "tools").mkdir()
    (app / "images" / "tools" / "Dockerfile").write_text("FROM debian\n")
    assert generate("src/calc.py")[0] == 0
    assert (app / "images" / "tools" / "Dockerfile").read_text() == "FROM debian\n"


def test_runtime_copy_is_the_installed_runtime_without_cli_parts(app: Path) -> None:
    assert generate("src/calc.py")[0] == 0
    copy = app / "images" / "lokki-sam" / "lokki_sam"
    copied = {p.relative_to(copy.parent).as_posix() for p in copy.rglob("*") if p.is_file()}
    assert copied == set(runtime_files())
    assert not [name for name in CLI_ONLY if (copy / name).exists()]
    assert "runtime.py" in {p.name for p in copy.iterdir()}
    stale = copy / "gone_in_this_version.py"
    stale.write_text("")
    assert generate("src/calc.py")[0] == 0 and not stale.exists()  # lokki-sam's folder: old files go


def test_dockerignore_sends_only_the_code_and_images(app: Path) -> None:
    assert generate("src/calc.py")[0] == 0
    lines = [line for line in (app / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    assert lines[:3] == ["*", "!src", "!images"]
    assert images.dockerignore(".").splitlines()[3:6] == [".aws-sam", ".git", ".venv"]  # code = context


# ----------------------------------------------------------------------------------- bad input


def test_unknown_package_values_are_refused_where_they_enter(app: Path) -> None:
    with pytest.raises(FlowDefinitionError, match=r"package must be one of zip, image, got 'docker'") as info:

        @step(package="docker")
        def a(x: int) -> int:
            return x

    assert info.value.where == "step 'a'"

    @step
    def b(x: int = 1) -> int:
        return x

    with pytest.raises(FlowDefinitionError, match="package must be one of zip, image") as info:

        @flow(package="container")
        def f(x: int = 1):
            return b(x=x)

    assert info.value.where == "flow 'f'"
    with pytest.raises(ConfigError, match="'package' must be one of zip, image, got 'oci'"):
        load_config(app, environ={"LOKKI_PACKAGE": "oci"})
    (app / "lokki.toml").write_text('package = "Image"\n')
    code, _, err = generate("src/calc.py")
    assert code == 2 and "'package' must be one of zip, image" in err and "Traceback" not in err


def test_a_runtime_without_a_base_image_and_code_outside_the_context(
    app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(LokkiError, match=r"runtime 'python3.9' has no Lambda base image .*image step\(s\) calc.show"):
        images.base_image("python3.9", "x86_64", ["calc.show"])
    # Lambda adds a Python before AWS publishes its base image:
    monkeypatch.setattr(model, "LAMBDA_PYTHONS", (*model.LAMBDA_PYTHONS, "python3.99"))
    (app / "lokki.toml").write_text('runtime = "python3.99"\n')
    code, _, err = generate("src/calc.py")
    assert code == 2 and "runtime 'python3.99' has no Lambda base image" in err and "python3.13" in err
    assert not (app / "template.yaml").exists()  # nothing written
    (app / "lokki.toml").write_text('runtime = "python3.11"\n')
    (app / "sub").mkdir()
    code, _, err = generate("--template", "sub/template.yaml", "--code-uri", "../src", "src/calc.py")
    assert code == 2 and "image steps need the functions' CodeUri inside the template's folder" in err


def test_generate_says_when_no_docker_daemon_answers(app: Path) -> None:
    code, _, err = generate("src/calc.py")
    assert code == 0
    assert (
        f"3 step(s) are container images, which `sam build` builds with Docker, but no Docker daemon answers at unix://{app}/no-docker.sock"
        in err
    )
    assert images.docker_problem({"DOCKER_HOST": f"unix://{app}/no-docker.sock"}) is not None
    (app / "src" / "calc.py").write_text(
        FLOW.replace('package="image", ', "").replace('@step(package="image")', "@step")
    )
    code, _, err = generate("src/calc.py")
    assert code == 0 and "Docker" not in err  # zip only: Docker is not needed


# ------------------------------------------------------------------------- sam local invoke env


def test_env_json_and_every_function_declares_the_variables_it_sets(app: Path) -> None:
    assert generate("src/calc.py")[0] == 0
    env = json.loads((app / "events" / "env.json").read_text())
    res = resources(app)
    functions = sorted(fid for fid, r in res.items() if r["Type"] == "AWS::Serverless::Function")
    assert sorted(env) == functions
    for fid in functions:
        assert env[fid] == {
            names.ENV_BUCKET: events.LOCAL_BUCKET,
            names.ENV_ENDPOINT_URL: "http://host.docker.internal:4566",
            names.ENV_PREFIX: "lokki/local/calc",
        }
        # --env-vars overrides only declared variables: each is in the template, the endpoint empty.
        declared = res[fid]["Properties"]["Environment"]["Variables"]
        assert set(env[fid]) <= set(declared) and declared[names.ENV_ENDPOINT_URL] == ""


def test_runtime_uses_lokki_endpoint_url_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """On AWS the variable is empty: the runtime's client keeps the default endpoint."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    for value, expected in (("", "https://s3.amazonaws.com"), ("  ", "https://s3.amazonaws.com"),
                            ("http://127.0.0.1:4566", "http://127.0.0.1:4566")):  # fmt: skip
        monkeypatch.setenv(names.ENV_ENDPOINT_URL, value)
        runtime.reset_cache()
        assert runtime._s3().meta.endpoint_url == expected, value
    runtime.reset_cache()


def test_packaging_by_flow_or_config_keeps_fingerprints(write_module: Any) -> None:
    """Packaging a flow as images (config, or `@flow(package=...)`) keeps its fingerprints, so its
    stored runs stay valid; the golden events of tests/golden show the option left the others alone."""
    from lokki_sam.loader import load_flow

    source = textwrap.dedent(FLOW).replace('package="image", ', "").replace('@step(package="image")', "@step")
    plain = load_flow(str(write_module("fp_plain", source))).graph
    boxed = load_flow(str(write_module("fp_boxed", source.replace("@flow\n", '@flow(package="image")\n')))).graph
    assert boxed.package == "image" and plain.package is None
    assert boxed.fingerprints == plain.fingerprints
