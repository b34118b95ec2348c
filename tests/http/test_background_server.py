"""``BackgroundServer`` (what ``taskmgr demo`` serves its dashboard with): it listens
when ``start()`` returns, frees its port on ``stop()``, and a port already in use is an
``OSError`` in the OS's words, with nothing written to stderr."""

from __future__ import annotations

import errno
import socket

import httpx2 as httpx
import pytest

from taskmgr import SchedulerService
from taskmgr.fastapi import BackgroundServer
from taskmgr.storage import MemoryStorage


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_port_in_use_is_an_os_error_and_nothing_on_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    service = SchedulerService(MemoryStorage())
    with _listening() as taken:
        port = taken.getsockname()[1]
        server = BackgroundServer(service, "127.0.0.1", port, public=True, writes="readers")
        with pytest.raises(OSError, match="in use") as info:
            server.start()
    assert info.value.errno == errno.EADDRINUSE
    assert capfd.readouterr().err == ""
    service.close()


def test_it_listens_once_started_and_frees_its_port_when_stopped() -> None:
    service = SchedulerService(MemoryStorage())
    with _listening() as probe:  # a port that is free once this closes
        port = probe.getsockname()[1]
    server = BackgroundServer(service, "127.0.0.1", port, public=True, writes="readers").start()
    try:
        assert httpx.get(f"{server.url}jobs", timeout=10).status_code == 200
    finally:
        server.stop()
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # would raise EADDRINUSE if still held
    service.close()
