"""`generate` never writes a wrong file and never loses one (issue 22): step and module identity,
flow names unique across the template, symlinks, JSON templates, dangling references, one parse."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import names
from lokki_sam.errors import FlowDefinitionError
from lokki_sam.loader import load_flow, load_flows
from tests.support.sam import generate_in_process, load
from tests.test_generate import FLOW_V1, FLOW_V2

pytestmark = pytest.mark.usefixtures("unload_modules")

CALC, CALC_WITHOUT_SQUARE = FLOW_V1, FLOW_V2  # the calc flow of test_generate.py, with and without square


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def generate(*args: str) -> tuple[int, str, str]:
    return generate_in_process("calc", *args)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# =========================================================================== step identity


def test_two_steps_with_one_name_are_refused_naming_both_definitions(project: Path) -> None:
    write(project / "src" / "orders.py", "from lokki_sam import step\n\n@step\ndef clean(data):\n    return data\n")
    write(project / "src" / "users.py", "from lokki_sam import step\n\n\n@step\ndef clean(data):\n    return [data]\n")
    write(
        project / "src" / "both.py",
        """
        from lokki_sam import flow, step
        import orders, users

        @step
        def load() -> list[int]:
            return [1]

        @flow
        def both():
            return load().next(orders.clean).next(users.clean)
        """,
    )
    sys.path.insert(0, str(project / "src"))
    try:
        with pytest.raises(FlowDefinitionError) as caught:
            load_flow("src/both.py")
    finally:
        sys.path.remove(str(project / "src"))
    message = caught.value.render()
    assert "two different steps are named 'clean'" in message
    assert "src/orders.py:3" in message and "src/users.py:4" in message  # each definition, file:line
    assert "def clean_orders" in message and "alias" in message  # how to rename


def test_the_same_step_used_twice_is_one_step_with_two_nodes(project: Path) -> None:
    write(
        project / "src" / "twice.py",
        """
        from lokki_sam import flow, step

        @step
        def start() -> int:
            return 1

        @step
        def inc(x: int) -> int:
            return x + 1

        @flow
        def twice():
            return start().next(inc).next(inc)
        """,
    )
    graph = load_flow("src/twice.py").graph
    assert [n.id for n in graph.nodes] == ["start", "inc", "inc-2"]
    assert [s.name for s in graph.steps] == ["start", "inc"]
    assert graph.nodes[1].step is graph.nodes[2].step


# ========================================================================= module identity

ETL = """
from lokki_sam import flow, step

@step
def extract(n: int = 3) -> list[int]:
    return list(range(n))

@step
def double(x: int) -> int:
    return 2 * x

@step
def add(xs: list[int]) -> int:
    return sum(xs)

@flow
def etl(n: int = 3):
    return extract(n=n).map(double).agg(add)
"""
REPORTS = """
from lokki_sam import flow, step

@step
def titles(n: int = 2) -> list[str]:
    return [f"report {i}" for i in range(n)]

@step
def shout(title: str) -> str:
    return title.upper()

@step
def join(titles: list[str]) -> str:
    return "; ".join(titles)

@flow
def reports(n: int = 2):
    return titles(n=n).map(shout).agg(join)
"""


def docs_layout(root: Path) -> None:
    """docs/template.md's layout: two modules named flow.py, one named by file, one by folder."""
    write(root / "src" / "etl" / "flow.py", ETL)
    write(root / "src" / "reports" / "flow.py", REPORTS)
    write(root / "lokki.toml", 'flows = ["src/etl/flow.py", "src/reports/"]\narchitecture = "x86_64"\n')


def function_variables(template: dict[str, Any], flow: str, step: str) -> dict[str, Any]:
    resource = template["Resources"][names.function_id(flow, step)]
    return dict(resource["Properties"]["Environment"]["Variables"])


def test_two_flow_py_modules_get_their_own_module_names(project: Path) -> None:
    docs_layout(project)
    code, _, err = generate_in_process("flow")
    assert code == 0, err
    template = load((project / "template.yaml").read_text())
    assert function_variables(template, "etl", "double")[names.ENV_MODULE] == "etl.flow"
    assert function_variables(template, "reports", "shout")[names.ENV_MODULE] == "reports.flow"
    recorded = template["Metadata"]["lokki-sam"]["flows"]
    assert recorded == {"etl": "src/etl/flow.py:etl", "reports": "src/reports/flow.py:reports"}
    # Both modules are held at once, each graph by its own module and file.
    etl, reports = sys.modules["etl.flow"], sys.modules["reports.flow"]
    assert etl is not reports
    assert etl.etl.graph.module_object is etl and reports.reports.graph.module_object is reports
    assert etl.etl.graph.source_file == str((project / "src" / "etl" / "flow.py").resolve())
    assert generate_in_process("flow", "--check")[0] == 0  # regenerating from the records: the same


def test_run_of_one_flow_py_alone_still_works(project: Path) -> None:
    from lokki_sam.local import run_flow

    docs_layout(project)
    flow_obj = load_flow("src/etl/flow.py")  # no code root: imported from its folder, as `flow`
    assert flow_obj.graph.source_file == str((project / "src" / "etl" / "flow.py").resolve())
    assert run_flow(flow_obj, {"n": 4}, store=project / ".lokki").result == 12


def test_loading_a_second_flow_py_keeps_the_first_graph_whole(project: Path) -> None:
    docs_layout(project)
    code_root = project / "src"
    (etl,) = load_flows("src/etl/flow.py", code_root)
    (reports,) = load_flows("src/reports/flow.py", code_root)
    assert etl.graph.module == "etl.flow" and reports.graph.module == "reports.flow"
    assert etl.graph.module_object is not reports.graph.module_object
    assert Path(str(reports.graph.source_file)).parent.name == "reports"


# ==================================================================== flow name uniqueness


def test_a_flow_name_recorded_from_another_module_is_refused(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    other = CALC.replace("def total", "def grand_total").replace("agg(total)", "agg(grand_total)")
    write(project / "src" / "other.py", other)
    assert generate("src/calc.py")[0] == 0
    before = snapshot(project)
    code, _, err = generate_in_process("other", "src/other.py")
    assert code == 2
    assert "flow 'calc' is defined in src/other.py:calc" in err and "from src/calc.py:calc" in err
    assert "@flow(name=...)" in err and "--prune" in err
    assert snapshot(project) == before  # nothing written, the recorded flow's function kept
    # --prune is the one way to replace it: the given module wins and says so.
    code, _, err = generate_in_process("other", "src/other.py", "--prune")
    assert code == 0, err
    assert "now comes from src/other.py:calc, no longer from src/calc.py:calc" in err
    template = load((project / "template.yaml").read_text())
    assert names.function_id("calc", "grand_total") in template["Resources"]
    assert names.function_id("calc", "total") not in template["Resources"]


def test_a_flow_that_moved_to_another_module_is_taken_from_there(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    assert generate("src/calc.py")[0] == 0
    (project / "src" / "calc.py").rename(project / "src" / "moved.py")
    code, _, err = generate_in_process("moved", "src/moved.py")
    assert code == 0, err
    assert "now comes from src/moved.py:calc (src/calc.py:calc no longer defines it)" in err
    template = load((project / "template.yaml").read_text())
    assert template["Metadata"]["lokki-sam"]["flows"] == {"calc": "src/moved.py:calc"}


# ============================================================================== symlinks


def test_a_symlinked_template_is_written_through_and_stays_a_link(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    real = project / "infra" / "template.yaml"
    real.parent.mkdir()
    real.write_text("")
    os.symlink(real, project / "template.yaml")
    code, _, err = generate("src/calc.py")
    assert code == 0, err
    assert (project / "template.yaml").is_symlink()
    assert names.function_id("calc", "square") in load(real.read_text())["Resources"]
    write(project / "src" / "calc.py", CALC_WITHOUT_SQUARE)
    assert generate("src/calc.py")[0] == 0
    assert (project / "template.yaml").is_symlink()
    assert names.function_id("calc", "square") not in load(real.read_text())["Resources"]


def test_a_symlink_loop_is_refused_and_nothing_is_written(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    os.symlink(project / "loop-b.yaml", project / "loop-a.yaml")
    os.symlink(project / "loop-a.yaml", project / "loop-b.yaml")
    code, _, err = generate("src/calc.py", "--template", "loop-a.yaml")
    assert code == 2 and "loop-a.yaml" in err
    assert not (project / "statemachine").exists()


# ========================================================================== JSON templates


def test_a_json_template_stays_json_with_the_same_ownership(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    code, _, err = generate("src/calc.py", "--template", "template.json")
    assert code == 0, err
    doc = json.loads((project / "template.json").read_text())
    assert doc["Resources"][names.function_id("calc", "square")]["Metadata"] == {
        **doc["Resources"][names.function_id("calc", "square")]["Metadata"],
        "lokki-sam": "generated",
    }
    doc["Resources"]["MyTopic"] = {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "mine"}}
    doc["Resources"][names.function_id("calc", "total")]["Properties"]["Tags"] = {"team": "data"}
    (project / "template.json").write_text(json.dumps(doc, indent=4))
    write(project / "src" / "calc.py", CALC_WITHOUT_SQUARE)
    code, _, err = generate("src/calc.py", "--template", "template.json")
    assert code == 0, err
    text = (project / "template.json").read_text()
    again = json.loads(text)
    assert again["Resources"]["MyTopic"] == doc["Resources"]["MyTopic"]
    assert again["Resources"][names.function_id("calc", "total")]["Properties"]["Tags"] == {"team": "data"}
    assert names.function_id("calc", "square") not in again["Resources"]
    assert text == json.dumps(again, indent=2, ensure_ascii=False) + "\n"  # lokki-sam's own layout
    assert generate("src/calc.py", "--template", "template.json", "--check")[0] == 0


def test_a_json_template_with_a_duplicate_key_is_refused(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    (project / "template.json").write_text('{"Resources": {}, "Resources": {}}')
    code, _, err = generate("src/calc.py", "--template", "template.json")
    assert code == 2 and "duplicate key 'Resources'" in err and "template.json" in err


# ==================================================================== dangling references


def test_removing_a_step_that_user_entries_refer_to_is_refused(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    assert generate("src/calc.py")[0] == 0
    template = project / "template.yaml"
    text = template.read_text().replace(
        "\nOutputs:\n",
        "\nOutputs:\n"
        "  SquareArn:  # mine\n"
        "    Value: !GetAtt CalcSquareFunction.Arn\n"
        "  SquareText:\n"
        '    Value: !Sub "square is ${CalcSquareFunction}, logs ${CalcSquareFunctionLogGroup.Arn}, ${!Literal}"\n',
        1,
    )
    text = text.replace(
        "\nResources:\n",
        "\nResources:\n  MyTopic:\n    Type: AWS::SNS::Topic\n    DependsOn: [CalcSquareFunction]\n",
        1,
    )
    template.write_text(text)
    write(project / "src" / "calc.py", CALC_WITHOUT_SQUARE)
    before = snapshot(project)
    code, _, err = generate("src/calc.py")
    assert code == 2
    for where in (
        "Outputs.SquareArn.Value (Fn::GetAtt CalcSquareFunction)",
        "Outputs.SquareText.Value (Fn::Sub CalcSquareFunction)",
        "Outputs.SquareText.Value (Fn::Sub CalcSquareFunctionLogGroup)",
        "Resources.MyTopic.DependsOn (DependsOn CalcSquareFunction)",
    ):
        assert where in err, err
    assert "refers to Resources.CalcSquareFunction" in err and "--force" in err and "nothing was written" in err
    assert snapshot(project) == before
    code, out, err = generate("src/calc.py", "--check")  # --check reports them too
    assert code == 2 and "Outputs.SquareArn.Value" in err and "CalcSquareFunction" in out
    code, out, err = generate("src/calc.py", "--force")
    assert code == 0 and "warning:" in err and "Outputs.SquareArn.Value" in err
    written = load(template.read_text())
    assert "CalcSquareFunction" not in written["Resources"] and "SquareArn" in written["Outputs"]


def test_references_that_stay_valid_do_not_stop_generate(project: Path) -> None:
    write(project / "src" / "calc.py", CALC)
    assert generate("src/calc.py")[0] == 0
    template = project / "template.yaml"
    template.write_text(
        template.read_text().replace(
            "\nOutputs:\n", "\nOutputs:\n  TotalArn:\n    Value: !GetAtt CalcTotalFunction.Arn\n", 1
        )
    )
    write(project / "src" / "calc.py", CALC_WITHOUT_SQUARE)
    code, _, err = generate("src/calc.py")
    assert code == 0, err
    assert "TotalArn" in load(template.read_text())["Outputs"]


# ============================================================================ one parse


def test_the_template_is_parsed_at_most_once_and_kept_byte_for_byte_when_up_to_date(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lokki_sam.compile import merge

    parses: list[str] = []
    real_parse = merge.parse
    monkeypatch.setattr(merge, "parse", lambda text, where: parses.append(where) or real_parse(text, where))
    write(project / "src" / "calc.py", CALC)
    assert generate("src/calc.py")[0] == 0 and parses == []  # a fresh template: nothing to parse
    # The run that rendered the text remembered what it holds: regenerating parses nothing.
    code, out, _ = generate("src/calc.py")
    assert code == 0 and "up to date" in out and parses == []
    template = project / "template.yaml"
    # An edit of the user's (with formatting ruamel would not reproduce): parsed once, kept as it is.
    template.write_text(template.read_text() + "# my notes   (odd spacing kept)\n")
    original = template.read_bytes()
    code, out, _ = generate("src/calc.py")
    assert code == 0 and "up to date" in out
    assert parses == ["template.yaml"] and template.read_bytes() == original
    assert generate("src/calc.py", "--check")[0] == 0 and generate("src/calc.py")[0] == 0
    assert parses == ["template.yaml"] and template.read_bytes() == original  # remembered: no more parses
    write(project / "src" / "calc.py", CALC_WITHOUT_SQUARE)  # a change: parsed (comments), once
    code, out, _ = generate("src/calc.py")
    assert code == 0 and "wrote template.yaml" in out and parses == ["template.yaml"] * 2
    assert "# my notes   (odd spacing kept)" in template.read_text()
    assert "CalcSquareFunction:" not in template.read_text()


def test_what_generate_remembers_of_a_text_is_what_parsing_it_gives(project: Path) -> None:
    """The cache's data of a rendered text equals the parsed text (the fact the fast path trusts)."""
    from lokki_sam.compile.memo import TemplateMemo
    from lokki_sam.compile.merge import parse, to_plain

    write(project / "src" / "calc.py", CALC)
    for source in (CALC, CALC_WITHOUT_SQUARE):
        write(project / "src" / "calc.py", source)
        assert generate("src/calc.py")[0] == 0
        text = (project / "template.yaml").read_text()
        data = TemplateMemo(project / "template.yaml", text).data()
        assert data is not None and json.loads(data) == to_plain(parse(text, "template.yaml"))


def test_the_memo_applies_to_its_own_text_and_code_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lokki_sam.compile import memo

    folder = tmp_path / "cache"
    template = tmp_path / "template.yaml"
    first = memo.TemplateMemo(template, "text one", folder)
    first.record({"calc": "src/calc.py:calc"}, unchanged_by="model-a")
    first.commit()  # what a successful generate does
    again = memo.TemplateMemo(template, "text one", folder)
    assert again.unchanged_by("model-a") and not again.unchanged_by("model-b")
    assert again.recorded_flows() == {"calc": "src/calc.py:calc"}
    assert memo.TemplateMemo(template, "text two", folder).recorded_flows() is None  # another text
    monkeypatch.setattr(memo, "code_digest", lambda: "another lokki-sam")
    assert not memo.TemplateMemo(template, "text one", folder).unchanged_by("model-a")  # another version
    (folder / first.path.name).write_text("{not json")
    assert memo.TemplateMemo(template, "text one", folder).recorded_flows() is None  # unreadable: no facts


def test_the_memo_keeps_a_bounded_number_of_templates(tmp_path: Path) -> None:
    from lokki_sam.compile import memo

    folder = tmp_path / "cache"
    for i in range(memo._KEEP + 5):
        entry = memo.TemplateMemo(tmp_path / f"t{i}" / "template.yaml", "text", folder)
        entry.record({}, unchanged_by="m")
        entry.commit()
        os.utime(entry.path, (i, i))  # written in this order
    kept = sorted(folder.glob("*.json"))
    assert len(kept) == memo._KEEP
    newest = memo.TemplateMemo(tmp_path / f"t{memo._KEEP + 4}" / "template.yaml", "text", folder)
    assert newest.unchanged_by("m")


@pytest.mark.external
def test_a_json_template_passes_cfn_lint_and_sam_validate(project: Path) -> None:
    import subprocess

    from tests.conftest import sam_cli_env
    from tests.support.sam import lint

    write(project / "src" / "calc.py", CALC)
    assert generate("src/calc.py", "--template", "template.json")[0] == 0
    assert lint((project / "template.json").read_text()) == []
    sam = str(Path(sys.executable).parent / "sam")
    done = subprocess.run(
        [sam, "validate", "--lint", "-t", "template.json", "--region", "us-east-1"],
        cwd=project,
        env=sam_cli_env(project),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_sibling_import_that_the_lambda_could_not_resolve_is_refused_with_the_fix(project: Path) -> None:
    docs_layout(project)
    write(project / "src" / "etl" / "helpers.py", "FACTOR = 2\n")
    write(project / "src" / "etl" / "flow.py", "import helpers\n" + ETL)
    code, _, err = generate_in_process("flow")
    assert code == 2 and "importing etl.flow failed" in err and "No module named 'helpers'" in err
    assert "write `from etl import helpers`" in err
    assert not (project / "template.yaml").exists()
    write(project / "src" / "etl" / "flow.py", "from etl import helpers\n" + ETL)
    assert generate_in_process("flow")[0] == 0


def test_two_flows_with_one_name_in_a_module_are_refused(project: Path) -> None:
    write(
        project / "src" / "calc.py",
        CALC + '\n@flow(name="calc")\ndef calc_again(limit: int = 3):\n    return fetch(limit=limit).next(total)\n',
    )
    code, _, err = generate("src/calc.py")
    assert code == 2 and "defines two flows named 'calc' (functions calc and calc_again)" in err
    assert "src/calc.py" in err and "@flow(name=...)" in err
