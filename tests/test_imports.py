"""Imports run one way and every module stands alone.

- every module of lokki_sam imports on its own in a fresh interpreter (no hidden cycles that
  only an import order elsewhere happens to avoid);
- every command's `--help` works with its module imported first (click's advice for lazily
  loaded commands);
- the Lambda runtime path imports with the standard library and boto3 alone: click, rich and
  the YAML libraries are blocked, and a flow still runs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lokki_sam.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "lokki_sam"
RUNTIME_MODULES = (
    "lokki_sam",
    "lokki_sam.runtime",
    "lokki_sam.execution",
    "lokki_sam.store",
    "lokki_sam.serialization",
    "lokki_sam.layout",
    "lokki_sam.graph",
    "lokki_sam.params",
    "lokki_sam.protocol",
    "lokki_sam.names",
    "lokki_sam.local",
    "lokki_sam.testing",
)
CLI_ONLY = ("click", "rich", "yaml", "ruamel", "packaging")  # packaging: requirements are parsed by generate
LOCALSTACK_PLUGIN = "lokki_sam.emulator.localstack_executor"
LOCALSTACK_BATCH = "lokki_sam.emulator.localstack_batch"


def all_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_module_imports_alone() -> None:
    modules = all_modules()
    assert "lokki_sam.cli.invoke" in modules and "lokki_sam.cloud.invoke" in modules
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda m: (m, python(f"import {m}")), modules))
    failed = {m: r.stderr.strip().splitlines()[-1] for m, r in results if r.returncode != 0}
    # The LocalStack executor plugin runs inside LocalStack's own venv (tests/test_emulator_parts.py
    # imports it there); here only its lack of LocalStack may stop it.
    inside_localstack = {
        m: err
        for m, err in failed.items()
        if m.startswith((LOCALSTACK_PLUGIN, LOCALSTACK_BATCH)) and "No module named 'localstack'" in err
    }
    assert set(inside_localstack) == {f"{LOCALSTACK_PLUGIN}.{m}" for m in ("executor", "plugin", "map_concurrency")} | {
        f"{LOCALSTACK_BATCH}.{m}" for m in ("jobs", "provider", "resources")
    }
    failed = {m: err for m, err in failed.items() if m not in inside_localstack}
    assert not failed, failed


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_of_every_command_with_its_module_imported_first(name: str) -> None:
    done = python(
        f"import {COMMANDS[name]}; import sys; from lokki_sam.cli import main; "
        f"sys.argv = ['lokki-sam', '{name}', '--help']; main()"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: lokki-sam {name}")


def test_logic_modules_import_no_click() -> None:
    """Only lokki_sam.cli.* may import click: the logic below it is plain Python."""
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "cli" not in path.relative_to(PACKAGE).parts[:1] and "import click" in path.read_text()
    ]
    assert not offenders


def test_runtime_path_needs_neither_click_nor_rich_nor_yaml(tmp_path: Path) -> None:
    blocker = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {CLI_ONLY!r}:
                    raise ImportError(f"{{name}} is blocked: the runtime path must not need it")
        sys.meta_path.insert(0, Block())
        """
    )
    flow_module = tmp_path / "tiny_flow.py"
    flow_module.write_text(
        "from lokki_sam import flow, step\n"
        "@step\ndef nums(n: int = 3) -> list[int]:\n    return list(range(n))\n"
        # A step's requirements are checked where it is defined, in a Lambda too, without `packaging`
        # (a local run checks them against what is installed, with `packaging`: the CLI's, not this path).
        '@step(requirements=[\'numpy<2.3; python_version < "3.12" and sys_platform == "linux"\'])\n'
        "def sq(x: int) -> int:\n    return x * x\n"
        "@step\ndef tot(xs: list[int]) -> int:\n    return sum(xs)\n"
        "@flow\ndef tiny(n: int = 3):\n    return nums(n=n).map(sq).agg(tot)\n"
    )
    code = blocker + textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        for name in {RUNTIME_MODULES!r}:
            __import__(name)
        import tiny_flow
        from lokki_sam import __version__, execution, runtime
        from lokki_sam.execution import RunContext
        from lokki_sam.protocol import PROTOCOL_VERSION
        from lokki_sam.store import LocalStore

        graph, store = tiny_flow.tiny.graph, LocalStore({str(tmp_path / "store")!r})
        env = {{"LOKKI_MODULE": "tiny_flow", "LOKKI_FLOW": "tiny", "LOKKI_BUCKET": "b", "LOKKI_PREFIX": "p",
               "LOKKI_VERSION": __version__}}
        def handle(event, step):
            node_fp = graph.fingerprint(event["node"])
            stamp = {{"protocol": PROTOCOL_VERSION, "flow": graph.fingerprints.flow, "step": node_fp}}
            runtime.handle({{**event, "lokki": stamp}}, {{**env, "LOKKI_STEP": step}}, store=store)
        context = {{"run_id": "r1", "params": {{"n": 4}}}}
        handle({{"node": "nums", **context}}, "nums")
        handle({{"node": "sq", "map": "map-sq", "input": {{"AllItems": True, **context}}}}, "sq")
        handle({{"node": "tot", **context}}, "tot")
        print(execution.read_result(RunContext(graph, store, "r1", {{"n": 4}})))
        assert not [m for m in sys.modules if m.split(".")[0] in {CLI_ONLY!r}]
        """
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "14"


def test_no_package_defines_a_name_its_submodule_would_replace() -> None:
    """Importing `pkg.name` sets the attribute `pkg.name` to the submodule: a function of that name
    in `pkg/__init__.py` works once, then is the module (`main(flow)` failed on its second call)."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, types
        import lokki_sam
        clashes = []
        packages = [lokki_sam] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(lokki_sam.__path__, "lokki_sam.")
            if info.ispkg and "localstack_executor" not in info.name
        ]
        for package in packages:
            for info in pkgutil.iter_modules(package.__path__):
                value = package.__dict__.get(info.name)
                if value is not None and not isinstance(value, types.ModuleType):
                    clashes.append(f"{package.__name__}.{info.name}")
        print(clashes)
        """
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_main_of_a_flow_runs_twice_in_one_process(tmp_path: Path) -> None:
    module = tmp_path / "twice_flow.py"
    module.write_text(
        "from lokki_sam import flow, step\n"
        "@step\ndef one(n: int = 2) -> int:\n    return n + 1\n"
        "@flow\ndef twice(n: int = 2):\n    return one(n=n)\n"
    )
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import lokki_sam, twice_flow
        for n in ("3", "4"):
            sys.argv = ["twice_flow.py", "run", "-q", "--store", {str(tmp_path / "runs")!r}, "--n", n]
            try:
                lokki_sam.main(twice_flow.twice)
            except SystemExit as exit:
                assert exit.code in (0, None), exit.code
        """
    )
    done = python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "5"]
