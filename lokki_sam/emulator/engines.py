"""The two engines: what each installs, how it starts, and when it is ready.

Versions are pinned: LocalStack's Lambda executor interface is internal to LocalStack, and
lokki-sam's executor plugin is tested against exactly this version; ministack pins botocore.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from lokki_sam.emulator import plugin, python, venvs
from lokki_sam.emulator.errors import EmulatorError

REGION = "us-east-1"
# Variables never passed from the user's shell to an engine: credentials and endpoints are for
# clients, and a virtualenv or PYTHON* setting of the shell would leak into the engine's Python.
DROPPED_PREFIXES = ("AWS_", "PYTHON", "VIRTUAL_ENV", "LOKKI_", "SAM_")
INSTALL_HINT = (
    "the engine is installed with pip from your package index (PyPI, or PIP_INDEX_URL / PIP_FIND_LINKS); "
    "the output above says why it failed"
)

Progress = Callable[[str], None]


class Engine(abc.ABC):
    name: ClassVar[str]
    version: ClassVar[str]
    requirements: ClassVar[tuple[str, ...]]
    min_python: ClassVar[str]
    health_path: ClassVar[str]
    ready_timeout: ClassVar[float] = 60.0

    @abc.abstractmethod
    def default_python(self, cwd: Path) -> str: ...

    def check_python(self, version: str) -> None:
        if python.version_tuple(version) < python.version_tuple(self.min_python):
            raise EmulatorError(
                f"{self.name} {self.version} needs Python >= {self.min_python}, not {version}",
                hint=f"pass --python {self.min_python} (or newer), or leave --python out",
            )

    def venv_name(self, version: str) -> str:
        """Keyed by everything installed: changing a pin builds a new venv instead of reusing one."""
        pins = hashlib.sha256("\n".join(self.installs()).encode()).hexdigest()[:8]
        return f"{self.name}-{self.version}-py{version}-{pins}"

    def installs(self) -> tuple[str, ...]:
        return self.requirements

    def ensure_venv(self, version: str, progress: Progress) -> Path:
        try:
            interpreter = python.find_python(version)
        except EmulatorError as exc:
            raise EmulatorError(
                f"cannot run {self.name} {self.version} on Python {version}: {exc.message}", hint=exc.hint
            ) from None
        venv = venvs.cache_root() / self.venv_name(version)
        if not (venv / ".complete").exists():
            progress(
                f"installing {self.name} {self.version} for Python {version} into {venv} (first use, once: "
                f"{len(self.requirements)} requirement(s) and their dependencies, from your package index)"
            )
        try:
            name = self.venv_name(version)
            finish = functools.partial(self.finish, progress=progress)
            return venvs.cached_venv(name, interpreter, self.requirements, EmulatorError, finish, progress)
        except EmulatorError as exc:
            raise EmulatorError(
                f"cannot install {self.name} {self.version} for Python {version}: {exc.message}", hint=INSTALL_HINT
            ) from None

    def finish(self, venv: Path, progress: Progress) -> None:  # noqa: B027 - most engines need nothing more
        """Extra installs after the requirements, inside the venv build."""

    @abc.abstractmethod
    def command(self, venv: Path) -> list[str]: ...

    def environment(self, venv: Path, port: int, workdir: Path) -> dict[str, str]:
        """The engine's environment: the user's, minus credentials and Python settings, plus
        a private HOME and TMPDIR in `workdir` (Lambda code unpacks there, not in /tmp)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_PREFIXES)}
        home, tmp = workdir / "home", workdir / "tmp"
        home.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)
        env.update(
            HOME=str(home),
            TMPDIR=str(tmp),
            AWS_DEFAULT_REGION=REGION,
            PATH=os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")]),
        )
        return env

    def healthy(self, body: bytes) -> bool:
        return True


class Ministack(Engine):
    name = "ministack"
    version = "1.5.33"
    requirements = ("ministack==1.5.33", "aws-sam-translator==1.115.0")  # the translator: SAM templates in its CFN
    min_python = "3.10"
    health_path = "/_ministack/health"

    def default_python(self, cwd: Path) -> str:
        """Lambdas run under the venv's interpreter: the Runtime of ./template.yaml, else this Python."""
        return template_runtime(cwd) or python.current()

    def command(self, venv: Path) -> list[str]:
        return [str(venv / "bin" / "ministack")]

    def environment(self, venv: Path, port: int, workdir: Path) -> dict[str, str]:
        env = super().environment(venv, port, workdir)
        env.update(BIND_HOST="127.0.0.1", GATEWAY_PORT=str(port), LOG_LEVEL=env.get("MINISTACK_LOG_LEVEL", "WARNING"))
        return env


class Localstack(Engine):
    name = "localstack"
    version = "4.14.0"
    # localstack-core's own pins let these float to versions it cannot start with.
    requirements = (
        "localstack-core[runtime]==4.14.0",
        "cbor2<6",
        "pyopenssl<26",
        "cryptography<47",
        "service_identity",
    )
    min_python = "3.13"  # 3.12 lacks warnings.deprecated, which localstack-core 4.14 imports
    health_path = "/_localstack/health"
    # What functions import, as the AWS runtime provides it (the versions LocalStack itself pins).
    function_packages = ("boto3==1.42.54", "botocore==1.42.54")
    keepalive_ms = "60000"  # idle workers stop after a minute (LocalStack's default: 10)

    def default_python(self, cwd: Path) -> str:
        return self.min_python

    def installs(self) -> tuple[str, ...]:
        return self.requirements + self.function_packages

    def finish(self, venv: Path, progress: Progress) -> None:
        # boto3 for the functions, apart from LocalStack's site-packages (pure Python: any 3.10+ runtime).
        target = plugin.runtime_path(venv)
        progress(f"installing {', '.join(self.function_packages)} for the functions (AWS's runtime has them)")
        venvs.pip_install(venv, self.function_packages, EmulatorError, progress, "--target", str(target))

    def ensure_venv(self, version: str, progress: Progress) -> Path:
        venv = super().ensure_venv(version, progress)
        plugin.install(venv, progress)
        return venv

    def command(self, venv: Path) -> list[str]:
        return [str(venv / "bin" / "python"), "-m", "localstack.runtime.main"]

    def environment(self, venv: Path, port: int, workdir: Path) -> dict[str, str]:
        env = super().environment(venv, port, workdir)
        address = f"127.0.0.1:{port}"
        env.setdefault("LAMBDA_KEEPALIVE_MS", self.keepalive_ms)
        env.update(
            GATEWAY_LISTEN=address,
            LOCALSTACK_HOST=address,  # URLs it hands out (queues, presigned) point here, not at a DNS name
            DNS_ADDRESS="0",  # no DNS server (it would bind port 53 on every interface)
            DISABLE_EVENTS="1",  # no analytics calls to the internet
            SKIP_SSL_CERT_DOWNLOAD="1",
            FILESYSTEM_ROOT=str(workdir / "fs"),
            LAMBDA_RUNTIME_EXECUTOR=plugin.EXECUTOR_NAME,
        )
        env.update(plugin.executor_environment(venv))
        # tempfile reads TMP as well; LocalStack warns about TMPDIR (a deprecated setting of its own).
        env["TMP"] = env.pop("TMPDIR")
        return env

    def healthy(self, body: bytes) -> bool:
        try:
            services = json.loads(body).get("services", {})
        except (ValueError, AttributeError):
            return False
        return isinstance(services, Mapping) and services.get("lambda") in ("available", "running")


ENGINES: dict[str, Engine] = {engine.name: engine for engine in (Localstack(), Ministack())}
DEFAULT_ENGINE = "localstack"


def get_engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise EmulatorError(f"unknown engine '{name}'", hint=f"engines: {', '.join(ENGINES)}") from None


def template_runtime(cwd: Path) -> str | None:
    """The python3.X of `Runtime:` in cwd's template.yaml (the Globals' or the first function's)."""
    try:
        text = (cwd / "template.yaml").read_text()
    except OSError:
        return None
    found = re.search(r"^\s+Runtime:\s*python(3\.\d+)\s*$", text, flags=re.M)
    return found.group(1) if found else None
