# Upstream lokki's tests/flows/ci_pipeline/flow.py
# (github.com/alamminsalo/lokki at 7700eb8; MIT licence, (c) 2026 Lokki Contributors).
# Ported for docs/migrating.md: only the import lines changed.
"""Simple test pipeline for LocalStack deployment verification."""

import random

from lokki_sam import flow, step


@step
def get_values(size: int) -> list[float]:
    return [random.random() - 0.5 for _ in range(size)]


@step
def transform(values: list[float]) -> list[float]:
    return values  # Flow params automatically filtered if not accepted


@flow
def ci_pipeline(
    size: int = 8,
    multiplier: int = 2,
):
    """
    CI test pipeline with 3 steps demonstrating:
    - Flow parameters (size, multiplier)
    - Linear step chaining with .next()
    """
    return get_values(size).next(transform)


if __name__ == "__main__":
    from lokki_sam import main

    main(ci_pipeline)
