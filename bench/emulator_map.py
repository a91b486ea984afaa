"""A plain Distributed Map of N trivial items on the local cloud of `lokki-sam emulator start`.

Builds an app of `map_agg` (tests/flows/shapes.py: `numbers(n) -> .map(square) -> .agg(total)`) with
`lokki-sam generate` and `sam build`, then for each setting starts the engine with those
variables (`lokki-sam emulator start`), deploys it (`sam deploy`), runs `lokki-sam invoke -p n=N`
for each N, checks the result against sum(x*x), and prints items/s and what was lost:

    python bench/emulator_map.py [--engine localstack|ministack] [--items 600,2000]
        [--setting 'before:LOKKI_EMULATOR_WORKERS=0,LOKKI_EMULATOR_MAP_CONCURRENCY=0'] [--setting after:]

A setting is `label:VAR=value,...` (empty: the defaults). The default settings compare the host
executor without bounds (a worker per concurrent item and every item started at once: what it
did before issue 23) with its defaults. Each setting gets a fresh engine; the engine's venv is
the cached one (`~/.cache/lokki-sam`, or $LOKKI_SAM_CACHE).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lokki_sam.emulator.process import free_port  # noqa: E402
from tests.support.emulator import exported  # noqa: E402

FLOW_REF = "src/shapes.py:map_agg"  # numbers(n) -> .map(square) -> .agg(total), no batch size
UNBOUNDED = "LOKKI_EMULATOR_WORKERS=0,LOKKI_EMULATOR_MAP_CONCURRENCY=0"
DEFAULT_SETTINGS = [f"before (unbounded):{UNBOUNDED}", "after (defaults):"]


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def checked(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = run(cmd, cwd, env, timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


def build(root: Path, env: dict[str, str]) -> None:
    src = root / "src"
    src.mkdir()
    shutil.copy(ROOT / "tests" / "flows" / "shapes.py", src / "shapes.py")
    (src / "requirements.txt").write_text("")
    (root / "samconfig.toml").write_text(
        'version = 0.1\n\n[default.deploy.parameters]\nstack_name = "bench-map"\nresolve_s3 = true\n'
        'capabilities = "CAPABILITY_IAM"\nconfirm_changeset = false\nfail_on_empty_changeset = false\n'
    )
    checked([str(BIN / "lokki-sam"), "generate", FLOW_REF], root, env)
    checked([str(BIN / "sam"), "build"], root, env | {"PIP_NO_INDEX": "1"})


def parse_setting(text: str) -> tuple[str, dict[str, str]]:
    label, _, pairs = text.partition(":")
    return label, dict(pair.split("=", 1) for pair in pairs.split(",") if pair)


def measure(root: Path, env: dict[str, str], engine: str, setting: dict[str, str], items: list[int]) -> list[dict]:
    lokki = str(BIN / "lokki-sam")
    start = [lokki, "emulator", "start", "--engine", engine, "--port", str(free_port())]
    started = run(start, root, env | setting, timeout=900)
    if started.returncode != 0:
        raise SystemExit(f"emulator start failed:\n{started.stderr}")
    rows = []
    try:
        cloud = env | exported(started.stdout)
        began = time.perf_counter()
        checked([str(BIN / "sam"), "deploy"], root, cloud)
        deploy_seconds = time.perf_counter() - began
        for n in items:
            began = time.perf_counter()
            done = run([lokki, "invoke", FLOW_REF, "-p", f"n={n}", "--json"], root, cloud)
            seconds = time.perf_counter() - began
            expected = sum(x * x for x in range(1, n + 1))
            row = {"items": n, "seconds": seconds, "deploy_seconds": deploy_seconds, "exit": done.returncode}
            if done.returncode == 0:
                payload = json.loads(done.stdout)
                row["correct"] = payload["result"] == expected
            else:
                row["correct"] = False
                row["error"] = " | ".join(line.strip() for line in done.stderr.strip().splitlines()[-6:])[:600]
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        run([lokki, "emulator", "stop", "--engine", engine], root, env, timeout=300)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="localstack", choices=("localstack", "ministack"))
    parser.add_argument("--items", default="600,2000", help="map sizes, comma-separated")
    parser.add_argument("--setting", action="append", help="label:VAR=value,... (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the app and the engines' logs (printed)")
    args = parser.parse_args()
    items = [int(n) for n in args.items.split(",")]
    settings = [parse_setting(s) for s in (args.setting or DEFAULT_SETTINGS)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-emulator-map-"))
    home = tmp / "home"
    home.mkdir()
    env = {
        "PATH": os.pathsep.join([str(BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "SAM_CLI_TELEMETRY": "0",
        "SAM_CLI_POLL_DELAY": "0.5",
        "LANG": "C.UTF-8",
    }
    env.update({k: v for k, v in os.environ.items() if k in ("LOKKI_SAM_CACHE", "PYENV_ROOT")})
    try:
        root = tmp / "app"
        root.mkdir()
        build(root, env)
        results = []
        for number, (label, setting) in enumerate(settings):
            own = env | {"LOKKI_SAM_STATE": str(tmp / "state" / str(number))}  # each engine's log apart
            results.append((label, measure(root, own, args.engine, setting, items)))
    finally:
        if args.keep:
            print(f"kept {tmp} (engine logs under {tmp / 'state'})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    cores = os.cpu_count()
    print(f"\nDistributed Map of N trivial items on {args.engine} (`lokki-sam emulator start`), {cores} cores")
    print("| setting | items | exit | result correct | seconds | items/s | error |")
    print("|---|---:|---:|---|---:|---:|---|")
    for label, rows in results:
        for r in rows:
            rate = r["items"] / r["seconds"]
            print(
                f"| {label} | {r['items']} | {r['exit']} | {r['correct']} | {r['seconds']:.1f} | {rate:.1f} "
                f"| {r.get('error', '')} |"
            )


if __name__ == "__main__":
    main()
