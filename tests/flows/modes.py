"""Flows over map modes and child execution types, shared by the cloud and plan tests."""

from __future__ import annotations

from lokki_sam import flow, step


@step
def letters(n: int = 5) -> list[str]:
    return [chr(ord("a") + i) for i in range(n)]


@step
def twice(s: str) -> str:
    return s * 2


@step
def glue(parts: list[str]) -> str:
    return "-".join(parts)


@flow
def inline_chain(n: int = 5):
    return letters(n=n).map(twice, mode="inline", concurrency=2).next(twice).agg(glue)


@flow
def inline_open(n: int = 3):
    return letters(n=n).map(twice, mode="inline")
