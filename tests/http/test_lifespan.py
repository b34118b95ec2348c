"""``lifespan()``, ``create_app()``/``serve()``, and the import rules of the extra."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from taskmgr.fastapi import create_app, lifespan
from taskmgr.testing import make_test_service
from tests.http.conftest import register_all


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_taskmgr_does_not_import_fastapi() -> None:
    result = _run(
        """
        import sys, taskmgr
        assert "fastapi" not in sys.modules and "starlette" not in sys.modules
        """
    )
    assert result.returncode == 0, result.stderr


def test_missing_fastapi_names_the_extra() -> None:
    result = _run(
        """
        import sys
        sys.modules["fastapi"] = None  # as if it were not installed
        try:
            import taskmgr.fastapi
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'taskmgr[fastapi]'" in result.stdout


def test_lifespan_starts_and_stops_the_service() -> None:
    service = register_all(make_test_service())
    app = FastAPI(lifespan=lifespan(service))
    with TestClient(app):
        assert service.running
    assert not service.running


def test_lifespan_composes_with_the_hosts_own() -> None:
    service = register_all(make_test_service())
    events: list[str] = []

    @asynccontextmanager
    async def host_lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("host up")
        async with lifespan(service):
            events.append(f"taskmgr running={service.running}")
            yield
        events.append(f"host down, taskmgr running={service.running}")

    with TestClient(FastAPI(lifespan=host_lifespan)):
        pass
    assert events == ["host up", "taskmgr running=True", "host down, taskmgr running=False"]


def test_lifespan_leaves_a_service_started_by_someone_else_running() -> None:
    service = register_all(make_test_service()).start()
    try:
        with TestClient(FastAPI(lifespan=lifespan(service))):
            assert service.running
        assert service.running
    finally:
        service.shutdown()


def test_create_app_serves_router_and_dashboard_under_a_prefix() -> None:
    service = register_all(make_test_service())
    with TestClient(create_app(service, prefix="/tm", public=True, writes="readers")) as client:
        assert client.get("/tm/health").json()["running"] is True
        assert client.get("/tm/").headers["content-type"].startswith("text/html")
        spec = client.get("/openapi.json").json()
        assert spec["info"]["title"] == "taskmgr"
    assert not service.running


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_serve_runs_uvicorn_until_sigterm(tmp_path: Path) -> None:
    """What ``taskmgr demo`` will call: a real server on 127.0.0.1."""
    port = _free_port()
    code = f"""
        from taskmgr import SchedulerService
        from taskmgr.fastapi import serve
        import taskmgr.cli.demo as demo
        service = SchedulerService("sqlite:///{tmp_path}/serve.db", jobs=[demo])
        serve(service, port={port}, public=True, writes="readers")
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import httpx2

        deadline = time.monotonic() + 30
        while True:  # a separate process: poll its port, bounded
            try:
                response = httpx2.get(f"http://127.0.0.1:{port}/jobs", timeout=2)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert {job["key"] for job in response.json()["items"]} >= {"demo.tick"}
        assert httpx2.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down cleanly, then re-raises the signal it caught
    assert process.returncode in (0, -signal.SIGTERM), stderr
    from taskmgr import SchedulerService

    check = SchedulerService(f"sqlite:///{tmp_path}/serve.db")
    try:
        [instance] = check.list_instances()
        assert instance.status == "stopped"  # the lifespan shut the service down
    finally:
        check.close()
