"""The example flows: each runs with its defaults, deterministically, and gives what plain Python computes."""

from __future__ import annotations

import math
import random
import re
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import run_flow
from lokki_sam.errors import StepFailed
from lokki_sam.graph import Flow, MapBlock
from lokki_sam.loader import load_flows, load_module
from tests.conftest import EXAMPLES

# Example modules are imported inside each test and forgotten after it, so their plain names
# (birds, wordcount, ...) never shadow another test's modules of the same name.
pytestmark = pytest.mark.usefixtures("unload_modules")


def example_flow_refs() -> list[str]:
    before = set(sys.modules)
    try:
        return [f"{path}:{f.name}" for path in sorted(EXAMPLES.glob("*.py")) for f in load_flows(str(path))]
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]


EXAMPLE_FLOW_REFS = example_flow_refs()


def all_example_flows() -> list[Flow]:
    return [flow_obj for ref in EXAMPLE_FLOW_REFS for flow_obj in load_flows(ref)]


@pytest.mark.parametrize("ref", EXAMPLE_FLOW_REFS, ids=[Path(r).name for r in EXAMPLE_FLOW_REFS])
def test_every_example_flow_runs_with_defaults_deterministically(ref: str, tmp_path: Path) -> None:
    (flow_obj,) = load_flows(ref)
    first = run_flow(flow_obj, store=tmp_path).result
    second = run_flow(flow_obj, store=tmp_path).result
    assert first == second and first not in (None, [], {})


def test_examples_cover_the_shapes_they_claim() -> None:
    flows = {f.name: f for f in all_example_flows()}
    assert {"birds", "wordcount", "pi", "zscores"} <= set(flows)
    wc = flows["wordcount"].graph
    (block,) = wc.maps
    assert [n.id for n in block.nodes] == ["tokenize", "count"]  # a map with an inner chain
    assert [s.id for s in wc.stages][-2:] == ["merge", "top_words"]
    pi = flows["pi"].graph
    assert [s.id for s in pi.stages][-3:] == ["combine", "estimate", "report"]  # steps after an agg
    assert isinstance(flows["zscores"].graph.result_stage, MapBlock)  # an open map
    retry = flows["zscores"].graph.node("fetch_series").step.options.retry
    assert retry is not None and retry.retries == 3 and retry.exceptions == (ConnectionError, TimeoutError)


# -------------------------------------------------------------------------------- birds


def test_birds(tmp_path: Path) -> None:
    (birds,) = load_flows(str(EXAMPLES / "birds.py"))
    assert run_flow(birds, store=tmp_path).result == "flappy goose, flappy duck, flappy seagull"
    assert run_flow(birds, {"limit": "5"}, store=tmp_path).result.count("flappy") == 5


# ---------------------------------------------------------------------------- wordcount


def plain_wordcount(folder: Path, min_length: int, top: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for doc in folder.glob("*.txt"):
        words = re.findall(r"[a-z]+(?:'[a-z]+)*", doc.read_text(encoding="utf-8").lower())
        counts.update(w for w in words if len(w) >= min_length)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


@pytest.mark.parametrize(("min_length", "top"), [(5, 10), (3, 4), (8, 20)])
def test_wordcount_matches_plain_python(tmp_path: Path, min_length: int, top: int) -> None:
    (wordcount,) = load_flows(str(EXAMPLES / "wordcount.py"))
    result = run_flow(wordcount, {"min_length": min_length, "top": top}, store=tmp_path).result
    assert result == plain_wordcount(EXAMPLES / "data", min_length, top)
    assert len(result) == top


def test_wordcount_on_another_folder(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Spam spam eggs. SPAM and ham.")
    (docs / "b.txt").write_text("Eggs, ham; spam!")
    (docs / "ignored.md").write_text("spam " * 100)
    (wordcount,) = load_flows(str(EXAMPLES / "wordcount.py"))
    outcome = run_flow(wordcount, {"folder": str(docs), "min_length": "3", "top": "3"}, store=tmp_path / "runs")
    assert outcome.result == [("spam", 4), ("eggs", 2), ("ham", 2)]


def test_wordcount_missing_folder_fails_the_first_step(tmp_path: Path) -> None:
    (wordcount,) = load_flows(str(EXAMPLES / "wordcount.py"))
    with pytest.raises(StepFailed, match=r"step 'list_documents' failed: FileNotFoundError: no such folder"):
        run_flow(wordcount, {"folder": str(tmp_path / "nope")}, store=tmp_path)


# ------------------------------------------------------------------------------ numeric


def plain_pi(samples: int, chunks: int, seed: int) -> tuple[int, int]:
    hits = n = 0
    base, extra = divmod(samples, chunks)
    for i in range(chunks):
        size = base + (1 if i < extra else 0)
        rng = random.Random(seed * 1_000_003 + i)
        for _ in range(size):
            x, y = rng.random(), rng.random()
            hits += x * x + y * y <= 1.0
        n += size
    return hits, n


@pytest.mark.parametrize(("samples", "chunks", "seed"), [(20_000, 8, 42), (10_001, 3, 1), (5, 8, 9)])
def test_pi_matches_plain_python(tmp_path: Path, samples: int, chunks: int, seed: int) -> None:
    numeric = load_module(str(EXAMPLES / "numeric.py"))
    params = {"samples": samples, "chunks": chunks, "seed": seed, "digits": 5}
    result = run_flow(numeric.pi, params, store=tmp_path).result
    hits, n = plain_pi(samples, chunks, seed)
    assert result["samples"] == n == samples
    assert result["pi"] == round(4 * hits / n, 5)
    if samples >= 10_000:
        assert result["within_3_stderr"] is True and abs(result["pi"] - math.pi) < 0.05


def test_zscores_match_plain_python(tmp_path: Path) -> None:
    numeric = load_module(str(EXAMPLES / "numeric.py"))
    result: list[dict[str, Any]] = run_flow(numeric.zscores, {"series": 4, "length": 500}, store=tmp_path).result
    assert [r["name"] for r in result] == ["sensor-00", "sensor-01", "sensor-02", "sensor-03"]
    for r in result:
        rng = random.Random(f"7:{r['name']}")
        level, spread = rng.uniform(10, 100), rng.uniform(1, 5)
        values = [rng.gauss(level, spread) for _ in range(500)]
        mean, stdev = statistics.fmean(values), statistics.pstdev(values)
        assert r["mean"] == round(mean, 6) and r["stdev"] == round(stdev, 6)
        assert r["outliers"] == sum(abs(v - mean) / stdev > 3 for v in values)


def test_numeric_retry_recovers_from_transient_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    numeric = load_module(str(EXAMPLES / "numeric.py"))
    failures = {"sensor-01": 2}
    real = numeric.fetch_series.func

    def flaky(name: str, **kwargs: Any) -> Any:
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            raise ConnectionError("service unavailable")
        return real(name, **kwargs)

    monkeypatch.setattr(numeric.fetch_series, "func", flaky)
    waits: list[float] = []
    result = run_flow(numeric.zscores, {"series": 3}, store=tmp_path, sleep=waits.append).result
    assert len(result) == 3 and waits == [0.5, 1.0]
