"""lokki-sam's LocalStack Lambda runtime executor: functions run as host subprocesses, no Docker.

Installed into LocalStack's venv as the package `lokki_sam_localstack` (see
`lokki_sam/emulator/plugin.py`) and selected with `LAMBDA_RUNTIME_EXECUTOR=lokki-host`. It runs
inside LocalStack's Python (3.13), so it imports only the standard library and LocalStack, and
its modules import each other relatively (they work under both package names).

- `plugin.py`: the plux plugin LocalStack discovers (loads `executor.py` on first use).
- `executor.py`: the `RuntimeExecutor` LocalStack calls (start, invoke, stop, prepare a version).
- `worker.py`: one function process, its output, and per-invocation log capture.
- `runtime_api.py`: the Lambda Runtime API on 127.0.0.1 that one worker polls.
- `bootstrap.py`: the runtime inside the worker (the function's own Python, stdlib only).

Written against localstack-core 4.14.0 (`localstack/services/lambda_/invocation/
runtime_executor.py`, `docker_runtime_executor.py`, `execution_environment.py`); that interface
is internal to LocalStack, so lokki-sam pins the version it installs.
"""
