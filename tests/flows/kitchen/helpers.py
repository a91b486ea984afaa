"""Project helpers the kitchen flow reaches in every way a step can reach code."""

import functools
import os

from parts.deep import deepen  # a namespace package (no __init__.py), imported by a project module

FACTOR = int(os.environ.get("KITCHEN_FACTOR", "2"))  # a value that differs in the Lambda


def scale(x: int) -> int:
    return deepen(x) * FACTOR


@functools.lru_cache
def cached(x: int) -> int:
    return x + FACTOR


def twice(fn):  # a project decorator: its wrapper is code of what it decorates
    @functools.wraps(fn)
    def wrapper(v):
        return fn(fn(v))

    return wrapper
