"""AWS Batch steps on EC2: a GPU step in a map, and a step on EC2 by `platform`; one architecture
(an EC2 compute environment's instances have one). For the template tests."""

from __future__ import annotations

from lokki_sam import flow, step


@step
def items(n: int = 3) -> list[int]:
    return list(range(n))


@step(compute="batch", gpu=1, cpu=4, memory=16384, architecture="x86_64")
def infer(x: int) -> int:
    return x * 2


@step(compute="batch", platform="ec2", cpu=2, memory=4096, architecture="x86_64", timeout=600)
def total(xs: list[int]) -> int:
    return sum(xs)


@flow
def gpu(n: int = 3):
    return items(n=n).map(infer).agg(total)
