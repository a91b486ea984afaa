"""AWS Batch jobs that really run, on this machine: moto's job, with its Docker runner replaced.

LocalStack bundles moto's Batch backend (queues, definitions, jobs and their states), whose
runner needs a Docker daemon and the network of moto's own container setup. `HostJob` keeps
moto's model and runs the job's command with its environment (the job definition's, then
`ContainerOverrides`, then the `AWS_BATCH_*` variables AWS sets):

- in a container, when a Docker daemon answers and has the image, or can build it from the
  project the local cloud serves (images.py): `docker run --network host --pull never`;
- else as a host process: the command as written, with LocalStack as the AWS endpoint and, at the
  end of PYTHONPATH, the boto3 lokki-sam installs for the local cloud's functions; an image of the
  project runs on its files in place (images.py), any other image is not used.
`LOKKI_EMULATOR_BATCH_RUNNER=docker` insists on a container, `host` never tries one.

Its output goes to CloudWatch Logs line by line (the job definition's `awslogs-group` and
`awslogs-stream-prefix`, as on AWS; else group `/aws/batch/job`); its exit code decides SUCCEEDED
or FAILED and is reported in DescribeJobs (`container.exitCode`, `statusReason`), as AWS reports
it; TerminateJob and the job's timeout stop the process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localstack import config  # type: ignore[import-not-found]

from . import images

# The moto LocalStack bundles (moto-ext): not the moto of lokki-sam's own environment, so untyped here.
batch_models: Any = importlib.import_module("moto.batch.models")
JobStatus: Any = importlib.import_module("moto.batch.utils").JobStatus

LOG = logging.getLogger(__name__)
RUNNER_ENV = "LOKKI_EMULATOR_BATCH_RUNNER"  # auto (default), host or docker
RUNTIME_PATH_ENV = "LOKKI_EMULATOR_RUNTIME_PATH"  # boto3 for the local cloud's code (plugin.runtime_path)
LOG_GROUP = "/aws/batch/job"
EXITED = "Essential container in task exited"  # AWS's statusReason for a job whose command failed
TIMED_OUT = "Job attempt duration exceeded timeout"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class HostJob(batch_models.Job):  # type: ignore[misc]  # moto's class is untyped here
    """moto's Batch job, run by this module instead of moto's Docker runner."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._transitions: list[tuple[str | None, str]] = []  # this runner sets every status itself, when it happens
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    # --------------------------------------------------------------------- what moto shows

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = super().describe()
        container = described.get("container")
        if isinstance(container, dict):
            logging = (self.job_definition.container_properties or {}).get("logConfiguration")
            if logging:  # as AWS's DescribeJobs shows it: where the job's log stream is
                container["logConfiguration"] = logging
            if self.exit_code is not None:
                container["exitCode"] = self.exit_code
                if self.job_stopped_reason:
                    container["reason"] = self.job_stopped_reason
        return described

    @property
    def log_group(self) -> str:
        """The job definition's `awslogs-group`, else Batch's default group."""
        return str(self._log_options().get("awslogs-group") or LOG_GROUP)

    @property
    def stream_name(self) -> str:
        """`<awslogs-stream-prefix>/default/<job id>` (AWS ends it with the task's id), else moto's name."""
        prefix = self._log_options().get("awslogs-stream-prefix")
        return f"{prefix}/default/{self.job_id}" if prefix else str(self._stream_name)

    def _log_options(self) -> dict[str, Any]:
        logging = (self.job_definition.container_properties or {}).get("logConfiguration") or {}
        options = logging.get("options") if logging.get("logDriver", "awslogs") == "awslogs" else None
        return options if isinstance(options, dict) else {}

    def _get_container_property(self, p: str, default: Any) -> Any:
        if p == "environment":  # moto's adds AWS_BATCH_JOB_ID once per call: list the job's own once
            return [{"name": k, "value": v} for k, v in self.declared_environment().items()]
        return super()._get_container_property(p, default)

    def declared_environment(self) -> dict[str, str]:
        """The job definition's variables, overridden by ContainerOverrides', plus AWS_BATCH_*."""
        properties = self.job_definition.container_properties or {}
        env = {e["name"]: str(e.get("value", "")) for e in properties.get("environment", [])}
        env.update({e["name"]: str(e.get("value", "")) for e in self.container_overrides.get("environment", [])})
        env.update(
            AWS_BATCH_JOB_ID=self.job_id,
            AWS_BATCH_JQ_NAME=self.job_queue.name,
            AWS_BATCH_JOB_ATTEMPT=str(len(self.attempts) or 1),
        )
        if "index" in self.array_properties:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(self.array_properties["index"])
        return env

    # --------------------------------------------------------------------------- running

    def terminate(self, reason: str) -> None:
        super().terminate(reason)
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                _kill(self._process)

    def run(self) -> None:
        try:
            self.status = JobStatus.PENDING
            if self.depends_on and not self._wait_for_dependencies():
                return
            self.status = JobStatus.RUNNABLE
            self.status = JobStatus.STARTING
            if self.stop:  # cancelled before it started
                self._mark_stopped(success=False)
                return
            command = self._add_parameters_to_command(self._get_container_property("command", []))
            if not command:
                self._fail(None, "the job definition has no command")
                return
            self.job_started_at = dt.datetime.now()
            self.log_stream_name = self.stream_name
            self._start_attempt()
            self.status = JobStatus.RUNNING
            code, reason = self._run_command([str(part) for part in command])
            if code == 0 and not self.stop:
                self.exit_code = 0
                self._mark_stopped(success=True)
            else:
                self._fail(code, self.job_stopped_reason or reason)
        except Exception as exc:  # the job fails, LocalStack carries on
            LOG.exception("lokki-sam local cloud: Batch job %s could not run", self.job_id)
            self._fail(None, f"lokki-sam local cloud: the job could not run: {exc}")

    exit_code: int | None

    def _fail(self, code: int | None, reason: str) -> None:
        self.exit_code = code
        self.job_stopped_reason = reason
        if self.latest_attempt is not None:
            self.latest_attempt["container"].update(
                {"reason": reason, **({"exitCode": code} if code is not None else {})}
            )
        self._mark_stopped(success=False)

    def _run_command(self, command: list[str]) -> tuple[int | None, str]:
        image = (self.job_definition.container_properties or {}).get("image", "")
        env = self.declared_environment()
        sink = LogSink(self._log_backend, self.log_group, self.stream_name)
        project = images.find(image)
        with tempfile.TemporaryDirectory(prefix=f"lokki-batch-{self.job_id[:8]}-") as work:
            runner, cwd = choose_runner(image, project), Path(work)
            absent = images.missing(image) if runner == "host" else None
            if absent is not None:  # a lokki-sam image neither Docker nor the project has
                sink.write(absent)
                return None, absent  # no container ran: no exit code, as on AWS
            if runner == "build":
                assert project is not None
                sink.write(f"lokki-sam local cloud: building {image} from {project.dockerfile}")
                built, output = _build_once(project, image)
                if not built:
                    sink.write(output)
                    return None, f"CannotPullContainerError: lokki-sam local cloud: docker build of {image} failed"
                runner = "docker"
            if runner == "docker":
                args, process_env = docker_command(self, image, command, env), dict(os.environ)
                sink.write(f"lokki-sam local cloud: running in a container from {image}")
            elif project is not None:
                root = images.task_root(project, Path(work) / "task")
                args, process_env, cwd = (
                    images.host_command(command, project),
                    host_environment(self, env, work),
                    root,
                )
                process_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), process_env.get("PYTHONPATH")) if p)
                process_env["PYTHONDONTWRITEBYTECODE"] = "1"  # the files are the project's: write nothing there
                skipped = f"; its {project.runs} RUN line(s) not run" if project.runs else ""
                sink.write(f"lokki-sam local cloud: a host process on the files of {project.dockerfile}{skipped}")
            else:
                args, process_env = command, host_environment(self, env, work)
            process = subprocess.Popen(
                args,
                env=process_env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its children are stopped with it
            )
            with self._lock:
                self._process = process
            reader = threading.Thread(target=sink.copy, args=(process,), daemon=True)
            reader.start()
            timeout = self._get_attempt_duration()
            try:
                code = process.wait(timeout=timeout)
                reason = EXITED
            except subprocess.TimeoutExpired:
                _kill(process)
                code, reason = process.wait(), TIMED_OUT
            reader.join()
        return (128 - code if code < 0 else code), reason  # killed by signal N: exit code 128 + N


def choose_runner(image: str, project: images.ProjectImage | None) -> str:
    """`docker` (the daemon has the image), `build` (it can build it from the project first) or `host`."""
    wanted = os.environ.get(RUNNER_ENV, "auto").strip().lower() or "auto"
    if wanted == "host":
        return "host"
    docker = shutil.which("docker")
    if docker is None or not image:
        return "docker" if wanted == "docker" else "host"
    if _docker(docker, "image", "inspect", image):
        return "docker"
    if project is not None and _docker(docker, "version"):
        return "build"
    return "docker" if wanted == "docker" else "host"


def _docker(docker: str, *args: str) -> bool:
    try:
        return subprocess.run([docker, *args], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_BUILDS: dict[str, threading.Lock] = {}
_BUILDS_LOCK = threading.Lock()


def _build_once(project: images.ProjectImage, image: str) -> tuple[bool, str]:
    """Build the image unless a job started at the same time just did (one build per image name)."""
    with _BUILDS_LOCK:
        lock = _BUILDS.setdefault(image, threading.Lock())
    with lock:
        docker = shutil.which("docker")
        if docker is not None and _docker(docker, "image", "inspect", image):
            return True, ""
        return images.build(project, image)


def host_environment(job: HostJob, declared: Mapping[str, str], work: str) -> dict[str, str]:
    """What a host process gets: AWS's variables pointing at LocalStack, then the job's own."""
    port = config.GATEWAY_LISTEN[0].port
    region = job.job_definition._region
    env = {
        "PATH": DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "HOME": work,
        "TMPDIR": work,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # LocalStack reads a 12-digit access key as the account: the job acts in its own.
        "AWS_ACCESS_KEY_ID": job.job_definition.backend.account_id,
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    env.update(declared)
    runtime_path = os.environ.get(RUNTIME_PATH_ENV, "")
    if runtime_path:  # boto3, as a Batch image would carry it; the job's own path comes first
        env["PYTHONPATH"] = os.pathsep.join(p for p in (declared.get("PYTHONPATH", ""), runtime_path) if p)
    return env


def docker_command(job: HostJob, image: str, command: list[str], declared: Mapping[str, str]) -> list[str]:
    port = config.GATEWAY_LISTEN[0].port
    region = job.job_definition._region
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": job.job_definition.backend.account_id,
        "AWS_SECRET_ACCESS_KEY": "test",
        **declared,
    }
    args = ["docker", "run", "--rm", "--network", "host", "--pull", "never", "--name", f"lokki-batch-{job.job_id}"]
    for name, value in env.items():
        args += ["--env", f"{name}={value}"]
    return [*args, image, *command]


class LogSink:
    """The job's output, line by line, into its CloudWatch Logs stream."""

    def __init__(self, backend: Any, group: str, stream: str) -> None:
        self.backend, self.group, self.stream = backend, group, stream
        backend.ensure_log_group(group)
        backend.ensure_log_stream(group, stream)

    def write(self, line: str) -> None:
        event = {"timestamp": int(time.time() * 1000), "message": line.rstrip("\n")}
        self.backend.put_log_events(self.group, self.stream, [event])

    def copy(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.write(raw.decode("utf-8", errors="replace"))


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def install() -> None:
    """Make moto's Batch backend create `HostJob`s (SubmitJob builds jobs by this module name)."""
    batch_models.Job = HostJob
