"""Import time of the Lambda runtime path (what a cold start pays before the handler runs).

    python bench/import_time.py [--repeat 7]

Measures `python -X importtime -c "import lokki_sam.runtime"` (or `import lokki_sam` if the
runtime module does not exist yet): the cumulative self-reported import time, the wall time of
the whole interpreter against a bare `python -c pass`, the heaviest imports, and whether
anything from the CLI side (click, rich, yaml, cookiecutter, samcli) was loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

CLI_ONLY = ("click", "rich", "yaml", "cookiecutter", "samcli", "samtranslator", "cfnlint", "moto")


def target_module() -> str:
    return "lokki_sam.runtime" if importlib.util.find_spec("lokki_sam.runtime") else "lokki_sam"


def importtime(module: str) -> list[tuple[str, int, int]]:
    """(module, self us, cumulative us) for every import, from -X importtime."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        rows.append((name, int(self_us), int(cumulative)))
    return rows


def wall(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    module = target_module()
    print(f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; median of {args.repeat} runs\n")
    runs = [importtime(module) for _ in range(args.repeat)]
    totals = [next(c for name, _, c in rows if name == module) for rows in runs]
    print(f"import {module}: {statistics.median(totals) / 1000:.1f} ms cumulative (-X importtime)")
    bare = wall("pass", args.repeat)
    full = wall(f"import {module}", args.repeat)
    print(f"interpreter + import: {full * 1000:.1f} ms wall, bare interpreter {bare * 1000:.1f} ms")
    print(f"  import cost: {(full - bare) * 1000:.1f} ms\n")
    rows = runs[len(runs) // 2]
    top = [r for r in rows if "." not in r[0]]  # top-level packages
    print("heaviest top-level imports (cumulative ms):")
    for name, _, cumulative in sorted(top, key=lambda r: -r[2])[:10]:
        print(f"  {cumulative / 1000:7.1f}  {name}")
    loaded = {name.split(".")[0] for name, _, _ in rows}
    cli = sorted(loaded & set(CLI_ONLY))
    print(f"\nCLI-only packages imported on the runtime path: {', '.join(cli) or 'none'}")
    ours = sorted(name for name, _, _ in rows if name.startswith("lokki_sam"))
    print(f"lokki_sam modules imported: {', '.join(ours)}")


if __name__ == "__main__":
    main()
