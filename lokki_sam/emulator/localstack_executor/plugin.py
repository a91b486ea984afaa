"""The plux plugin LocalStack finds under `localstack.lambda.runtime_executor` (name `lokki-host`).

Loading it imports `executor.py` (and with it LocalStack's Lambda internals) only when LocalStack
picks this executor, as LocalStack's own Docker plugin does.
"""

from __future__ import annotations

from typing import Any

from localstack.services.lambda_.invocation.plugins import (  # type: ignore[import-not-found]
    RuntimeExecutorPlugin,
)


class HostExecutorPlugin(RuntimeExecutorPlugin):  # type: ignore[misc]  # LocalStack's class: untyped here
    name = "lokki-host"

    def load(self, *args: Any, **kwargs: Any) -> type:
        from .executor import HostRuntimeExecutor

        return HostRuntimeExecutor
