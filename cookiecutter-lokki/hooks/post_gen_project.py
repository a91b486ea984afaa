"""Finish the project: install the chosen starter flow and framework, generate its files from it,
and pin the lokki-sam that made it in requirements-dev.txt.

Runs in the new project directory. Standard library only: it runs under whatever Python runs
cookiecutter or `sam init`, which may not have lokki-sam installed.
"""

from __future__ import annotations  # the hook may run under an older Python than lokki-sam needs

import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# Cookiecutter renders the answers into this raw string as JSON.
ANSWERS = json.loads(r"""{{ cookiecutter|jsonify }}""")
INSTALL_HINT = "pip install lokki-sam"


def install_starter(root: Path, starter: str, slug: str) -> None:
    """Move the chosen starter's flow, test and data into place; drop the other starters."""
    chosen = root / "_starters" / starter
    package = root / "src" / slug
    shutil.move(str(chosen / "flow.py"), str(package / "flow.py"))
    shutil.move(str(chosen / "test_flow.py"), str(root / "tests" / "test_flow.py"))
    if (chosen / "data").is_dir():
        shutil.move(str(chosen / "data"), str(package / "data"))
    shutil.rmtree(root / "_starters")


def install_framework(root: Path, framework: str) -> None:
    """The Serverless Framework variant: its serverless.yml skeleton and README, no samconfig.toml."""
    chosen = root / "_frameworks" / framework
    if framework == "serverless":
        shutil.move(str(chosen / "README.md"), str(root / "README.md"))
        shutil.move(str(chosen / "serverless.yml"), str(root / "serverless.yml"))
        (root / "samconfig.toml").unlink()
    shutil.rmtree(root / "_frameworks")


def lokki_sam_command() -> list[str] | None:
    """The lokki-sam of the Python running this hook (`lokki-sam init`'s, or cookiecutter's when
    installed beside lokki-sam), else `lokki-sam` on PATH (the SAM CLI's Python need not have it)."""
    if importlib.util.find_spec("lokki_sam") and importlib.util.find_spec("click"):
        return [sys.executable, "-c", "from lokki_sam.cli import main; main()"]
    found = shutil.which("lokki-sam")
    return [found] if found else None


def pin(root: Path) -> bool:
    """Pin requirements-dev.txt to the lokki-sam that renders the project (for the answer `auto`);
    False when it still names plain `lokki-sam` (no lokki-sam here, or pinning failed)."""
    if ANSWERS["lokki_sam_requirement"] != "auto":
        return True  # the user's own requirement line
    command = lokki_sam_command()
    if command is None:
        return False
    done = subprocess.run([*command, "init", "--pin", str(root)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"pinning lokki-sam in requirements-dev.txt failed:\n{done.stderr}", file=sys.stderr)
        return False
    return True


def generate(root: Path, generated: str) -> bool:
    command = lokki_sam_command()
    if command is None:
        print(
            f"lokki-sam is not installed here, so {generated}, statemachine/ and events/ were not generated.\n"
            f"  Install it ({INSTALL_HINT}), then run `lokki-sam generate` in {root}",
            file=sys.stderr,
        )
        return False
    done = subprocess.run([*command, "generate"], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(
            f"`lokki-sam generate` failed, so {generated} was not written:\n{done.stdout}{done.stderr}"
            f"  Fix the problem, then run `lokki-sam generate` in {root}",
            file=sys.stderr,
        )
        return False
    return True


def main() -> int:
    root = Path.cwd()
    install_starter(root, ANSWERS["starter"], ANSWERS["project_slug"])
    framework = ANSWERS.get("framework", "sam")
    install_framework(root, framework)
    serverless = framework == "serverless"
    generated = generate(root, "serverless.yml" if serverless else "template.yaml")
    pinned = pin(root)
    print(f"Created {root}")
    setup = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements-dev.txt"
    if not pinned:
        print(
            "requirements-dev.txt names `lokki-sam`, which your package index may not have: pin it to the "
            "lokki-sam you use with `lokki-sam init --pin .` (or edit that line)",
            file=sys.stderr,
        )
    steps = [setup, "lokki-sam run", "pytest"]
    if not generated:
        steps += ["lokki-sam generate"]
    else:
        steps += ["npm install", "npx osls deploy"] if serverless else ["sam build", "sam deploy --guided"]
    print(f"Next: cd {shlex.quote(root.name)} && {'; '.join(steps)}  (README.md has the whole journey)")
    return 0  # the project is usable even without generated files: never delete it


if __name__ == "__main__":
    sys.exit(main())
