"""Flows whose steps are packaged both ways, zip functions and container images in one flow.

- `mixed`: zip by default; two image steps with the same (no) requirements share one image.
- `boxed`: `@flow(package="image")` makes its steps images, except `count_up`, whose own
  `package="zip"` wins.

No step declares requirements: the tests build these images on a Docker daemon with no network.
"""

from lokki_sam import flow, step


@step
def sizes(n: int = 4) -> list[int]:
    return list(range(1, n + 1))


@step(package="image")
def square(x: int) -> int:
    return x * x


@step(package="image")
def describe(squares: list[int]) -> str:
    return f"{len(squares)} squares, sum {sum(squares)}"


@step
def shout(text: str) -> str:
    return text.upper()


@flow
def mixed(n: int = 4):
    return sizes(n=n).map(square).agg(describe).next(shout)


@step(package="zip")
def count_up(n: int = 3) -> list[int]:
    return list(range(n))


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@flow(package="image")
def boxed(n: int = 3):
    return count_up(n=n).map(square).agg(total)
