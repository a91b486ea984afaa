#!/usr/bin/env python3
"""Start a Docker-free local AWS cloud (ministack) on 127.0.0.1 and keep it running until Ctrl-C.

    python dev/ministack.py [--port 4566] [--python 3.11]

ministack runs Lambda functions as local subprocesses of its own venv (created on first use under
~/.cache/lokki-sam/, ~40 s), so that venv uses the python3.X of the template's Runtime. Its state
lives in memory: a restart starts from an empty cloud. Then, in another shell: dev/deploy-local.sh.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.ministack import Ministack, ensure_venv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=4566, help="port on 127.0.0.1 [4566]")
    parser.add_argument(
        "--python",
        default=f"{sys.version_info.major}.{sys.version_info.minor}",
        help="python3.X of the template's Runtime [this Python]",
    )
    args = parser.parse_args()
    print(f"ministack venv: {ensure_venv(args.python)}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Ministack.start(python=args.python, port=args.port) as cloud:
        print(f"ministack ready on {cloud.endpoint} in {cloud.started_in:.1f} s (log: {cloud.log_path})")
        print("point the AWS CLI, SAM CLI and lokki-sam at it:")
        for name, value in cloud.client_env().items():
            print(f"  export {name}={value}")
        print("Ctrl-C stops it.", flush=True)
        try:
            while cloud.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        if cloud.process.poll() is not None:
            sys.exit(f"ministack exited with {cloud.process.returncode}; see {cloud.log_path}")


if __name__ == "__main__":
    main()
