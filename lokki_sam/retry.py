"""Local retries with the semantics of a Step Functions Retrier (see graph.Retry)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from lokki_sam.errors import LokkiError
from lokki_sam.options import Retry

T = TypeVar("T")


def call_with_retry(
    fn: Callable[[], T],
    policy: Retry | None,
    *,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn`; on an exception matching `policy`, wait and call again, up to policy.retries times.

    lokki-sam's own errors (bad input, unserializable results) are never retried: trying again
    cannot fix them.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except LokkiError:
            raise
        except Exception as exc:
            if policy is None or attempt >= policy.retries or not isinstance(exc, policy.exceptions):
                raise
            attempt += 1
            wait = policy.delay(attempt)
            if policy.jitter:
                wait = random.uniform(0, wait)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            sleep(wait)
