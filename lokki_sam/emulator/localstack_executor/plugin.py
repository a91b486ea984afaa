"""The plux plugin LocalStack finds under `localstack.lambda.runtime_executor` (name `lokki-host`).

Loading it imports `executor.py` (and with it LocalStack's Lambda internals) only when LocalStack
picks this executor, as LocalStack's own Docker plugin does; it also bounds the maps of
LocalStack's Step Functions that set no MaxConcurrency (`map_concurrency.py`).
"""

from __future__ import annotations

from typing import Any

from localstack.services.lambda_.invocation.plugins import (  # type: ignore[import-not-found]
    RuntimeExecutorPlugin,
)


class HostExecutorPlugin(RuntimeExecutorPlugin):  # type: ignore[misc]  # LocalStack's class: untyped here
    name = "lokki-host"

    def load(self, *args: Any, **kwargs: Any) -> type:
        from . import map_concurrency, runtimes
        from .executor import HostRuntimeExecutor

        map_concurrency.apply(runtimes.map_concurrency)
        return HostRuntimeExecutor
