"""Which deployed stack a command talks to, and what its Outputs say (state machine ARNs, bucket).

Stack name: --stack-name, else samconfig.toml (`[<config-env>.deploy.parameters]` or `.global`),
else `stack_name` in lokki.toml. Region and profile: the option, else samconfig.toml, else
lokki.toml, else the AWS SDK's own defaults (AWS_REGION, AWS_PROFILE, ~/.aws/config).
With `target = "serverless"` in lokki.toml, serverless.yml takes samconfig.toml's place: the
stack is the framework's `<service>-<stage>` (or `provider.stackName`), the stage --config-env
(when given) else `provider.stage` else `dev`, the region `provider.region` else `us-east-1`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam import names
from lokki_sam.cloud.aws import Aws, AwsError, aws_errors, connect
from lokki_sam.config import Config
from lokki_sam.errors import ConfigError, LokkiError
from lokki_sam.store import IO_THREADS, S3Store

SAMCONFIG = "samconfig.toml"
SERVERLESS_YML = "serverless.yml"
# An output only the Serverless Framework's stacks have: how a stack given by name is recognised.
SERVERLESS_OUTPUT = "ServerlessDeploymentBucketName"
DEPLOY_COMMANDS = {"sam": "sam deploy", "serverless": "serverless deploy"}
ARN_SUFFIX = names.state_machine_arn_output("x")[1:]  # "StateMachineArn"
UNUSABLE_STATUSES = (
    "CREATE_IN_PROGRESS",
    "CREATE_FAILED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "DELETE_IN_PROGRESS",
    "DELETE_FAILED",
)


class StackNotFound(LokkiError):
    """No such stack, or it has no outputs for the requested flow."""


def read_samconfig(path: Path, config_env: str) -> dict[str, Any]:
    """`config_env`'s global parameters overlaid with its deploy parameters ({} without a file)."""
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=str(path)) from None
    env = data.get(config_env, {})
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        table = env.get(command, {}).get("parameters", {}) if isinstance(env, dict) else {}
        if isinstance(table, dict):
            merged.update(table)
    return merged


@dataclass(frozen=True)
class Target:
    """Where to look: stack, region, profile, endpoint, and where the stack name came from."""

    stack_name: str
    source: str
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    framework: str = "sam"  # or "serverless": how the stack names its functions


def resolve_target(
    config: Config,
    *,
    stack_name: str | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    config_env: str = "default",
    samconfig: Path | None = None,
) -> Target:
    if config.get("target") == "serverless":
        return serverless_target(config, stack_name, region, profile, endpoint_url, config_env)
    path = samconfig or Path.cwd() / SAMCONFIG
    sam = read_samconfig(path, config_env)
    if stack_name:
        name, source = stack_name, "--stack-name"
    elif sam.get("stack_name"):
        name, source = str(sam["stack_name"]), f"{path} [{config_env}]"
    elif config.get("stack_name"):
        name, source = str(config["stack_name"]), "lokki.toml stack_name"
    else:
        raise LokkiError(
            "which stack? no --stack-name, no stack_name in samconfig.toml, no stack_name in lokki.toml",
            hint="pass --stack-name NAME (the name given to `sam deploy`), or deploy once with `sam deploy --guided`",
        )
    return Target(
        stack_name=name,
        source=source,
        region=region or _str(sam.get("region")) or config.get("region"),
        profile=profile or _str(sam.get("profile")),
        endpoint_url=endpoint_url,
    )


def serverless_target(
    config: Config,
    stack_name: str | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
    config_env: str,
    path: Path | None = None,
) -> Target:
    """The stack and region of the serverless.yml in this folder (config `target = "serverless"`)."""
    path = path or Path.cwd() / SERVERLESS_YML
    found = None
    if path.is_file():
        try:
            found = serverless_stack(path, None if config_env == "default" else config_env)
        except LokkiError:
            if not stack_name:  # with --stack-name, serverless.yml only suggests the region
                raise
    if stack_name:
        name, source = stack_name, "--stack-name"
    elif found:
        name, source = found[0], str(path)
    elif config.get("stack_name"):
        name, source = str(config["stack_name"]), "lokki.toml stack_name"
    else:
        raise LokkiError(
            f"which stack? no --stack-name, no {path}, no stack_name in lokki.toml",
            hint="pass --stack-name <service>-<stage> (what `serverless deploy` printed), or run in the folder of "
            "serverless.yml",
        )
    return Target(
        stack_name=name,
        source=source,
        region=region or (found[1] if found else None) or config.get("region"),
        profile=profile,
        endpoint_url=endpoint_url,
        framework="serverless",
    )


def serverless_stack(path: Path, stage: str | None) -> tuple[str, str]:
    """(stack name, region) a serverless.yml deploys to, as the framework names them; `stage`
    overrides its provider.stage (as `serverless deploy --stage` does)."""
    from lokki_sam.compile.serverless_merge import parse

    doc = parse(path.read_text(encoding="utf-8"), str(path))
    provider = doc.get("provider") if isinstance(doc.get("provider"), Mapping) else {}
    service = doc.get("service")
    service = service.get("name") if isinstance(service, Mapping) else service

    def literal(value: Any, key: str, default: str | None = None) -> str:
        resolved = _variable_default(value) if value is not None else default
        if not resolved:
            raise LokkiError(
                f"cannot tell the stack from {key} in serverless.yml ({value!r})",
                where=f"{path}: {key}",
                hint="pass --stack-name <service>-<stage> (what `serverless deploy` printed)",
            )
        return resolved

    stage = stage or literal(provider.get("stage"), "provider.stage", "dev")
    if provider.get("stackName") is not None:
        name = literal(provider.get("stackName"), "provider.stackName")
    else:
        name = f"{literal(service, 'service')}-{stage}"
    return name, literal(provider.get("region"), "provider.region", "us-east-1")


_VARIABLE = re.compile(
    r"^\$\{(?P<source>[a-z]+):(?P<address>[A-Za-z0-9_.-]+)\s*,\s*(?P<quote>['\"])(?P<default>[^'\"]*)(?P=quote)\s*\}$"
)


def _variable_default(value: Any) -> str | None:
    """A literal, or what `${opt:x, 'default'}` / `${env:X, 'default'}` gives without the option: None
    for values only the framework can resolve."""
    text = str(value)
    if "${" not in text:
        return text
    found = _VARIABLE.match(text.strip())
    if found is None:
        return None
    if found["source"] == "env":
        return os.environ.get(found["address"], found["default"])
    return found["default"] if found["source"] == "opt" else None


def _str(value: Any) -> str | None:
    return str(value) if value else None


@dataclass
class Deployment:
    """A deployed stack: its outputs, and clients for the services the commands use."""

    aws: Aws
    stack_name: str
    outputs: dict[str, str]
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    framework: str = "sam"  # or "serverless" (by config, or by the stack's outputs)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            # S3 carries parallel artifact reads (retry throttling patiently, like the store's own client);
            # the control-plane calls fail fast, so an unreachable endpoint is reported in seconds.
            if service == "s3":
                config: dict[str, Any] = {
                    "max_pool_connections": IO_THREADS * 2,
                    "retries": {"mode": "adaptive", "max_attempts": 10},
                }
            else:
                config = {"retries": {"mode": "standard", "max_attempts": 3}}
            self._clients[service] = self.aws.client(service, **config)
        return self._clients[service]

    def flows(self) -> dict[str, str]:
        """State machine ARNs by flow name (the machines are named `<stack>-<flow>`), the spelling
        every command uses; an output of another shape keeps its output name."""
        found = {}
        for key, arn in self.outputs.items():
            if key.endswith(ARN_SUFFIX):
                machine = arn.rsplit(":", 1)[-1]
                name = machine.removeprefix(f"{self.stack_name}-")
                found[name if name != machine else key[: -len(ARN_SUFFIX)]] = arn
        return found

    def state_machine_arn(self, flow: str) -> str:
        arn = self.outputs.get(names.state_machine_arn_output(flow))
        if not arn:
            deployed = ", ".join(sorted(self.flows())) or "none"
            raise StackNotFound(
                f"stack '{self.stack_name}' has no state machine for flow '{flow}' "
                f"(no output {names.state_machine_arn_output(flow)})",
                hint=f"flows deployed there: {deployed}; run `lokki-sam generate`, `sam build` and `sam deploy` "
                f"to add it, or pick another --stack-name",
            )
        return arn

    @property
    def bucket(self) -> str:
        bucket = self.outputs.get(names.BUCKET_OUTPUT)
        if not bucket:
            raise StackNotFound(
                f"stack '{self.stack_name}' has no output {names.BUCKET_OUTPUT}",
                hint="is it a lokki-sam stack? regenerate template.yaml with `lokki-sam generate` and redeploy",
            )
        return bucket

    def store(self, flow: str) -> S3Store:
        return S3Store(self.bucket, names.flow_prefix(self.stack_name, flow), client=self.client("s3"))

    def function_name(self, flow: str, step: str) -> str | None:
        """The physical name of a step's Lambda function (None if the stack does not say)."""
        logical_id = names.serverless_function_id if self.framework == "serverless" else names.function_id
        return self.physical_id(logical_id(flow, step))

    def job_log_group(self, flow: str, step: str) -> str:
        """The log group of a Batch step's jobs (the stack's, else the name lokki-sam gives it)."""
        found = self.physical_id(names.job_log_group_id(flow, step))
        return found or names.job_log_group(self.stack_name, flow, step)

    def physical_id(self, logical_id: str) -> str | None:
        """The physical ID of one of the stack's resources (None if the stack does not say)."""
        import botocore.exceptions

        try:
            with aws_errors():
                found = self.client("cloudformation").describe_stack_resource(
                    StackName=self.stack_name, LogicalResourceId=logical_id
                )
        except (AwsError, botocore.exceptions.ClientError):
            return None
        name: str | None = found.get("StackResourceDetail", {}).get("PhysicalResourceId")
        return name

    def log_group(self, function_name: str) -> str:
        """The function's CloudWatch log group: its LoggingConfig.LogGroup, else /aws/lambda/<name>."""
        import botocore.exceptions

        default = f"/aws/lambda/{function_name}"
        try:
            with aws_errors():
                config = self.client("lambda").get_function_configuration(FunctionName=function_name)
        except (AwsError, botocore.exceptions.ClientError):
            return default
        return str(config.get("LoggingConfig", {}).get("LogGroup") or default)


def open_deployment(target: Target) -> Deployment:
    """Describe the stack; a missing or unusable stack is an error that lists the stacks that exist."""
    import botocore.exceptions

    aws = connect(region=target.region, profile=target.profile, endpoint_url=target.endpoint_url)
    where = f"region {aws.region}" + (f", endpoint {target.endpoint_url}" if target.endpoint_url else "")
    deployment = Deployment(aws, target.stack_name, {})
    cfn = deployment.client("cloudformation")
    with aws_errors(f"stack '{target.stack_name}'"):
        try:
            stacks = cfn.describe_stacks(StackName=target.stack_name)["Stacks"]
        except botocore.exceptions.ClientError as exc:
            if "does not exist" not in str(exc):
                raise
            stacks = []
    if not stacks:
        raise StackNotFound(
            f"no stack '{target.stack_name}' in {where} (name from {target.source})",
            hint=f"stacks there: {_stack_names(cfn)}; deploy with `{DEPLOY_COMMANDS[target.framework]}`, "
            "or pass --stack-name / --region" + (" / --config-env STAGE" if target.framework == "serverless" else ""),
        )
    stack = stacks[0]
    status = str(stack.get("StackStatus", ""))
    if status in UNUSABLE_STATUSES:
        raise StackNotFound(
            f"stack '{target.stack_name}' is {status}: it has no usable outputs",
            hint="see `aws cloudformation describe-stack-events`, fix the template and run `sam deploy` again",
        )
    deployment.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", ())}
    if SERVERLESS_OUTPUT in deployment.outputs:
        deployment.framework = "serverless"
    else:
        deployment.framework = target.framework
    return deployment


def _stack_names(cfn: Any) -> str:
    try:
        with aws_errors():
            summaries = cfn.list_stacks()["StackSummaries"]
    except (AwsError, Exception):
        return "(could not list them)"
    alive = sorted({s["StackName"] for s in summaries if s.get("StackStatus") != "DELETE_COMPLETE"})
    return ", ".join(alive) or "none"


def deployment(config: Config, aws: Mapping[str, Any]) -> Deployment:
    """Open the stack the command-line options in `aws` (stack_name, config_env, endpoint_url,
    region, profile) name, falling back to samconfig.toml and lokki.toml."""
    target = resolve_target(
        config,
        stack_name=aws["stack_name"],
        region=aws["region"],
        profile=aws["profile"],
        endpoint_url=aws["endpoint_url"],
        config_env=aws["config_env"],
    )
    return open_deployment(target)
