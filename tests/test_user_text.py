"""What users read never points at the project's internal issue tracker ("issue 12", "#12"):
every string in lokki_sam (messages, tables, help) and the user documentation."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INTERNAL = re.compile(r"\bissues?\s*#?\d+|(?<![\w&/#-])#\d{1,5}\b", re.IGNORECASE)
USER_DOCS = ["README.md", "SECURITY.md", *(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]


def strings_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_string_in_lokki_sam_names_an_internal_issue() -> None:
    found = [
        f"{path.relative_to(REPO)}:{line}: {text[:80]!r}"
        for path in sorted((REPO / "lokki_sam").rglob("*.py"))
        for line, text in strings_of(path)
        if INTERNAL.search(text)
    ]
    assert not found, "\n".join(found)


def test_no_user_document_names_an_internal_issue() -> None:
    found = [
        f"{name}:{number}: {line.strip()[:80]}"
        for name in USER_DOCS
        for number, line in enumerate((REPO / name).read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_pattern_finds_what_it_is_for() -> None:
    assert INTERNAL.search("limit from lokki-sam's issue 12") and INTERNAL.search("see #12")
    assert not INTERNAL.search("3#2 (the second Tuesday)") and not INTERNAL.search("a.html#section-2")
