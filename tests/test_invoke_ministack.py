"""The local-cloud harness itself: ministack listens on 127.0.0.1 only, and stops when its user fails."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from lokki_sam.emulator.errors import EmulatorError
from tests.support.ministack import Ministack, find_python

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses LISTENing on `port`, from /proc/net/tcp (hex, little-endian)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_listens_on_loopback_only_and_stops_when_the_body_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), Ministack.start(python=PYTHON, workdir=tmp_path) as cloud:
        with urllib.request.urlopen(f"{cloud.endpoint}/_ministack/health", timeout=5) as response:
            assert response.status == 200
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(cloud.port) == {"127.0.0.1"}
        assert (tmp_path / "home").is_dir()  # its HOME, not the user's
        raise RuntimeError("boom")
    assert cloud.process.poll() is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{cloud.endpoint}/_ministack/health", timeout=2)


def test_find_python_gives_this_interpreter_for_its_version_and_refuses_unknown_ones() -> None:
    assert find_python(PYTHON) == sys.executable
    with pytest.raises(EmulatorError, match=r"no python3\.1 found"):
        find_python("3.1")
