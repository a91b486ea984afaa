"""A flow that switches on the settings a deployment carries: memory, timeout, architecture,
environment, retries by exception class, extra permissions (one with a justified wildcard), a
step's own requirements (a dependency layer) and a schedule. The SAM and Serverless targets must
render each the same way (tests/test_serverless_package.py)."""

from lokki_sam import Retry, flow, step


@step(
    memory=1024,
    timeout=60,
    architecture="x86_64",
    environment={"MODE": "fast"},
    retry=Retry(retries=2, interval=1, exceptions=(ValueError,)),
    permissions=[
        {"Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/lokki-test"},
        {"Action": "cloudwatch:PutMetricData", "Resource": "*", "WildcardReason": "PutMetricData takes no resource"},
    ],
)
def tuned(n: int = 2) -> list[int]:
    return list(range(n))


@step(requirements=["six==1.16.0"])
def echo(x: int) -> int:
    import six

    return x + len(six.__name__)


@step
def total(xs: list[int]) -> int:
    return sum(xs)


@flow(schedule="rate(1 day)")
def configured(n: int = 2):
    return tuned(n=n).map(echo).agg(total)
