"""Property: random sequences of generate / edit the template (user resources, outputs that refer to
generated functions, tags on generated functions, comments) / rename a step / remove a step / add a
module never lose a user's key and never leave a reference dangling: a generate that would is
refused (exit 2, nothing written), and once the user drops the referring entry it goes through.

The hypothesis part runs generate in-process; cfn-lint and `sam validate --lint` check the final
template of a few sequences (external)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lokki_sam import names
from lokki_sam.compile.memo import TemplateMemo
from lokki_sam.compile.merge import parse, to_plain, yaml_rt
from tests.conftest import sam_cli_env
from tests.support.sam import forget_module, generate_in_process, lint, load

STEP_POOL = ("load", "clean", "enrich", "score", "rank", "publish")


@dataclass
class Module:
    name: str
    steps: list[str]  # the flow's chain; its second step, if any, is mapped over the first's output

    @property
    def flow(self) -> str:
        return f"flow_{self.name}"

    def source(self) -> str:
        lines = ["from lokki_sam import flow, step", ""]
        for i, name in enumerate(self.steps):
            if i == 0:
                lines += ["@step", f"def {name}(n: int = 2) -> list[int]:", "    return list(range(n))", ""]
            else:
                lines += ["@step", f"def {name}(x):", "    return x", ""]
        chain = f"{self.steps[0]}(n=n)"
        for i, name in enumerate(self.steps[1:], start=1):
            chain += f".map({name})" if i == 1 else f".next({name})"
        lines += ["@flow", f"def {self.flow}(n: int = 2):", f"    return {chain}", ""]
        return "\n".join(lines)

    def function_ids(self) -> list[str]:
        return [names.function_id(self.flow, s) for s in self.steps]


@dataclass
class World:
    """The project on disk and what the user added to its template (the oracle)."""

    root: Path
    modules: list[Module] = field(default_factory=list)
    topics: dict[str, str] = field(default_factory=dict)  # user resource -> its TopicName
    outputs: dict[str, str] = field(default_factory=dict)  # user output -> the generated function it refers to
    tags: dict[str, str] = field(default_factory=dict)  # generated function -> the user's Tags value
    comments: list[str] = field(default_factory=list)
    generated: bool = False
    counter: int = 0

    @property
    def template(self) -> Path:
        return self.root / "template.yaml"

    def write_modules(self) -> None:
        for module in self.modules:
            (self.root / "src" / f"{module.name}.py").write_text(module.source())

    def generate(self) -> tuple[int, str, str]:
        for module in self.modules:
            forget_module(module.name)
        return generate_in_process(self.modules[0].name, *(f"src/{m.name}.py" for m in self.modules))

    def existing_functions(self) -> list[str]:
        return [fid for m in self.modules for fid in m.function_ids()]


def edit_template(world: World, kind: str, pick: int) -> None:
    """What a user does in their editor: add a resource, an output referring to a generated
    function, a tag on a generated function, a comment."""
    if not world.generated:
        return
    doc = parse(world.template.read_text(), "template.yaml")
    world.counter += 1
    n = world.counter
    functions = [f for f in world.existing_functions() if f in doc["Resources"]]
    if kind == "resource":
        doc["Resources"][f"UserTopic{n}"] = {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"topic-{n}"}}
        doc["Resources"].yaml_add_eol_comment(f"mine {n}", f"UserTopic{n}")
        world.topics[f"UserTopic{n}"] = f"topic-{n}"
    elif kind == "output" and functions:
        target = functions[pick % len(functions)]
        output = parse(f"Value: !GetAtt {target}.Arn\n" if n % 2 else f'Value: !Sub "fn ${{{target}}}"\n', "edit")
        doc["Outputs"][f"UserOutput{n}"] = output
        world.outputs[f"UserOutput{n}"] = target
    elif kind == "tag" and functions:
        target = functions[pick % len(functions)]
        doc["Resources"][target]["Properties"]["Tags"] = {"owner": f"team-{n}"}
        world.tags[target] = f"team-{n}"
    elif kind == "comment":
        world.comments.append(f"# user note {n}")
    out = io.StringIO()
    yaml_rt().dump(doc, out)
    world.template.write_text("".join(f"{c}\n" for c in world.comments) + _without_comments(out.getvalue(), world))


def _without_comments(text: str, world: World) -> str:
    """The dump with the user's top comments removed (they are written back in front, once)."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if line.rstrip("\n") not in world.comments)


def check_generate(world: World) -> None:
    """Generate; it is refused exactly when a user output refers to a function that goes, with
    nothing written; the user then drops those outputs and generates again."""
    before = world.template.read_bytes() if world.template.exists() else None
    code, _, err = world.generate()
    wanted = set(world.existing_functions())
    referring = sorted(o for o, target in world.outputs.items() if target not in wanted)
    if referring:
        assert code == 2, err
        assert all(f"Outputs.{o}.Value" in err for o in referring), err
        assert (world.template.read_bytes() if world.template.exists() else None) == before
        doc = parse(world.template.read_text(), "template.yaml")
        for name in referring:
            del doc["Outputs"][name]
            del world.outputs[name]
        out = io.StringIO()
        yaml_rt().dump(doc, out)
        world.template.write_text(out.getvalue())
        code, _, err = world.generate()
    assert code == 0, err
    world.generated = True
    world.tags = {f: v for f, v in world.tags.items() if f in wanted}
    check_user_keys(world)
    check_memo(world)


def check_memo(world: World) -> None:
    """What generate remembers of the text it wrote (the data the next run merges into instead of
    parsing it, memo.py) is what parsing that text gives."""
    text = world.template.read_text()
    data = TemplateMemo(world.template, text).data()
    if data is not None:  # None: the text was kept as it was (nothing changed), or is the user's
        assert json.loads(data) == to_plain(parse(text, "template.yaml"))


def check_user_keys(world: World) -> None:
    text = world.template.read_text()
    doc = load(text)
    resources, outputs = doc["Resources"], doc.get("Outputs") or {}
    for resource, topic in world.topics.items():
        assert resources[resource]["Properties"]["TopicName"] == topic
        assert f"# mine {resource.removeprefix('UserTopic')}" in text
    for output, target in world.outputs.items():
        assert output in outputs and target in resources  # kept, and still refers to something
    for function, team in world.tags.items():
        assert resources[function]["Properties"]["Tags"] == {"owner": team}
    for comment in world.comments:
        assert comment in text
    assert sorted(f for f in resources if f.endswith("Function")) == sorted(world.existing_functions())


operations = st.lists(
    st.one_of(
        st.tuples(st.just("generate"), st.integers(0, 9)),
        st.tuples(st.sampled_from(["resource", "output", "tag", "comment"]), st.integers(0, 9)),
        st.tuples(st.just("rename"), st.integers(0, 9)),
        st.tuples(st.just("remove"), st.integers(0, 9)),
        st.tuples(st.just("add_module"), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=6,
)


@contextlib.contextmanager
def project() -> Iterator[World]:
    saved_cwd, saved_path, saved_modules = os.getcwd(), list(sys.path), set(sys.modules)
    saved_cache = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        os.chdir(root)
        os.environ["XDG_CACHE_HOME"] = str(root / "cache")  # generate's memo: this project's own
        try:
            world = World(root, [Module("first", ["load", "clean", "enrich"])])
            world.write_modules()
            yield world
        finally:
            os.chdir(saved_cwd)
            sys.path[:] = saved_path
            if saved_cache is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = saved_cache
            for name in set(sys.modules) - saved_modules:
                del sys.modules[name]


def play(world: World, ops: list[tuple[str, int]]) -> None:
    for op, pick in ops:
        module = world.modules[pick % len(world.modules)]
        if op == "generate":
            check_generate(world)
        elif op in ("resource", "output", "tag", "comment"):
            edit_template(world, op, pick)
        elif op == "rename":
            free = [s for s in STEP_POOL if s not in module.steps]
            module.steps[pick % len(module.steps)] = free[pick % len(free)]
        elif op == "remove" and len(module.steps) > 1:
            del module.steps[1 + pick % (len(module.steps) - 1)]
        elif op == "add_module":
            world.modules.append(Module(f"mod{len(world.modules)}", list(STEP_POOL[:pick])))
        world.write_modules()
    check_generate(world)  # every sequence ends with a generate


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_generate_never_loses_a_user_key_nor_leaves_a_dangling_reference(ops: list[tuple[str, int]]) -> None:
    with project() as world:
        play(world, ops)


SEQUENCES = [
    [("generate", 0), ("output", 1), ("tag", 2), ("resource", 0), ("comment", 0), ("rename", 1), ("generate", 0)],
    [("add_module", 3), ("generate", 0), ("output", 4), ("remove", 1), ("add_module", 2), ("comment", 0)],
]


@pytest.mark.external
@pytest.mark.parametrize("ops", SEQUENCES, ids=["rename", "remove-and-add"])
def test_the_final_templates_pass_cfn_lint_and_sam_validate(ops: list[tuple[str, int]], tmp_path: Path) -> None:
    with project() as world:
        play(world, ops)
        text = world.template.read_text()
        assert lint(text) == []
        done = subprocess.run(
            [str(Path(sys.executable).parent / "sam"), "validate", "--lint", "--region", "us-east-1"],
            cwd=world.root,
            env=sam_cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
