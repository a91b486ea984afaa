"""A moto server in this process, on a free port of 127.0.0.1, for tests that need an S3 endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

from lokki_sam.emulator.process import free_port


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """Start a ThreadedMotoServer and yield its endpoint URL; stopped on exit."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
