"""Session fixtures for tests that run the real `sam local invoke` on a real Docker daemon.

Load them in a test module with `pytest_plugins = ["tests.support.docker_fixtures"]` (fixtures of a
plugin are shared by the whole session: one daemon however many modules use it), mark the tests
`@pytest.mark.docker`, then:

    def test_x(sam_env: dict[str, str], tmp_path: Path) -> None:
        run_sam(["build"], cwd=app, env=sam_env)
        result = sam_local_invoke("Fn", cwd=app, env=sam_env, event={...})

- `docker_daemon`: the DockerDaemon (existing or private, see tests/support/docker_daemon.py); skips the
  test with the reason when this machine has none and cannot start one; stopped at session end.
- `lambda_images`: the Lambda Python base images SAM asks for, present on that daemon (stand-in or real).
- `sam_env`: the environment for SAM subprocesses (DOCKER_HOST, a session HOME, dummy AWS settings).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import docker_daemon as daemons
from tests.support.lambda_image import LambdaImages, ensure_lambda_images
from tests.support.sam_local import sam_env as make_sam_env


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[daemons.DockerDaemon]:
    try:
        daemon = daemons.acquire()
    except daemons.DockerUnavailable as exc:
        pytest.skip(f"no Docker daemon: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def lambda_images(docker_daemon: daemons.DockerDaemon) -> LambdaImages:
    try:
        return ensure_lambda_images(docker_daemon)
    except daemons.DockerUnavailable as exc:
        pytest.skip(f"no Lambda base image: {exc}")


@pytest.fixture(scope="session")
def sam_env(
    docker_daemon: daemons.DockerDaemon, lambda_images: LambdaImages, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return make_sam_env(tmp_path_factory.mktemp("sam-home"), docker_daemon.host)
