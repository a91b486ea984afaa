"""Defaults that build where the user is, set before cookiecutter asks (cookiecutter >= 2.4).

- runtime: the Python running this (cookiecutter's, or the SAM CLI's) when Lambda supports it and
  lokki-sam does (3.11+): `sam build` needs a `python3.X` matching the runtime on PATH.
- architecture: this machine's. Native wheels (numpy, pandas...) must match the functions'
  architecture, and `sam build` takes them from the machine it runs on; arm64 is ~20 % cheaper
  on AWS, so choose it when you build on arm64 (or build in a container).

Standard library only: it runs under whatever Python runs cookiecutter or `sam init`.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

SUPPORTED = ("python3.11", "python3.12", "python3.13")


def main() -> None:
    path = Path("cookiecutter.json")  # cookiecutter runs this in a copy of the template
    answers = json.loads(path.read_text())
    running = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if running in SUPPORTED:
        answers["runtime"] = running
    machine = platform.machine().lower()
    answers["architecture"] = "arm64" if machine in ("arm64", "aarch64") else "x86_64"
    path.write_text(json.dumps(answers, indent=2) + "\n")


if __name__ == "__main__":
    main()
