"""FLOW_REF loading when module names collide: two user files of one name, or a stdlib name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lokki_sam.errors import LokkiError
from lokki_sam.loader import load_flow

FLOW = "from lokki_sam import flow, step\n@step\ndef s():\n    return {value!r}\n@flow\ndef {name}():\n    return s()\n"


def test_two_user_files_with_one_module_name_each_load_their_own_flow(tmp_path: Path) -> None:
    for project, name in (("one", "first"), ("two", "second")):
        (tmp_path / project).mkdir()
        (tmp_path / project / "pipeline_mod.py").write_text(FLOW.format(value=project, name=name))
    try:
        first = load_flow(str(tmp_path / "one" / "pipeline_mod.py"))
        second = load_flow(str(tmp_path / "two" / "pipeline_mod.py"))
        assert (first.name, second.name) == ("first", "second")
        assert Path(sys.modules["pipeline_mod"].__file__ or "").parent.name == "two"
    finally:
        sys.modules.pop("pipeline_mod", None)


def test_a_flow_file_named_like_a_stdlib_module_is_refused(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(FLOW.format(value=1, name="f"))
    with pytest.raises(LokkiError, match="already taken") as info:
        load_flow(str(tmp_path / "json.py"))
    assert "rename the file" in info.value.render()
    assert sys.modules["json"].__file__ != str(tmp_path / "json.py")  # the real json is untouched
