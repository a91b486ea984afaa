#!/usr/bin/env python3
"""The real SAM CLI with the test suite's host-network shim (tests/support/sam_local.py), for use by hand
against the daemon of `python -m tests.support.docker_daemon start` (docs/docker.md):

    export DOCKER_HOST=unix:///tmp/lokki-sam-dockerd/docker.sock
    python dev/sam.py build
    python dev/sam.py local invoke Fn -e event.json --skip-pull-image --docker-network host

Run it from the SAM app's folder, with the venv that has aws-sam-cli.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository, not dev/ (it has ministack.py)
    from samcli.cli.main import cli

    from tests.support.sam_local import apply

    apply()
    cli(prog_name="sam")


if __name__ == "__main__":
    main()
