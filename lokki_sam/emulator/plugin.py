"""lokki-sam's LocalStack plugins, installed into LocalStack's venv as a tiny wheel: the host
Lambda executor, and AWS Batch (a service provider running jobs on this machine, and the
CloudFormation resource providers of its resources).

The plugins' sources are `lokki_sam/emulator/localstack_executor/` and `localstack_batch/`
(shipped inside lokki-sam). They must import in LocalStack's venv, which has no lokki-sam, so
they are copied there as packages of their own, `lokki_sam_localstack` and
`lokki_sam_localstack_batch`. A wheel (`lokki_sam.project.wheel`: no build backend needed)
is the cleanest carrier: pip records its files, so a newer lokki-sam replaces them (and `pip
uninstall lokki-sam-localstack` removes them), and its `entry_points.txt` is how LocalStack
finds plugins (plux reads the namespaces `localstack.lambda.runtime_executor`,
`localstack.aws.provider` and `localstack.cloudformation.resource_providers`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from lokki_sam import __version__
from lokki_sam.emulator import python, venvs
from lokki_sam.emulator.errors import EmulatorError
from lokki_sam.project.wheel import write_wheel

EXECUTOR_NAME = "lokki-host"  # LAMBDA_RUNTIME_EXECUTOR
DIST = "lokki_sam_localstack"
SOURCE_PACKAGE = "lokki_sam.emulator.localstack_executor"
# AWS Batch (LocalStack's community edition has none): a service provider and the CloudFormation
# resource providers of its three resource types, in a package of their own.
BATCH_PACKAGE = f"{DIST}_batch"
BATCH_SOURCE_PACKAGE = "lokki_sam.emulator.localstack_batch"
PACKAGES = {DIST: SOURCE_PACKAGE, BATCH_PACKAGE: BATCH_SOURCE_PACKAGE}  # installed name -> source
BATCH_RESOURCE_PLUGINS = {
    "AWS::Batch::ComputeEnvironment": "ComputeEnvironmentPlugin",
    "AWS::Batch::JobQueue": "JobQueuePlugin",
    "AWS::Batch::JobDefinition": "JobDefinitionPlugin",
}
ENTRY_POINTS = (
    f"[localstack.lambda.runtime_executor]\n{EXECUTOR_NAME} = {DIST}.plugin:HostExecutorPlugin\n\n"
    f"[localstack.aws.provider]\nbatch:default = {BATCH_PACKAGE}.provider:batch\n\n"
    "[localstack.cloudformation.resource_providers]\n"
    + "".join(f"{kind.lower()} = {BATCH_PACKAGE}.resources:{cls}\n" for kind, cls in BATCH_RESOURCE_PLUGINS.items())
)
MARKER = ".lokki-executor"
BATCH_RUNNER = "LOKKI_EMULATOR_BATCH_RUNNER"
BATCH_PROJECT = "LOKKI_EMULATOR_PROJECT"


def sources(package: str = SOURCE_PACKAGE) -> dict[str, bytes]:
    """One of the plugin's packages (the Lambda executor by default): its modules by file name."""
    root = resources.files(package)
    return {f.name: f.read_bytes() for f in root.iterdir() if f.name.endswith(".py")}


def all_sources() -> dict[str, bytes]:
    """Every file the wheel installs, by its path there."""
    return {f"{dist}/{name}": data for dist, package in PACKAGES.items() for name, data in sources(package).items()}


def plugin_version() -> str:
    """lokki-sam's version plus a digest of the sources: an edited checkout reinstalls too."""
    digest = hashlib.sha256()
    for name, data in sorted(all_sources().items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"


def build_wheel(folder: Path) -> Path:
    version = plugin_version()
    files = dict(sorted(all_sources().items()))
    metadata = (
        f"Metadata-Version: 2.1\nName: lokki-sam-localstack\nVersion: {version}\n"
        "Summary: lokki-sam's host Lambda runtime executor for LocalStack (installed by `lokki-sam emulator`)\n"
    )
    return write_wheel(folder, DIST, version, files, metadata, ENTRY_POINTS)


def install(venv: Path, progress: Callable[[str], None]) -> None:
    """Install (or replace) the plugin in LocalStack's venv unless this exact version is there."""
    version = plugin_version()
    marker = venv / MARKER
    if marker.is_file() and marker.read_text().strip() == version:
        return
    with venvs.locked(f"{venv.name}-executor"), tempfile.TemporaryDirectory(prefix="lokki-executor-") as tmp:
        if marker.is_file() and marker.read_text().strip() == version:
            return
        progress(f"installing lokki-sam's host executor {version} into LocalStack's venv")
        wheel = build_wheel(Path(tmp))
        args = ["install", "--quiet", "--no-deps", "--no-index", "--force-reinstall", str(wheel)]
        venvs.pip(venv, args, EmulatorError)
        marker.write_text(version + "\n")


def runtime_path(venv: Path) -> Path:
    """Where boto3 for the functions is installed (AWS's runtime provides it the same way)."""
    return venv / "lambda-runtime"


# The executor's bounds, passed on from the user's shell when set (else its defaults: runtimes.py).
SETTINGS = {
    "LOKKI_EMULATOR_WORKERS": "function processes alive at once (0: one per concurrent invocation)",
    "LOKKI_EMULATOR_MAP_CONCURRENCY": "child executions at once of a map without MaxConcurrency (0: all)",
}


def executor_environment(venv: Path) -> dict[str, str]:
    """Settings the executor reads in the LocalStack process."""
    env = {
        "LOKKI_EMULATOR_PYTHONS": json.dumps(python.discover_all()),  # python3.X per function runtime
        "LOKKI_EMULATOR_RUNTIME_PATH": str(runtime_path(venv)),
        # How Batch jobs run: auto (a container when Docker has the job's image, else a host process), host, docker.
        BATCH_RUNNER: os.environ.get(BATCH_RUNNER, "auto"),
        # The project whose images/ stand in for a registry (localstack_batch/images.py): where `start` ran.
        BATCH_PROJECT: os.environ.get(BATCH_PROJECT) or os.getcwd(),
    }
    for name, meaning in SETTINGS.items():
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        if not value.isdigit():
            raise EmulatorError(
                f"{name}={value!r} is not a whole number >= 0",
                hint=f"{name} sets the {meaning}; unset it for the default",
            )
        env[name] = value
    return env
