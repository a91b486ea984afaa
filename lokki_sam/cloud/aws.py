"""AWS sessions for the deployed-flow commands, and AWS errors turned into messages that say how to fix them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lokki_sam.errors import LokkiError

REGION_HINT = "pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or `region` in lokki.toml / samconfig.toml"
CREDENTIALS_HINT = (
    "configure credentials: `aws configure` or `aws sso login`, --profile / AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (any dummy values for a local cloud)"
)


class AwsError(LokkiError):
    """An AWS call failed for a reason the user can fix (region, credentials, endpoint, access)."""


@dataclass(frozen=True)
class Aws:
    """A boto3 session plus the endpoint override (--endpoint-url; AWS_ENDPOINT_URL is read by boto3 itself)."""

    session: Any
    endpoint_url: str | None

    @property
    def region(self) -> str:
        region: str | None = self.session.region_name
        if not region:
            raise AwsError("no AWS region configured", hint=REGION_HINT)
        return region

    def client(self, service: str, **config: Any) -> Any:
        from botocore.config import Config

        kwargs: dict[str, Any] = {"region_name": self.region, "config": Config(**config) if config else None}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        with aws_errors():
            return self.session.client(service, **kwargs)


def connect(*, region: str | None, profile: str | None, endpoint_url: str | None) -> Aws:
    import boto3
    import botocore.exceptions

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except botocore.exceptions.ProfileNotFound as exc:
        import botocore.session

        # A plain botocore session lists the profiles without resolving the missing one.
        known = ", ".join(sorted(botocore.session.Session(profile=None).full_config.get("profiles", {}))) or "none"
        name = profile or exc.kwargs.get("profile")
        source = "--profile" if profile else "AWS_PROFILE"
        raise AwsError(
            f"AWS profile '{name}' ({source}) not found",
            hint=f"profiles in your AWS config: {known}; pass --profile NAME or unset AWS_PROFILE",
        ) from None
    return Aws(session, endpoint_url)


@contextlib.contextmanager
def aws_errors(what: str = "") -> Iterator[None]:
    """Translate botocore errors into AwsErrors (catch a ClientError inside the block to handle it first)."""
    import botocore.exceptions as bx

    prefix = f"{what}: " if what else ""
    try:
        yield
    except bx.NoRegionError:
        raise AwsError("no AWS region configured", hint=REGION_HINT) from None
    except bx.ProfileNotFound as exc:
        raise AwsError(
            f"{prefix}AWS profile '{exc.kwargs.get('profile')}' not found",
            hint="pass --profile NAME or unset AWS_PROFILE",
        ) from None
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        raise AwsError(f"{prefix}no AWS credentials found", hint=CREDENTIALS_HINT) from None
    except bx.EndpointConnectionError as exc:
        raise AwsError(
            f"{prefix}cannot reach {exc.kwargs.get('endpoint_url', 'the AWS endpoint')}",
            hint="check --endpoint-url / AWS_ENDPOINT_URL, and that the local cloud is running "
            "(`lokki-sam emulator status`; start one with `lokki-sam emulator start`)",
        ) from None
    except bx.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException"):
            raise AwsError(f"{prefix}AWS rejected the credentials ({code})", hint=CREDENTIALS_HINT) from None
        if code in ("AccessDenied", "AccessDeniedException"):
            raise AwsError(
                f"{prefix}access denied: {error.get('Message', '')}",
                hint="use credentials allowed to read the stack, its state machines and its bucket",
            ) from None
        raise AwsError(f"{prefix}{code}: {error.get('Message', exc)}") from None
    except bx.BotoCoreError as exc:
        raise AwsError(f"{prefix}{exc}") from None
