"""Word counts over a folder of text documents: the most frequent words, longest first on ties.

    lokki-sam run examples/wordcount.py -p top=5 -p min_length=6
    python examples/wordcount.py run --top 5

Each document is one map item; its inner chain reads and tokenizes it, then counts its words.
The agg merges the per-document counts and the last step keeps the top N. A relative `folder`
is resolved against this file's directory, so the same code works from a checkout and inside a
Lambda package (where the module and its data folder are deployed together).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from lokki_sam import flow, main, step

HERE = Path(__file__).resolve().parent
WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


def resolve_folder(folder: str) -> Path:
    path = Path(folder)
    return path if path.is_absolute() else HERE / path


@step
def list_documents(folder: str = "data") -> list[str]:
    """Names of the folder's .txt documents, sorted so runs are deterministic."""
    root = resolve_folder(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    return sorted(p.name for p in root.glob("*.txt"))


@step
def tokenize(name: str, folder: str = "data", min_length: int = 5) -> list[str]:
    """Lower-cased words of one document, keeping words of at least `min_length` letters."""
    text = (resolve_folder(folder) / name).read_text(encoding="utf-8")
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
def top_words(counts: dict[str, int], top: int = 10) -> list[tuple[str, int]]:
    """The `top` most frequent words; ties broken alphabetically for a deterministic order."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:top]


@flow
def wordcount(folder: str = "data", min_length: int = 5, top: int = 10):
    """Top words across a folder of documents (`folder`, `min_length` and `top` reach steps by name)."""
    return list_documents().map(tokenize).next(count).agg(merge).next(top_words)


if __name__ == "__main__":
    main(wordcount)
