"""A local MaxConcurrency for LocalStack's Map states that set none.

Without MaxConcurrency (or with 0, "no limit"), LocalStack's Step Functions starts every item
of a map at once: one thread and one synchronous Lambda invoke through its own HTTP gateway per
item. With hundreds of items on a small machine the gateway stops accepting connections and
items fail with `States.Runtime: Connect timeout on endpoint URL`, through no fault of the
step. AWS runs up to 10,000 children of a Distributed Map at once on its own fleet; locally,
`LOKKI_EMULATOR_MAP_CONCURRENCY` children run at once (0: LocalStack's behaviour). A map's
own MaxConcurrency is kept. DescribeMapRun reports the bound in force as `maxConcurrency`.

Applied once, in the LocalStack process, when LocalStack loads this executor (before any
function, hence any lokki-sam map, can run). Written against localstack-core 4.14.0's
`state_map/max_concurrency.py`: `MaxConcurrencyDecl._eval_body` pushes the value a Map state
then reads (also for a MaxConcurrencyPath or JSONata expression).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from localstack.services.stepfunctions.asl.component.state.state_execution.state_map import (  # type: ignore[import-not-found]
    max_concurrency,
)

LOG = logging.getLogger(__name__)


def apply(limit: Callable[[], int]) -> None:
    """Bound unbounded maps to `limit()` children at once (read per map: 0 leaves them unbounded)."""
    decl = max_concurrency.MaxConcurrencyDecl
    original = decl._eval_body
    if getattr(original, "lokki_bounded", False):
        return

    def _eval_body(self: Any, env: Any) -> None:
        original(self, env)
        bound = limit()
        if bound > 0 and env.stack[-1] == max_concurrency.DEFAULT_MAX_CONCURRENCY_VALUE:
            env.stack[-1] = bound

    _eval_body.lokki_bounded = True  # type: ignore[attr-defined]
    decl._eval_body = _eval_body
    LOG.debug("maps without MaxConcurrency run %s children at once", limit())
