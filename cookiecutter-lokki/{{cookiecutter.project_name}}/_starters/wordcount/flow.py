"""{{ cookiecutter.project_name }}: the most frequent words across a folder of text documents.

    lokki-sam run -p top=5 -p min_length=6     # runs locally (lokki.toml names this flow)
    python src/{{ cookiecutter.project_slug }}/flow.py run --top 5

Each document is one map item: its inner chain reads and tokenizes it, then counts its words.
The agg merges the counts and the last step keeps the top N. The documents sit next to this
module (data/), so `sam build` packages them with the code and the Lambda functions read the
same files as a local run.
"""

import re
from collections import Counter
from pathlib import Path

from lokki_sam import flow, main, step

HERE = Path(__file__).resolve().parent
WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


@step
def list_documents(folder: str = "data") -> list[str]:
    """Names of the folder's .txt documents (relative to this module), sorted for determinism."""
    return sorted(p.name for p in (HERE / folder).glob("*.txt"))


@step
def tokenize(name: str, folder: str = "data", min_length: int = 4) -> list[str]:
    """Lower-cased words of one document with at least `min_length` letters."""
    text = (HERE / folder / name).read_text(encoding="utf-8")
    return [w for w in WORD_RE.findall(text.lower()) if len(w) >= min_length]


@step
def count(words: list[str]) -> dict[str, int]:
    return dict(Counter(words))


@step
def merge(counts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(total)


@step
def top_words(counts: dict[str, int], top: int = 5) -> list[tuple[str, int]]:
    """The `top` most frequent words; ties broken alphabetically."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


@flow
def {{ cookiecutter.flow_name }}(folder: str = "data", min_length: int = 4, top: int = 5):
    """`folder`, `min_length` and `top` reach the steps that declare them, by name."""
    return list_documents().map(tokenize).next(count).agg(merge).next(top_words)


if __name__ == "__main__":
    main({{ cookiecutter.flow_name }})
