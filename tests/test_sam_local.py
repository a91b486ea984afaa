"""`sam local invoke` of every step, for real: a Docker daemon, the SAM CLI, a local S3 (issue 11).

- The documented sequence (docs/template.md, the block after `<!-- sam-local-invoke -->`) runs as
  written, line by line, for the birds example packaged as zips and as container images: `lokki-sam
  generate`, `lokki-sam emulator start --engine ministack` (the local S3, and STS for SAM), the bucket,
  `sam build` (the image variant builds the image on the daemon from the Lambda base image stand-in,
  tests/support/lambda_image.py), one `sam local invoke` per step in flow order with
  `--env-vars events/env.json`, and `lokki-sam emulator stop`. The harness changes only what this
  machine needs: the port 4566 becomes a free one (in the commands and in the generated env.json),
  and `sam` is the real SAM CLI with the host-network shim and `--skip-pull-image --docker-network
  host --add-host host.docker.internal:127.0.0.1` (tests/support/sam_local.py: no registry, no bridge
  network; the name Docker Desktop gives the machine is its loopback under host networking).
- A flow mixing zip and image steps (tests/flows/packaging.py) runs step by step on a moto S3 server.

Each run asserts that no payload has `errorType` (SAM exits 0 when a function fails) and that the
last step's stored output equals `lokki-sam run`'s result. `pytest tests/test_sam_local.py -s`
prints the timings and the image's size.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from lokki_sam import names
from lokki_sam.compile import events
from lokki_sam.execution import RunContext, read_result
from lokki_sam.packaging import CLI_ONLY, runtime_files
from lokki_sam.store import S3Store
from tests.conftest import LOKKI_SAM, REPO
from tests.support.emulator import exported
from tests.support.lambda_image import PYTHON, host_architecture
from tests.support.moto_server import moto_endpoint
from tests.support.sam import PACKAGING_FILE, forget_module, restored_sys_path
from tests.support.sam_local import free_port, install_sam_wrapper, run_sam, sam_local_invoke, sam_runs

pytest_plugins = ["tests.support.docker_fixtures"]
pytestmark = pytest.mark.docker

DOC = REPO / "docs" / "template.md"
DOC_MARKER = "<!-- sam-local-invoke -->"
DOC_PORT = "4566"
BIRDS = REPO / "examples" / "birds.py"
ARCH = host_architecture()
TIMINGS: dict[str, float] = {}
FIGURES: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_figures() -> Iterator[None]:
    """`pytest tests/test_sam_local.py -s` prints what each part took, and the image's size."""
    yield
    print()
    for what, seconds in TIMINGS.items():
        print(f"  {what}: {seconds:.1f} s")
    for what, value in FIGURES.items():
        print(f"  {what}: {value}")


def documented_sequence() -> list[str]:
    """The command lines of the fenced block that follows DOC_MARKER in docs/template.md."""
    text = DOC.read_text()
    block = re.search(re.escape(DOC_MARKER) + r"\s*```bash\n(.*?)```", text, re.DOTALL)
    assert block, f"{DOC} has no ```bash block after {DOC_MARKER}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class SequenceRun:
    app: Path
    package: str
    lines: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)  # what the `sam` wrapper recorded
    stored_result: Any = None
    expected_result: Any = None
    seconds: dict[str, float] = field(default_factory=dict)


def run_line(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """One documented line in bash; `eval "$(cmd)"` runs cmd and keeps the variables it exports."""
    evaluated = re.fullmatch(r'eval "\$\((.*)\)"(\s+#.*)?', line.strip())
    command = evaluated.group(1) if evaluated else line
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if evaluated and proc.returncode == 0:
        env.update(exported(proc.stdout))
    return proc


@pytest.fixture(scope="module")
def zip_run(sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SequenceRun]:
    yield from run_documented_sequence("zip", sam_env, tmp_path_factory)


@pytest.fixture(scope="module")
def image_run(sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[SequenceRun]:
    yield from run_documented_sequence("image", sam_env, tmp_path_factory)


@pytest.fixture(params=["zip_run", "image_run"])
def documented_run(request: pytest.FixtureRequest) -> SequenceRun:
    run: SequenceRun = request.getfixturevalue(request.param)
    return run


def run_documented_sequence(
    package: str, sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SequenceRun]:
    """The documented lines for birds packaged as `package`, up to (and, afterwards, with) the stop line."""
    app = tmp_path_factory.mktemp(f"birds-{package}")
    (app / "examples").mkdir()
    shutil.copy(BIRDS, app / "examples" / "birds.py")
    # The docs' prerequisite: the machine's architecture (SAM runs that base image); the stand-in is 3.11.
    (app / "lokki.toml").write_text(f'architecture = "{ARCH}"\nruntime = "python{PYTHON}"\npackage = "{package}"\n')
    log = app / ".sam-runs.jsonl"
    bin_dir = app / ".bin"
    install_sam_wrapper(bin_dir, log)
    port = str(free_port())
    env = dict(sam_env, PATH=f"{bin_dir}:{sam_env['PATH']}", HOME=str(app / ".home"))
    (app / ".home").mkdir()
    lines = [line.replace(DOC_PORT, port) for line in documented_sequence()]
    run = SequenceRun(app, package, lines)
    stop = [line for line in lines if "emulator stop" in line]
    try:
        for line in lines:
            if line in stop:
                continue
            began = time.perf_counter()
            proc = run_line(line, env, app)
            run.seconds[line] = time.perf_counter() - began
            assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
            if line.startswith("lokki-sam generate"):  # the generated endpoint names the documented port
                env_file = app / "events" / events.ENV_FILE
                text = env_file.read_text()
                assert f"http://host.docker.internal:{DOC_PORT}" in text and events.LOCAL_ENDPOINT.endswith(DOC_PORT)
                env_file.write_text(text.replace(f":{DOC_PORT}", f":{port}"))
        run.runs = sam_runs(log)
        s3 = boto3.client(  # module scope: the autouse dummy credentials are not set yet
            "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        graph = load_graph(app / "examples" / "birds.py")
        store = S3Store(events.LOCAL_BUCKET, names.flow_prefix(events.LOCAL_STACK, "birds"), s3)
        run.stored_result = read_result(RunContext(graph, store, events.SAMPLE_RUN_ID, {}))
        run.expected_result = local_result("examples/birds.py", app, env)
        yield run
    finally:
        for line in stop:  # the documented last line, also when a step failed
            proc = run_line(line, env, app)
            assert proc.returncode == 0, proc.stderr


def local_result(flow_ref: str, app: Path, env: dict[str, str]) -> Any:
    """What `lokki-sam run FLOW_REF --json` returns in app."""
    local = subprocess.run(
        [LOKKI_SAM, "run", flow_ref, "--json", "--store", str(app / ".lokki")],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert local.returncode == 0, local.stderr
    return json.loads(local.stdout)["result"]


def load_graph(path: Path) -> Any:
    from lokki_sam.loader import load_flow

    forget_module(path.stem)
    with restored_sys_path():
        graph = load_flow(str(path)).graph
    forget_module(path.stem)
    return graph


def invokes(run: SequenceRun) -> list[dict[str, Any]]:
    return [r for r in run.runs if r["args"][:2] == ["local", "invoke"]]


def test_the_documented_sequence_invokes_every_step_in_flow_order() -> None:
    graph = load_graph(BIRDS)
    documented = [shlex.split(line)[3:7] for line in documented_sequence() if line.startswith("sam local invoke")]
    expected = [
        [names.function_id("birds", node.step.name), "-e", f"events/birds/{node.id}.json", "--env-vars"]
        for node in graph.nodes
    ]
    assert documented == expected  # every step, in flow order, each with its event and env.json


def test_every_step_ran_and_the_result_is_lokki_sam_runs(documented_run: SequenceRun) -> None:
    runs = invokes(documented_run)
    assert len(runs) == 3
    for run in runs:
        assert run["returncode"] == 0, run["stderr"][-3000:]
        assert isinstance(run["payload"], dict), f"no payload printed:\n{run['stdout']}\n{run['stderr'][-3000:]}"
        assert "errorType" not in run["payload"], run["payload"]  # SAM exits 0 when the function fails
    first, mapped, last = (r["payload"] for r in runs)
    assert first["count"] == 3 and first["Bucket"] == events.LOCAL_BUCKET
    assert first["Key"].startswith("lokki/local/birds/sample-run/step=get_birds/")
    assert mapped == {"node": "flap", "items": 3} and last == {"node": "join"}
    assert documented_run.stored_result == documented_run.expected_result == "flappy goose, flappy duck, flappy seagull"
    for line, seconds in documented_run.seconds.items():
        TIMINGS[f"{documented_run.package}: {line.split('#')[0].strip()[:70]}"] = seconds


def test_zip_variant_builds_the_code_once_and_the_runtime_layer(zip_run: SequenceRun) -> None:
    (build,) = [r for r in zip_run.runs if r["args"][:1] == ["build"]]
    output = build["stdout"] + build["stderr"]
    assert len([line for line in output.splitlines() if line.startswith("Building codeuri:")]) == 1, output
    assert "Building layer 'LokkiSamRuntimeLayer'" in output


def test_image_variant_builds_one_image_for_all_steps_without_cli_parts(
    image_run: SequenceRun, sam_env: dict[str, str]
) -> None:
    (build,) = [r for r in image_run.runs if r["args"][:1] == ["build"]]
    output = build["stdout"] + build["stderr"]
    # One build definition for the three functions (same Metadata and architecture): one docker build.
    assert len(re.findall(r"^Building image for \w+ function$", output, re.MULTILINE)) == 1, output
    assert "Building layer" not in output  # no zip function: no runtime layer
    built = (image_run.app / ".aws-sam" / "build" / "template.yaml").read_text()
    uris = set(re.findall(r"ImageUri: (\S+)", built))
    assert len(uris) == 1 and len(re.findall(r"ImageUri: ", built)) == 3, uris
    (image,) = uris
    sizes = subprocess.run([LOKKI_SAM, "size"], cwd=image_run.app, env=sam_env, capture_output=True, text=True)
    assert sizes.returncode == 0, sizes.stderr
    assert sizes.stdout.count("container image (10 GB limit") == 3, sizes.stdout
    probe = (
        "import importlib.util as u, json, pathlib, lokki_sam, lokki_sam.runtime;"
        "root = pathlib.Path(lokki_sam.__file__).parent;"
        "print(json.dumps({'version': lokki_sam.__version__, 'where': str(root),"
        " 'files': sorted(str(p.relative_to(root.parent)) for p in root.rglob('*.py')),"
        " 'importable': {m: u.find_spec(m) is not None for m in ('click', 'rich', 'ruamel', 'yaml')}}))"
    )
    import docker

    client = docker.DockerClient(base_url=sam_env["DOCKER_HOST"], timeout=120)
    try:
        began = time.perf_counter()
        out = client.containers.run(
            image, ["-c", probe], entrypoint=f"python{PYTHON}", network_mode="none", remove=True
        )
        TIMINGS["docker run of the built image (a probe)"] = time.perf_counter() - began
        size = client.images.get(image).attrs["Size"]
        base = client.images.get(f"public.ecr.aws/lambda/python:{PYTHON}-{ARCH}").attrs["Size"]
    finally:
        client.close()
    found = json.loads(out)
    from lokki_sam import __version__

    assert found["version"] == __version__ and found["where"] == "/var/task/lokki_sam"
    assert found["files"] == sorted(runtime_files())  # the runtime, and nothing of the command line
    assert not [name for name in CLI_ONLY if f"lokki_sam/{name}" in found["files"]]
    assert found["importable"] == {"click": False, "rich": False, "ruamel": False, "yaml": False}
    assert 0 < size - base < 5_000_000  # the base image plus the runtime and the flow code
    added = f"{(size - base) / 1e3:.0f} kB"
    FIGURES["image size"] = f"{size / 1e6:.1f} MB (the base stand-in {base / 1e6:.1f} MB + {added})"


# ------------------------------------------------------------------------ zip and image in one flow


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def test_a_flow_mixing_zip_and_image_steps(
    sam_env: dict[str, str], moto_s3: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = tmp_path_factory.mktemp("mixed")
    (app / "src").mkdir()
    shutil.copy(PACKAGING_FILE, app / "src" / "packaging.py")
    (app / "lokki.toml").write_text(f'architecture = "{ARCH}"\nruntime = "python{PYTHON}"\n')
    env = dict(sam_env)
    done = subprocess.run(
        [LOKKI_SAM, "generate", "src/packaging.py"], cwd=app, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Docker" not in done.stderr  # generate's check found the daemon (DOCKER_HOST) answering
    began = time.perf_counter()
    build = run_sam(["build"], cwd=app, env=env)
    TIMINGS["mixed: sam build (2 flows: 3 zip functions, 4 image functions sharing 1 image)"] = (
        time.perf_counter() - began
    )
    output = build.stdout + build.stderr
    assert build.returncode == 0, output
    assert len(re.findall(r"^Building image for \w+ function$", output, re.MULTILINE)) == 1, output
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
    s3.create_bucket(Bucket=events.LOCAL_BUCKET)
    env_vars = json.loads((app / "events" / events.ENV_FILE).read_text())
    for variables in env_vars.values():
        variables[names.ENV_ENDPOINT_URL] = moto_s3
    from lokki_sam.loader import load_flows

    forget_module("packaging")
    with restored_sys_path():
        flows = {f.name: f.graph for f in load_flows(str(app / "src" / "packaging.py"))}
    graph = flows["mixed"]
    kinds = []
    for node in graph.nodes:
        fid = names.function_id("mixed", node.step.name)
        kinds.append("image" if node.step.options.package == "image" else "zip")
        event = json.loads((app / "events" / "mixed" / f"{node.id}.json").read_text())
        result = sam_local_invoke(fid, cwd=app, env=env, event=event, env_vars={fid: env_vars[fid]})
        TIMINGS[f"mixed: sam local invoke {node.id} ({kinds[-1]})"] = result.seconds
        assert result.payload is not None, result.proc.stdout + result.proc.stderr[-3000:]
        assert result.error_type is None, result.payload
    assert kinds == ["zip", "image", "image", "zip"]
    store = S3Store(events.LOCAL_BUCKET, names.flow_prefix(events.LOCAL_STACK, "mixed"), s3)
    stored = read_result(RunContext(graph, store, events.SAMPLE_RUN_ID, {}))
    assert stored == local_result("src/packaging.py:mixed", app, env) == "4 SQUARES, SUM 30"
    forget_module("packaging")
