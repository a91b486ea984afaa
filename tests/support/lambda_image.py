"""A stand-in for AWS's Lambda Python base image, built offline from Debian packages, for `sam local invoke`.

No registry is reachable on our machines, so `public.ecr.aws/lambda/python:3.11` cannot be pulled. The
stand-in is **Debian 12 (bookworm), not Amazon Linux**: Debian's python3.11 (3.11.2), awslambdaric (the
runtime interface client AWS's image runs) and boto3, laid out as the AWS image is:

    /lambda-entrypoint.sh       runs the RIE when AWS_LAMBDA_RUNTIME_API is unset, else /var/runtime/bootstrap
    /var/runtime/bootstrap      exec /var/lang/bin/python3.11 -m awslambdaric "$_HANDLER"
    /var/runtime/               awslambdaric, boto3 (pip --target)
    /var/lang/bin/python3.11    -> /usr/bin/python3.11
    /var/task, /opt             the function's code, layers
    /usr/local/bin/aws-lambda-rie   the RIE bundled with the SAM CLI (for a plain `docker run -p`)

with the AWS image's ENV, WORKDIR /var/task and ENTRYPOINT ["/lambda-entrypoint.sh"]. Good enough for
pure-Python handlers; it is no claim about AWS's runtime (glibc, OpenSSL, system libraries differ).

The root filesystem is built once (debootstrap + pip, ~45 s) into a tarball cached under ~/.cache/lokki-sam/
(or $LOKKI_SAM_CACHE), keyed by every version that goes into it; each daemon then imports it in seconds.
It is tagged with every name SAM 1.170 asks for (see TAGS). A daemon that already has the images
(a developer's laptop with the real ones pulled) keeps them.

Usage:
    images = ensure_lambda_images(daemon)   # -> LambdaImages(tags, source, ...)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.docker_daemon import DockerDaemon, DockerSetupError, DockerUnavailable
from tests.support.venvs import cache_root

PYTHON = "3.11"
DEBIAN_SUITE = "bookworm"
AWSLAMBDARIC_VERSION = "4.2.2"
BOTO3_VERSION = "1.43.108"
LAYOUT_VERSION = 2  # bump when _lay_out() changes (the scripts it writes are hashed into the key anyway)
REPOSITORY = "public.ecr.aws/lambda/python"
STAND_IN_LABEL = "org.lokki-sam.stand-in"

# SAM's architecture name -> (Docker's and Debian's name, pip's wheel platform). This host's only: no emulation.
ARCHITECTURES = {"x86_64": ("amd64", "manylinux2014_x86_64"), "arm64": ("arm64", "manylinux2014_aarch64")}


def host_architecture() -> str:
    """SAM's name for this machine's architecture: x86_64 or arm64 (the stand-in is built for it only)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise DockerUnavailable(f"no Lambda architecture for this machine ({machine})")


def tags(architecture: str | None = None) -> list[str]:
    """The names SAM 1.170 asks the daemon for (samcli/local/docker/lambda_image.py, Runtime.get_image_name_tag):
    - a zip function (Runtime python3.11, Architectures [x86_64] or none) runs on `python:3.11-x86_64`
      (the tag carries the architecture because python3.11 has two); SAM builds `python:3.11-rapid-x86_64`
      on top of it itself, offline, adding the RIE it bundles;
    - an image function's Dockerfile says `FROM public.ecr.aws/lambda/python:3.11`, which `sam build`
      resolves locally (docker build with platform linux/amd64, no pull); `sam local invoke` then builds
      `<function image>:rapid-x86_64` from the function's own image."""
    arch = architecture or host_architecture()
    return [f"{REPOSITORY}:{PYTHON}-{arch}", f"{REPOSITORY}:{PYTHON}"]


@dataclass
class LambdaImages:
    tags: list[str]
    source: str  # "present" (the daemon had them), "imported" (the stand-in), "pulled" (the real ones)
    stand_in: bool  # the Debian stand-in (labelled), not AWS's image
    tarball: Path | None = None
    built_in: float = 0.0  # seconds to build the tarball (0: it was cached)
    imported_in: float = 0.0  # seconds for docker import + tags
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> list[str]:
        kind = "Debian stand-in" if self.stand_in else "AWS image"
        lines = [f"{tag} ({kind}, {self.source})" for tag in self.tags]
        if self.built_in:
            lines.append(f"built the root filesystem in {self.built_in:.0f} s: {self.tarball}")
        if self.imported_in:
            lines.append(f"imported in {self.imported_in:.1f} s")
        return lines


def ensure_lambda_images(daemon: DockerDaemon) -> LambdaImages:
    """Make TAGS resolvable on `daemon`: keep images it has, else pull them (an existing daemon: a laptop
    online), else import the stand-in (built and cached first if needed)."""
    import docker

    wanted = tags()
    client = docker.DockerClient(base_url=daemon.host, timeout=300)
    try:
        present = [_image_or_none(client, tag) for tag in wanted]
        if all(present):
            stand_in = any(STAND_IN_LABEL in ((image.labels or {}) if image else {}) for image in present)
            return LambdaImages(wanted, "present", stand_in)
        if not daemon.owned and _pull(client, wanted):  # our private daemons have no registry
            return LambdaImages(wanted, "pulled", False)
        tarball, built_in = cached_rootfs()
        began = time.perf_counter()
        _import(client, tarball, wanted)
        return LambdaImages(wanted, "imported", True, tarball, built_in, time.perf_counter() - began)
    finally:
        client.close()


def _image_or_none(client: Any, tag: str) -> Any:
    import docker

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _pull(client: Any, wanted: list[str]) -> bool:
    import docker

    try:
        for tag in wanted:
            repository, name = tag.rsplit(":", 1)
            client.images.pull(repository, tag=name)
    except docker.errors.APIError:
        return False
    return True


def _import(client: Any, tarball: Path, wanted: list[str]) -> None:
    arch = host_architecture()
    changes = [
        f"ENV LANG=C.UTF-8 TZ=:/etc/localtime PATH={PATH} LD_LIBRARY_PATH={LD_LIBRARY_PATH}",
        "ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime",
        "WORKDIR /var/task",
        'ENTRYPOINT ["/lambda-entrypoint.sh"]',
        f"LABEL {STAND_IN_LABEL}=debian-{DEBIAN_SUITE}-python{PYTHON}-awslambdaric{AWSLAMBDARIC_VERSION}",
    ]
    first, *others = wanted
    repository, tag = first.rsplit(":", 1)
    out = client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
    if "error" in str(out).lower():
        raise DockerSetupError(f"docker import of {tarball} failed: {out}")
    image = client.images.get(first)
    if image.attrs.get("Architecture") != ARCHITECTURES[arch][0]:
        raise DockerSetupError(f"imported image is {image.attrs.get('Architecture')}, expected {arch}")
    for name in others:
        repository, tag = name.rsplit(":", 1)
        image.tag(repository, tag=tag)


# ------------------------------------------------------------------------------------------ the root fs

PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LD_LIBRARY_PATH = "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"

ENTRYPOINT_SH = """\
#!/bin/sh
# As in AWS's Lambda base images: the handler is the only argument.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"

RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie $RUNTIME_ENTRYPOINT
else
  exec $RUNTIME_ENTRYPOINT
fi
"""

BOOTSTRAP_SH = f"""\
#!/bin/sh
# lokki-sam's Debian stand-in for the python{PYTHON} runtime: AWS's runtime interface client, as in AWS's image.
export AWS_EXECUTION_ENV=AWS_Lambda_python{PYTHON}
# AWS's sys.path order: the function, layers, then the runtime's packages (boto3).
LAYERS="/opt/python/lib/python{PYTHON}/site-packages:/opt/python"
export PYTHONPATH="${{LAMBDA_TASK_ROOT:-/var/task}}:$LAYERS:/var/runtime"
exec /var/lang/bin/python{PYTHON} -m awslambdaric "${{_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}}"
"""


def cache_key() -> str:
    """Every input of the tarball: versions, architecture, the layout and the scripts it writes."""
    layout = hashlib.sha256(f"{LAYOUT_VERSION}\n{ENTRYPOINT_SH}\n{BOOTSTRAP_SH}".encode()).hexdigest()[:10]
    return (
        f"lambda-python{PYTHON}-{DEBIAN_SUITE}-{host_architecture()}-awslambdaric{AWSLAMBDARIC_VERSION}"
        f"-boto3{BOTO3_VERSION}-{layout}"
    )


def cached_rootfs() -> tuple[Path, float]:
    """The stand-in's root filesystem as a tarball in the cache, and the seconds spent building it now
    (0: it was cached). Built once, under a file lock (parallel sessions wait for the first builder)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    tarball = root / f"{cache_key()}.tar"
    if tarball.exists():
        return tarball, 0.0
    began = time.perf_counter()
    with open(root / f"{cache_key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball, 0.0
        _build_rootfs(tarball)
    return tarball, time.perf_counter() - began


def _build_rootfs(tarball: Path) -> None:
    debootstrap = shutil.which("debootstrap", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if os.geteuid() != 0 or debootstrap is None:
        raise DockerUnavailable(
            f"the daemon lacks {REPOSITORY}:{PYTHON} and building the stand-in needs root and debootstrap"
        )
    debian_arch, wheel_platform = ARCHITECTURES[host_architecture()]
    work = Path(tempfile.mkdtemp(prefix="lambda-rootfs-", dir=tarball.parent))
    rootfs = work / "rootfs"
    try:
        mirror = os.environ.get("LOKKI_SAM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        include = "--include=python3,ca-certificates"
        _run([debootstrap, "--variant=minbase", f"--arch={debian_arch}", include, DEBIAN_SUITE, str(rootfs), mirror])
        target = ["--target", str(rootfs / "var/runtime"), "--no-compile"]
        wheels = ["--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"]
        wheels += ["--platform", wheel_platform]
        packages = [f"awslambdaric=={AWSLAMBDARIC_VERSION}", f"boto3=={BOTO3_VERSION}"]
        _run([sys.executable, "-m", "pip", "install", "--quiet", *target, *wheels, *packages])
        _lay_out(rootfs)
        partial = work / "rootfs.tar"
        _run(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(tarball)  # the finished tarball is the cache entry: it appears whole or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _lay_out(rootfs: Path) -> None:
    for folder in ("var/task", "var/runtime/lib", "var/lang/bin", "var/lang/lib", "opt", "opt/bin", "opt/lib"):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
    for name in (f"python{PYTHON}", "python3", "python"):
        (rootfs / "var/lang/bin" / name).symlink_to(f"/usr/bin/python{PYTHON}")
    _write(rootfs / "lambda-entrypoint.sh", ENTRYPOINT_SH)
    _write(rootfs / "var/runtime/bootstrap", BOOTSTRAP_SH)
    rie = _bundled_rie()
    if rie is not None:
        shutil.copy2(rie, rootfs / "usr/local/bin/aws-lambda-rie")
        (rootfs / "usr/local/bin/aws-lambda-rie").chmod(0o755)
    # What a function never needs: downloaded packages, package lists, docs, translations (-40 MB).
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info"):
        for path in (rootfs / junk).glob("*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()
    for path in (rootfs / "usr/share/locale").glob("*"):
        if path.is_dir() and not path.is_symlink():  # message catalogues; locale.alias stays
            shutil.rmtree(path)


def _bundled_rie() -> Path | None:
    try:
        import samcli.local.docker.lambda_image as sam_image
    except ImportError:
        return None
    suffix = "x86_64" if host_architecture() == "x86_64" else "arm64"
    path = Path(sam_image.__file__).parent.parent / "rapid" / f"aws-lambda-rie-{suffix}"
    return path if path.exists() else None


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DockerSetupError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
