"""docs/template.md's multi-module layout (`flows = ["src/etl/flow.py", "src/reports/"]`, two files
named flow.py, namespace packages under CodeUri `src`) runs in the Lambda: each function imports the
module its generated LOKKI_MODULE names, fresh, from CodeUri alone (as /var/task), and moto's Step
Functions interpreter running the real handler gives what `lokki-sam run` gives."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lokki_sam import execution, names, run_flow
from lokki_sam.execution import RunContext
from lokki_sam.loader import load_flow
from lokki_sam.params import resolve_params
from tests.support.moto_sfn import moto_cloud
from tests.support.sam import forget_module, generate_in_process, load
from tests.test_generate_safety import docs_layout, function_variables

pytestmark = [pytest.mark.emulator, pytest.mark.usefixtures("unload_modules")]


@pytest.fixture
def lambda_path(tmp_path: Path) -> Iterator[Path]:
    """sys.path as a function sees it: CodeUri (/var/task) first; restored afterwards."""
    saved = list(sys.path)
    sys.path.insert(0, str(tmp_path / "src"))
    yield tmp_path / "src"
    sys.path[:] = saved


def test_both_flow_py_modules_run_in_the_lambda_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lambda_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    docs_layout(tmp_path)
    code, _, err = generate_in_process("flow")
    assert code == 0, err
    template = load((tmp_path / "template.yaml").read_text())
    cases = {
        "etl": ("src/etl/flow.py", {"n": 4}, 12),
        "reports": ("src/reports/flow.py", {"n": 2}, "REPORT 0; REPORT 1"),
    }
    modules = {
        "etl": function_variables(template, "etl", "double")[names.ENV_MODULE],
        "reports": function_variables(template, "reports", "shout")[names.ENV_MODULE],
    }
    assert modules == {"etl": "etl.flow", "reports": "reports.flow"}
    # `lokki-sam run` of each file alone (both imported as `flow`, from their own folders).
    runs = tmp_path / "runs"
    locals_ = {f: run_flow(load_flow(ref), params, store=runs).result for f, (ref, params, _) in cases.items()}
    graphs = {flow: load_flow(f"{ref}:{flow}").graph for flow, (ref, _, _) in cases.items()}
    for name in ("etl", "reports", "flow"):  # the functions import their modules themselves
        forget_module(name)
    with moto_cloud() as cloud:
        for flow, (_, params, expected) in cases.items():
            graph = graphs[flow]
            cloud.deploy(graph, module=modules[flow])
            ex = cloud.execute(graph, params)
            assert ex.status == "SUCCEEDED", f"{ex.error}: {ex.cause}"
            resolved = resolve_params(graph.params, params, where="test")
            result = execution.read_result(RunContext(graph, cloud.store(graph), ex.run_id, resolved))
            assert result == locals_[flow] == expected
            imported = sys.modules[modules[flow]]
            assert imported.__file__ == str(lambda_path / flow / "flow.py")
    assert cloud.counters.by_function.keys() >= {"etl-double", "reports-shout"}
