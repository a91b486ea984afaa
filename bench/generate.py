"""`lokki-sam generate` on a 50-step flow with 5 maps: a fresh write, a regeneration, `--check`.

    python bench/generate.py [--repeat 5] [--before DIR]

Each figure is the median of `--repeat` whole processes (interpreter start, imports, loading the
flow, rendering, writing): wall time, what a user waits for, and CPU time (user + system), which a
shared machine disturbs less. The cases:
- fresh: no template yet (the generated files are deleted before each run);
- regenerate: right after that write, everything up to date (nothing to write);
- again: regenerating once more (what generate learnt about the text is remembered: memo.py);
- after an edit: a comment of the user's appended to the template before each run (a new text: parsed);
- --check: on the up-to-date project.
`--before DIR` runs the same cases with the lokki_sam package of another checkout (e.g. a
`git worktree add DIR <base sha>`) first, on PYTHONPATH, so before and after come from one run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAPS = 5
STEPS = 50


def flow_module() -> str:
    """A flow of STEPS distinct steps: a chain of sequential steps around MAPS map blocks (each a
    map over a list, a per-item step after it, and an aggregation)."""
    lines = ["from lokki_sam import flow, step", ""]
    names: list[str] = []

    def add(name: str, body: str, params: str = "data") -> None:
        names.append(name)
        lines.extend(["@step", f"def {name}({params}):", f"    return {body}", ""])

    add("start", "[1, 2, 3]", params="n: int = 3")
    chain = ["start(n=n)"]
    for m in range(MAPS):
        add(f"item_{m}", "data + 1")
        add(f"item_{m}_next", "data * 2")
        add(f"gather_{m}", "sum(data)")
        add(f"spread_{m}", "list(range(data % 5 + 1))")
        chain += [f".map(item_{m}, concurrency=4)", f".next(item_{m}_next)", f".agg(gather_{m})", f".next(spread_{m})"]
    while len(names) < STEPS:
        name = f"tail_{len(names)}"
        add(name, "data")
        chain.append(f".next({name})")
    lines += ["@flow", "def big(n: int = 3):", "    return (" + "\n        ".join(chain) + ")", ""]
    return "\n".join(lines)


def command(pythonpath: str | None) -> list[str]:
    code = "import sys; from lokki_sam.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code]


def run(project: Path, args: list[str], pythonpath: str | None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `lokki-sam generate ARGS` process."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cpu_before = _children_cpu()
    began = time.perf_counter()
    done = subprocess.run([*command(pythonpath), "generate", *args], cwd=project, env=env, capture_output=True)
    took = time.perf_counter() - began
    if done.returncode not in (0, 1):
        raise SystemExit(f"lokki-sam generate {' '.join(args)} failed:\n{done.stderr.decode()}")
    return took, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clean(project: Path) -> None:
    for name in ("template.yaml", "statemachine", "events", "layers"):
        path = project / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def measure(label: str, pythonpath: str | None, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "src").mkdir()
        (project / "src" / "big.py").write_text(flow_module())
        os.environ["XDG_CACHE_HOME"] = str(project / "cache")  # generate's memo (memo.py): this run's own
        args = ["src/big.py"]
        fresh, first = [], []
        for _ in range(repeat):
            clean(project)
            fresh.append(run(project, args, pythonpath))
            first.append(run(project, args, pythonpath))  # the first regeneration after a write
        size = (project / "template.yaml").stat().st_size
        again = [run(project, args, pythonpath) for _ in range(repeat)]
        edited = []
        for i in range(repeat):  # a user's edit before each run: the text is new to generate
            with (project / "template.yaml").open("a") as fh:
                fh.write(f"# a note of mine {i}\n")
            edited.append(run(project, args, pythonpath))
        check = [run(project, [*args, "--check"], pythonpath) for _ in range(repeat)]
    print(f"{label}: template {size / 1024:.0f} KB")
    for kind, index in (("wall", 0), ("cpu", 1)):
        f, *rest = (statistics.median(t[index] for t in times) for times in (fresh, first, again, edited, check))
        shown = " | ".join(
            f"{name} {value:.2f} s ({value / f:.2f}x)"
            for name, value in zip(("regenerate", "again", "after an edit", "--check"), rest, strict=True)
        )
        print(f"  {kind:<4} fresh {f:.2f} s | {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", metavar="DIR", help="a checkout whose lokki_sam gives the 'before' figures")
    options = parser.parse_args()
    print(f"{STEPS} steps, {MAPS} maps; median of {options.repeat} whole processes; load {os.getloadavg()[0]:.1f}")
    if options.before:
        measure("before", str(Path(options.before).resolve()), options.repeat)
    measure("after", None, options.repeat)


if __name__ == "__main__":
    main()
