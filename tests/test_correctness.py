"""No silent wrong results: each case here gave a wrong result with exit 0 (or a traceback for a
user error) before flow fingerprints, the collision-free layout and the checks that came with them.

Local runs go through the real `lokki-sam` command in subprocesses, so an edited flow file is
imported afresh, as a user's next command would.
"""

from __future__ import annotations

import json
import math
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import flow, step
from lokki_sam.errors import FlowDefinitionError
from tests.conftest import LOKKI_SAM, lokki_env
from tests.support.signals import SIGNAL_MARKER

Lokki = Callable[..., subprocess.CompletedProcess[str]]

COUNTING = """
from pathlib import Path
from lokki_sam import flow, step

def called(name):
    with open(Path(__file__).parent / "calls.log", "a") as log:
        log.write(name + "\\n")
"""


def calls(root: Path) -> list[str]:
    log = root / "calls.log"
    text = log.read_text() if log.exists() else ""
    log.unlink(missing_ok=True)
    return sorted(text.split())


def write(path: Path, source: str) -> Path:
    path.write_text(COUNTING + textwrap.dedent(source))
    return path


def run_id_of(done: subprocess.CompletedProcess[str]) -> str:
    return str(json.loads(done.stdout)["run_id"])


# ================================================================= resume after the flow changed

V1 = """
@step
def nums(n: int = 4) -> list[int]:
    called("nums")
    return list(range(n))

@step
def square(x: int) -> int:
    called(f"square-{x}")
    return x * x

@step
def total(xs: list[int]) -> int:
    called("total")
    if (Path(__file__).parent / "fail").exists():
        raise RuntimeError("not yet")
    return sum(xs)

@flow
def edited(n: int = 4):
    return nums(n=n).map(square).agg(total)
"""


SHIFT = """@step
def shift(xs: list[int]) -> list[int]:
    called("shift")
    return [x + 10 for x in xs]

@flow"""


def test_resume_after_inserting_a_step_before_the_map_gives_what_a_fresh_run_gives(
    tmp_path: Path, lokki: Lokki
) -> None:
    path = write(tmp_path / "edited.py", V1)
    (tmp_path / "fail").touch()
    failed = lokki("run", str(path), "--store", "runs", "--json")
    assert failed.returncode == 1
    run_id = json.loads(failed.stderr.splitlines()[0])["run_id"]
    calls(tmp_path)
    (tmp_path / "fail").unlink()
    # Insert a step between the source and the map: every item's input changes.
    write(
        path,
        V1.replace(
            "return nums(n=n).map(square)",
            "return nums(n=n).next(shift).map(square)",
        ).replace(
            "@flow",
            SHIFT,
        ),
    )
    resumed = lokki("run", str(path), "--store", "runs", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    fresh = lokki("run", str(path), "--store", "fresh")
    assert resumed.stdout == fresh.stdout == f"{sum((x + 10) ** 2 for x in range(4))}\n"
    assert "shift: recomputing (it has no output yet)" in resumed.stderr
    # `nums` now feeds a step, not the map: its output is stored differently, so it changed too.
    assert "nums: recomputing (its code or its place in the flow changed)" in resumed.stderr
    assert "map-square: recomputing all 4 item(s): 4 have outputs of another input" in resumed.stderr
    assert calls(tmp_path) == sorted(["nums", "shift", *(f"square-{x + 10}" for x in range(4)), "total"] * 2)


def test_resume_after_editing_a_step_recomputes_it_and_what_follows_only(tmp_path: Path, lokki: Lokki) -> None:
    path = write(tmp_path / "edited.py", V1)
    first = lokki("run", str(path), "--store", "runs", "--json")
    assert first.returncode == 0, first.stderr
    run_id = run_id_of(first)
    calls(tmp_path)
    write(path, V1.replace("return x * x", "return x * x * x"))  # edit the map step's code
    again = lokki("run", str(path), "--store", "runs", "--resume", run_id)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{sum(x**3 for x in range(4))}\n"  # never the stale squares
    assert "map-square: recomputing all 4 item(s): 4 have outputs of other code (step 'square' changed)" in again.stderr
    assert "total: recomputing (its input from 'map-square' changed)" in again.stderr  # its upstream, not its code
    assert f"nums: reused from run {run_id}" in again.stderr
    assert calls(tmp_path) == sorted([f"square-{x}" for x in range(4)] + ["total"])  # `nums` reused
    unchanged = lokki("run", str(path), "--store", "runs", "--resume", run_id, "-q")
    assert unchanged.stdout == again.stdout and calls(tmp_path) == []  # nothing changed: nothing runs


def test_resume_after_a_new_required_parameter_is_refused_saying_what_changed(tmp_path: Path, lokki: Lokki) -> None:
    path = write(tmp_path / "edited.py", V1)
    run_id = run_id_of(lokki("run", str(path), "--store", "runs", "--json"))
    write(
        path,
        V1.replace("def edited(n: int = 4):", "def edited(bonus: int, n: int = 4):").replace(
            "def total(xs: list[int]) -> int:", "def total(xs: list[int], bonus: int) -> int:"
        ),
    )
    refused = lokki("run", str(path), "--store", "runs", "--resume", run_id)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the flow's parameters changed since the run started" in refused.stderr
    assert "missing required parameter 'bonus'" in refused.stderr and "start a new run" in refused.stderr


PROJECT_FLOW = """
@step
def nums() -> list[int]:
    called("nums")
    return [1, 2, 3]

@step
def weigh(x: int) -> int:
    called(f"weigh-{x}")
    return {use}

@step
def total(xs: list[int]) -> int:
    called("total")
    return sum(xs)

@flow
def project():
    return nums().map(weigh).agg(total)
"""


@pytest.mark.parametrize(
    ("imports", "use", "edited_file", "before", "after"),
    [
        ("WEIGHTS = {1: 10, 2: 20, 3: 30}", "WEIGHTS[x]", "project.py", "2: 20", "2: 200"),
        ("LABELS = [('a', 1), ('b', 2)]\nN = len(LABELS)", "x * LABELS[-1][1]", "project.py", "2)]", "5)]"),
        ("from helpers import scale", "scale(x)", "helpers.py", "x * FACTOR", "x * FACTOR + 1"),
        ("import helpers", "helpers.scale(x)", "helpers.py", "x * FACTOR", "x * FACTOR + 1"),
        ("from pkg.calc import scale", "scale(x)", "pkg/calc.py", "x * 2", "x * 7"),
        ("import helpers", "helpers.scale(x)", "factors.py", "FACTOR = 2", "FACTOR = 7"),
        ("from helpers import scale", "scale(x)", "factors.py", "FACTOR = 2", "FACTOR = 7"),
        ("from helpers import cached", "cached(x)", "helpers.py", "x * FACTOR", "x * FACTOR + 1"),
        ("import pkg.calc", "pkg.calc.scale(x)", "pkg/calc.py", "x * 2", "x * 7"),
        ("SETTINGS = {}\nSETTINGS['k'] = 2", "x * SETTINGS['k']", "project.py", "['k'] = 2", "['k'] = 5"),
        ("BASE = 2\nDERIVED = [BASE * i for i in range(4)]", "DERIVED[x]", "project.py", "BASE = 2", "BASE = 3"),
        ("def make(k):\n    return lambda x: x * k\nby_two = make(2)", "by_two(x)", "project.py", "make(2)", "make(5)"),
    ],
    ids=[
        *("dict-constant", "list-constant", "from-module", "module", "package", "module-imports", "from-imports"),
        *("decorated-function", "package-by-name", "changed-in-place", "derived-constant", "closure"),
    ],
)
def test_resume_after_editing_project_code_outside_the_step_recomputes_what_uses_it(
    tmp_path: Path, lokki: Lokki, imports: str, use: str, edited_file: str, before: str, after: str
) -> None:
    """A step's results depend on more than its own lines: the constants it reads (containers
    too) and the project's other modules it calls, however imported. Editing any of them between
    runs makes a resume recompute, so it gives what a fresh run gives."""
    (tmp_path / "factors.py").write_text("FACTOR = 2\n")
    (tmp_path / "helpers.py").write_text(
        "import functools\nfrom factors import FACTOR\n\ndef scale(x):\n    return x * FACTOR\n\n"
        "@functools.lru_cache\ndef cached(x):\n    return x * FACTOR\n"
    )
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "calc.py").write_text("def scale(x):\n    return x * 2\n")
    path = tmp_path / "project.py"
    path.write_text(COUNTING + imports + "\n" + textwrap.dedent(PROJECT_FLOW).replace("{use}", use))
    check_resume_after_edit(lokki, path, tmp_path / edited_file, before, after)


def check_resume_after_edit(lokki: Lokki, path: Path, edited: Path, before: str, after: str) -> None:
    """Run the flow in `path` (`nums`, a map of `weigh` over 1, 2, 3, `total`), replace `before`
    by `after` in `edited`, resume the run: it gives what a fresh run of the edited flow gives
    (not the first run's result), reusing `nums` and recomputing the items and the total."""
    first = lokki("run", str(path), "--store", "runs", "--json")
    assert first.returncode == 0, first.stderr
    calls(path.parent)
    assert before in edited.read_text()
    edited.write_text(edited.read_text().replace(before, after))
    resumed = lokki("run", str(path), "--store", "runs", "--resume", run_id_of(first), "--json")
    fresh = lokki("run", str(path), "--store", "fresh", "--json")
    assert resumed.returncode == fresh.returncode == 0, resumed.stderr + fresh.stderr
    assert json.loads(resumed.stdout)["result"] == json.loads(fresh.stdout)["result"]
    assert json.loads(resumed.stdout)["result"] != json.loads(first.stdout)["result"]
    assert calls(path.parent) == sorted(["weigh-1", "weigh-2", "weigh-3", "total"] * 2 + ["nums"])


def test_resume_after_changing_a_step_factorys_argument_recomputes_the_step(tmp_path: Path, lokki: Lokki) -> None:
    """A step made by a factory (`triple = make(3)`) has the same source for every argument: the
    values in its closure are part of its code."""
    source = """
    def make(k):
        @step
        def scale(x: int) -> int:
            called(f"scale-{x}")
            return x * k
        return scale

    @step
    def nums() -> list[int]:
        return [1, 2]

    triple = make(3)

    @flow
    def factory():
        return nums().map(triple)
    """
    path = write(tmp_path / "factory.py", source)
    first = lokki("run", str(path), "--store", "runs", "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["result"] == [3, 6], first.stderr
    write(path, source.replace("make(3)", "make(4)"))
    resumed = lokki("run", str(path), "--store", "runs", "--resume", run_id_of(first), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["result"] == [4, 8]  # never the stale [3, 6]


def test_a_constant_read_from_the_environment_gives_one_fingerprint_in_every_environment(tmp_path: Path) -> None:
    """`TABLE = os.environ.get("TABLE", "dev")` has one value where `generate` runs and another in
    the Lambda (its Environment). The statement is the flow's code, its value is not: the same
    fingerprint in both places (else every deployed run would be refused), another after an edit."""
    path = tmp_path / "envflow.py"
    path.write_text(
        "import os\nfrom lokki_sam import flow, step\n\nTABLE = os.environ.get('TABLE', 'dev')\n"
        "HOME_DIR = os.path.expanduser('~')\n\n@step\ndef which() -> str:\n    return TABLE + HOME_DIR\n\n"
        "@flow\ndef envflow():\n    return which()\n"
    )
    probe = "from lokki_sam.loader import load_flows; print(load_flows('envflow.py')[0].graph.fingerprints.flow)"

    def fingerprint(**env: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe], cwd=tmp_path, env=lokki_env(tmp_path, **env), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    local = fingerprint(HOME=str(tmp_path))
    assert fingerprint(TABLE="prod-table", HOME="/home/sbx_user1051") == local
    path.write_text(path.read_text().replace("'dev'", "'development'"))
    assert fingerprint(HOME=str(tmp_path)) != local


def test_libraries_are_not_project_code_wherever_they_are_installed(tmp_path: Path) -> None:
    """The generator sees a library in site-packages; the Lambda sees it next to the code, where
    `sam build` installed it with its .dist-info. Both must give the flow one fingerprint, and an
    installed library is not hashed as the user's code in either place."""
    import importlib

    from lokki_sam.loader import load_flows

    flow_source = (
        "import tinylib\nfrom lokki_sam import flow, step\n\n@step\ndef one() -> int:\n"
        "    return tinylib.VALUE\n\n@flow\ndef uses_lib():\n    return one()\n"
    )
    fingerprints = []
    for layout in ("elsewhere", "next-to-the-code"):
        code = tmp_path / layout / "code"
        lib_home = code if layout == "next-to-the-code" else tmp_path / layout / "site"
        (lib_home / "tinylib").mkdir(parents=True)
        (lib_home / "tinylib" / "__init__.py").write_text(f"VALUE = 1\nWHERE = {layout!r}\n")
        meta = lib_home / "tinylib-1.0.dist-info"
        meta.mkdir()
        (meta / "RECORD").write_text("tinylib/__init__.py,,\ntinylib-1.0.dist-info/RECORD,,\n")
        code.mkdir(exist_ok=True)
        (code / "uses_lib.py").write_text(flow_source)
        sys.path.insert(0, str(lib_home))
        try:
            for name in ("tinylib", "uses_lib"):
                sys.modules.pop(name, None)
            importlib.invalidate_caches()
            (found,) = load_flows(str(code / "uses_lib.py"))
            fingerprints.append(found.graph.fingerprints.flow)
        finally:
            sys.path.remove(str(lib_home))
            for name in ("tinylib", "uses_lib"):
                sys.modules.pop(name, None)
    assert fingerprints[0] == fingerprints[1]


def test_a_step_reading_a_module_constant_or_helper_changes_when_they_do(write_module: Any) -> None:
    import importlib

    from lokki_sam.fingerprint import code_fingerprint

    path = write_module(
        "consts", "FACTOR = 2\ndef helper(x):\n    return x + 1\ndef scaled(x):\n    return helper(x) * FACTOR\n"
    )
    sys.path.insert(0, str(path.parent))
    try:
        module = importlib.import_module("consts")
        first = code_fingerprint(module.scaled)
        path.write_text(path.read_text().replace("FACTOR = 2", "FACTOR = 3"))  # a constant the step reads
        module = importlib.reload(module)
        by_constant = code_fingerprint(module.scaled)
        path.write_text(path.read_text().replace("x + 1", "x + 2"))  # so is a same-module helper it calls
        module = importlib.reload(module)
        by_helper = code_fingerprint(module.scaled)
    finally:
        sys.path.pop(0)
        sys.modules.pop("consts", None)
    assert len({first, by_constant, by_helper}) == 3


# ====================================================================== the deployed flow's identity


def test_the_runtime_refuses_a_payload_from_another_version_of_the_flow() -> None:
    from lokki_sam.protocol import PROTOCOL_VERSION, Stamp
    from lokki_sam.runtime import FlowMismatch, check_stamp

    graph = runtime_flow.graph
    check_stamp(graph, Stamp(PROTOCOL_VERSION, graph.fingerprints.flow, None))  # the matching one passes
    with pytest.raises(FlowMismatch, match=r"generated from another version of flow 'runtime_flow'"):
        check_stamp(graph, Stamp(PROTOCOL_VERSION, "0123456789abcdef", None))
    with pytest.raises(
        FlowMismatch,
        match=rf"sends lokki-sam protocol 1; this function's lokki-sam .* speaks protocol {PROTOCOL_VERSION}",
    ):
        check_stamp(graph, Stamp(1, graph.fingerprints.flow, None))
    with pytest.raises(FlowMismatch, match=r"carries no 'lokki' stamp"):
        check_stamp(graph, Stamp(None, None, None))


@step
def rt_source(n: int = 2) -> list[int]:
    return list(range(n))


@step
def rt_total(xs: list[int]) -> int:
    return sum(xs)


@flow
def runtime_flow(n: int = 2):
    return rt_source(n=n).next(rt_total)


# ============================================================ flow parameters used in expressions


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ('return fetch(url=f"https://x/{city}")', "a formatted string"),
        ("return fetch(url=city + '/x')", "an expression (+)"),
        ("return fetch(url=city * 2)", "an expression (*)"),
        ("return fetch(url=city.upper())", "an attribute access (.upper)"),
        ("return fetch(url=str(city))", "str()"),
        ("return fetch(url=city[0])", "indexing"),
        ("return fetch(url=city) if city == 'x' else fetch(url='y')", "a comparison (==)"),
        ("return fetch(url=Holder(city))", "inside a Holder"),
    ],
)
def test_a_parameter_used_in_an_expression_is_refused_naming_it(body: str, what: str) -> None:
    namespace: dict[str, Any] = {"flow": flow, "fetch": fetch, "Holder": Holder}
    source = f"def expressive(city: str = 'x'):\n    {body}\n"
    exec(source, namespace)
    with pytest.raises(FlowDefinitionError) as caught:
        flow(namespace["expressive"])
    text = caught.value.render()
    assert "flow 'expressive'" in text and "'city'" in text and what in text, text
    assert "hint:" in text


class Holder:
    def __init__(self, value: Any) -> None:
        self.value = value


@step
def fetch(url: Any) -> str:
    return str(url)


# ================================================================================= the run lock

SLOW = """
@step
def items(n: int = 6) -> list[int]:
    return list(range(n))

@step
def slow(x: int) -> int:
    called(f"slow-{x}")
    wait_for_signal()  # while `hold` exists: until the process has a signal (tests/support/signals.py)
    return x

@step
def total(xs: list[int]) -> int:
    return sum(xs)

@flow
def locked(n: int = 6):
    return items(n=n).map(slow, concurrency=1).agg(total)
"""


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_run_in_use_is_refused_and_the_lock_of_a_killed_process_is_taken_over(
    tmp_path: Path, lokki: Lokki, executor: str
) -> None:
    """With processes, the map's (forked) workers hold no copy of the lock: it ends with the runner."""
    path = write_held(tmp_path / "locked.py")
    first = start_held_run(path, "--json", "--executor", executor)
    try:
        run_id = _wait_for_run(tmp_path / "runs")
        _wait_for(lambda: (tmp_path / "calls.log").exists())
        second = lokki("run", str(path), "--store", "runs", "--resume", run_id)
        assert second.returncode == 2, second.stderr
        assert f"run {run_id} is in use by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock
        first.communicate(timeout=30)
    (tmp_path / "hold").unlink()
    taken_over = lokki("run", str(path), "--store", "runs", "--resume", run_id, "-q")
    assert taken_over.returncode == 0, taken_over.stderr
    assert taken_over.stdout == f"{sum(range(6))}\n"


def write_held(path: Path) -> Path:
    """A SLOW flow whose items wait while `hold` exists, until the run receives a signal."""
    path.write_text(SIGNAL_MARKER + COUNTING + textwrap.dedent(SLOW))
    return path


def start_held_run(path: Path, *flags: str) -> subprocess.Popen[str]:
    """`lokki-sam run` of a SLOW flow in the background, its items held (see write_held)."""
    (path.parent / "hold").touch()
    return subprocess.Popen(
        [LOKKI_SAM, "run", str(path), "--store", "runs", *flags],
        cwd=path.parent,
        env=lokki_env(path.parent),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_run(runs: Path) -> str:
    _wait_for(lambda: runs.exists() and any(runs.glob("*/run.json")))
    return next(runs.glob("*/run.json")).parent.name


def _wait_for(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ============================================================== steps that leave by sys.exit()

EXITING = """
import sys

class Stop(BaseException):
    pass

@step
def items(n: int = 3) -> list[int]:
    return list(range(n))

@step
def quits(xs: list[int]) -> int:
    sys.exit(0)

@step
def halts(x: int) -> int:
    if x == 1:
        raise Stop("halt")
    return x

@flow
def exits():
    return items().next(quits)

@flow
def halting():
    return items().map(halts)
"""


@pytest.mark.parametrize(
    ("ref", "message"),
    [("exits", "step 'quits' called sys.exit(0)"), ("halting", "step 'halts' raised Stop")],
)
def test_a_step_that_exits_fails_the_run_naming_the_step(tmp_path: Path, lokki: Lokki, ref: str, message: str) -> None:
    path = write(tmp_path / "exiting.py", EXITING)
    done = lokki("run", f"{path}:{ref}", "--store", "runs")
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    (record,) = (tmp_path / "runs").glob("*/run.json")
    assert json.loads(record.read_text())["status"] == "failed"


# ======================================================================== a full disk, a file limit

BIG = """
from lokki_sam import Retry

@step(retry=Retry(retries=3, interval=0))
def big() -> bytes:
    called("big")
    return os.urandom(1 << 20)

@step
def size(data: bytes) -> int:
    return len(data)

@flow
def heavy():
    return big().next(size)
"""


def _limited(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes beyond it fail with EFBIG

    return apply


def test_a_store_that_cannot_write_is_a_lokki_sam_error_not_retried_and_never_torn(tmp_path: Path) -> None:
    path = write(tmp_path / "heavy.py", "import os\n" + BIG)
    done = subprocess.run(
        [LOKKI_SAM, "run", str(path), "--store", "runs"],
        cwd=tmp_path,
        env=lokki_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited(256 * 1024),  # a real fault: the kernel refuses the write
    )
    assert done.returncode == 2, done.stderr
    assert "cannot write the artifact: File too large" in done.stderr and "step=big" in done.stderr
    assert "Traceback" not in done.stderr and "retry" not in done.stderr.lower()
    assert calls(tmp_path) == ["big"]  # a store failure is not the step's: never retried as one
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert not [p for p in written if p.name.startswith(".tmp-") or p.suffix == ".pkl"]  # nothing torn


def test_generate_is_all_or_nothing_on_a_full_disk(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    flow_file = app / "src" / "birds.py"
    flow_file.write_text((Path(__file__).parents[1] / "examples" / "birds.py").read_text())
    (app / "template.yaml").write_text("# mine\nTransform: AWS::Serverless-2016-10-31\nResources: {}\n")
    before = {p: p.read_bytes() for p in app.rglob("*") if p.is_file()}
    done = subprocess.run(
        [LOKKI_SAM, "generate", "src/birds.py"],
        cwd=app,
        env=lokki_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited(4096),  # the template no longer fits; the small files would
    )
    assert done.returncode == 2, done.stderr
    assert "nothing was changed" in done.stderr and "Traceback" not in done.stderr
    after = {p: p.read_bytes() for p in app.rglob("*") if p.is_file()}
    assert after == before  # no torn template, no half of the files, no temporary files


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (
            lambda app: (app / "template.yaml").mkdir(),
            "template.yaml: is a folder, but lokki-sam generate writes a file",
        ),
        (
            lambda app: (app / "statemachine").write_text("x"),
            "statemachine is a file, but lokki-sam generate writes a folder",
        ),
    ],
)
def test_generate_refuses_paths_of_the_wrong_kind_and_writes_nothing(
    tmp_path: Path, lokki: Lokki, arrange: Callable[[Path], Any], message: str
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "birds.py").write_text((Path(__file__).parents[1] / "examples" / "birds.py").read_text())
    arrange(tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    done = lokki("generate", "src/birds.py")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert sorted(str(p) for p in tmp_path.rglob("*") if "__pycache__" not in p.parts) == [
        p for p in before if "__pycache__" not in p
    ]


# ==================================================================== parameters and run records

VALUES = """
import datetime as dt
from decimal import Decimal

@step
def describe(where: Path = Path("/data"), price: Decimal = Decimal("1.10"), tags: set[str] = {"b", "a"},
             limit: float = float("inf"), when: dt.date = dt.date(2024, 1, 2)) -> str:
    return f"{where!r} {price!r} {sorted(tags)} {limit!r} {when!r}"

@flow
def values(where: Path = Path("/data"), price: Decimal = Decimal("1.10"), tags: set[str] = {"b", "a"},
           limit: float = float("inf"), when: dt.date = dt.date(2024, 1, 2)):
    return describe()
"""


def test_parameters_json_cannot_hold_round_trip_exactly_through_the_run_record(tmp_path: Path, lokki: Lokki) -> None:
    path = write(tmp_path / "values.py", VALUES)
    first = lokki("run", str(path), "--store", "runs", "-p", "limit=nan", "-p", "tags=x,y", "--json")
    assert first.returncode == 0, first.stderr
    run_id = run_id_of(first)
    record_text = (tmp_path / "runs" / run_id / "run.json").read_text()

    def no_constants(name: str) -> Any:
        raise AssertionError(f"run.json holds the non-JSON constant {name}")

    record = json.loads(record_text, parse_constant=no_constants)  # strictly valid JSON
    assert record["params"]["limit"] == {"$float": "nan"} and record["params"]["price"] == {"$decimal": "1.10"}
    again = lokki("run", str(path), "--store", "runs", "--resume", run_id, "-q", "-p", "tags=y,x")
    assert again.returncode == 0, again.stderr  # the same set given again is the same value
    assert again.stdout == json.loads(first.stdout)["result"] + "\n"
    assert "nan" in again.stdout and "Decimal('1.10')" in again.stdout and "PosixPath('/data')" in again.stdout


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("regions=[north", "parameter 'regions' expects list[str]"),
        ("options={bad", "parameter 'options' expects dict"),
    ],
)
def test_malformed_json_for_list_and_dict_parameters_is_an_error(
    tmp_path: Path, lokki: Lokki, param: str, message: str
) -> None:
    path = write(
        tmp_path / "typed.py",
        """
        @step
        def show(regions: list[str] | None = None, options: dict | None = None) -> str:
            return f"{regions} {options}"

        @flow
        def typed(regions: list[str] | None = None, options: dict | None = None):
            return show()
        """,
    )
    done = lokki("run", str(path), "-p", param)
    assert done.returncode == 2 and message in done.stderr and "not valid JSON" in done.stderr


def test_a_non_finite_float_reaches_the_cloud_as_text_it_coerces_identically() -> None:
    from lokki_sam.cloud.invoke import execution_input

    given = execution_input({"limit": "inf", "n": "2"}, {"limit": math.inf, "n": 2})
    assert given == {"limit": "inf", "n": 2}
    json.dumps(given, allow_nan=False)  # valid execution input


# ============================================================================== main(flow) options


@pytest.mark.parametrize("name", ["store", "json", "quiet", "resume", "help", "as_json", "executor"])
def test_main_refuses_a_parameter_named_like_its_own_options(tmp_path: Path, name: str) -> None:
    path = tmp_path / "mainflow.py"
    path.write_text(
        "from lokki_sam import flow, main, step\n"
        f"@step\ndef s({name}: int = 1) -> int:\n    return {name}\n"
        f"@flow\ndef mainflow({name}: int = 1):\n    return s()\n"
        "if __name__ == '__main__':\n    main(mainflow)\n"
    )
    done = subprocess.run([sys.executable, str(path), "run"], capture_output=True, text=True, env=lokki_env(tmp_path))
    assert done.returncode == 2, done.stderr
    assert f"flow parameter '{name}' has the name of one of main()'s own options" in done.stderr
    assert f"lokki-sam run FILE -p {name}=" in done.stderr and "Traceback" not in done.stderr


def test_main_takes_bool_parameters_as_flags(tmp_path: Path) -> None:
    path = tmp_path / "flags.py"
    path.write_text(
        "from lokki_sam import flow, main, step\n"
        "@step\ndef s(include_returns: bool = False) -> str:\n    return str(include_returns)\n"
        "@flow\ndef flags(include_returns: bool = False):\n    return s()\n"
        "if __name__ == '__main__':\n    main(flags)\n"
    )

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(path), "run", "-q", "--store", str(tmp_path / "runs"), *args],
            capture_output=True,
            text=True,
            env=lokki_env(tmp_path),
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert (run(), run("--include-returns"), run("--no-include-returns")) == ("False", "True", "False")


def test_a_broken_flow_run_as_a_script_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text(
        "from lokki_sam import flow, main, step\n"
        "@step\ndef s() -> int:\n    return 1\n"
        "@flow\ndef broken():\n    return s(nope=1)\n"
        "if __name__ == '__main__':\n    main(broken)\n"
    )
    done = subprocess.run([sys.executable, str(path), "run"], capture_output=True, text=True, env=lokki_env(tmp_path))
    assert done.returncode == 2 and "step has no parameter 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


# ==================================================================================== SIGTERM


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_sigterm_saves_finished_work_exits_143_and_names_the_resume_command(
    tmp_path: Path, lokki: Lokki, executor: str
) -> None:
    path = write_held(tmp_path / "locked.py")
    proc = start_held_run(path, "-q", "--executor", executor)
    run_id = _wait_for_run(tmp_path / "runs")
    _wait_for(lambda: (tmp_path / "calls.log").exists())  # an item is in flight, held
    proc.send_signal(signal.SIGTERM)  # the held item finishes once the run has the signal
    _, err = proc.communicate(timeout=120)
    assert (tmp_path / "signalled").exists()
    (tmp_path / "hold").unlink()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); finished work is saved" in err and f"--resume {run_id}" in err
    assert "Traceback" not in err
    assert json.loads((tmp_path / "runs" / run_id / "run.json").read_text())["status"] == "interrupted"
    resumed = lokki("run", str(path), "--store", "runs", "--resume", run_id, "-q", "--executor", executor)
    assert resumed.returncode == 0 and resumed.stdout == f"{sum(range(6))}\n"


# ====================================================================== FLOW_REF and other messages


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("birds.py::birds", "has '::'"),
        (".", ". is a folder, not a flow module"),
        ("notes.txt", "notes.txt is not a Python file (.py)"),
        ("folder", "folder is a folder, not a flow module"),
        ("two words", "is neither a .py file nor a module name"),
    ],
)
def test_flow_refs_that_cannot_name_a_flow_say_why(tmp_path: Path, lokki: Lokki, ref: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    done = lokki("run", ref)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert "hint:" in done.stderr


def test_generate_without_a_flow_names_generate_in_its_hint(tmp_path: Path, lokki: Lokki) -> None:
    done = lokki("generate")
    assert done.returncode == 2 and "lokki-sam generate path/to/flow.py" in done.stderr


def test_aws_profile_from_the_environment_that_does_not_exist_is_a_clear_error(tmp_path: Path, lokki: Lokki) -> None:
    done = lokki("invoke", str(Path(__file__).parents[1] / "examples" / "birds.py"), "--stack-name", "s",
                 AWS_PROFILE="nope")  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "AWS profile 'nope' (AWS_PROFILE) not found" in done.stderr and "Traceback" not in done.stderr


# ================================================================================== permissions


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ({"Sid": "Tracing", "Action": "s3:*", "Resource": "*"}, "the Sid 'Tracing' is one lokki-sam uses"),
        ({"Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}, "a permission with a wildcard (action 's3:*')"),
        ({"Action": ["s3:GetObject", "*"], "Resource": "arn:aws:s3:::b/*"}, "action '*'"),
        ({"Action": "sqs:SendMessage", "Resource": "*"}, "resource '*'"),
        ({"Action": "s3:*", "Resource": "*", "WildcardReason": " "}, "WildcardReason must be a sentence"),
    ],
)
def test_user_permissions_with_wildcards_or_generated_sids_are_refused(statement: dict[str, Any], message: str) -> None:
    with pytest.raises(FlowDefinitionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        step(permissions=[statement])(rt_source.func)


def test_a_wildcard_with_a_reason_is_kept_and_the_template_shows_the_authors_reason() -> None:
    from lokki_sam.compile import merge, model, sam

    @step(permissions=[{"Action": "sqs:SendMessage", "Resource": "*", "WildcardReason": "queues are made per run"}])
    def notify(n: int = 1) -> int:
        return n

    @flow
    def notifying():
        return notify()

    text = merge.render_template(sam.render(model.build([notifying.graph], sam.Settings())), None)
    line = next(line for line in text.splitlines() if "wildcard requested by the step's author" in line)
    assert line.strip().startswith("Resource: '*'") and "queues are made per run" in line
    assert "WildcardReason" not in text and "AWS requires" not in line
