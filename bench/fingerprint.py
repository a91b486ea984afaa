"""Cost of fingerprinting the example flows in-process, now and at another revision.

    python bench/fingerprint.py [--repeat 50] [--against main]

Loads the example flows, then times `fingerprint.compute(graph)` for all of them together: the
first call (cold: sources read and parsed, distribution metadata read; what a Lambda's first
invocation pays) and the best of `--repeat` further calls (warm). `--against REV` also times
`lokki_sam/fingerprint.py` as it is at that git revision (loaded beside the current package, on
the same graphs), so before and after come from one run; each variant runs in a fresh process.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def load_examples() -> list[Any]:
    from lokki_sam.loader import load_flows

    sys.path.insert(0, str(REPO / "examples"))
    return [f.graph for path in sorted((REPO / "examples").glob("*.py")) for f in load_flows(str(path))]


def module_at(revision: str) -> types.ModuleType:
    """lokki_sam/fingerprint.py as it is at `revision`, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:lokki_sam/fingerprint.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    folder = Path(tempfile.mkdtemp())
    path = folder / "fingerprint_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("fingerprint_at_revision", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def timed(compute: Callable[[Any], Any], graphs: list[Any], repeat: int) -> tuple[float, float]:
    """(first call, best of `repeat`) in ms, for all graphs together."""
    began = time.perf_counter()
    for graph in graphs:
        compute(graph)
    first = time.perf_counter() - began
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        for graph in graphs:
            compute(graph)
        best = min(best, time.perf_counter() - began)
    return first * 1000, best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--against", help="a git revision to time too (e.g. main)")
    args = parser.parse_args()
    graphs = load_examples()
    print(f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    print(
        f"{len(graphs)} example flows ({', '.join(g.name for g in graphs)}), {sum(len(g.nodes) for g in graphs)} nodes"
    )
    rows = []
    if args.against:
        rows.append((f"at {args.against}", module_at(args.against).compute))
    from lokki_sam import fingerprint

    rows.append(("this tree", fingerprint.compute))
    for label, compute in rows:
        first, best = timed(compute, graphs, args.repeat)
        print(f"{label:>16}: first call {first:7.2f} ms, best of {args.repeat} {best:6.2f} ms")


if __name__ == "__main__":
    main()
