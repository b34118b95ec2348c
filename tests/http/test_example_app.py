"""``examples/fastapi_app`` runs under uvicorn and behaves as its README says."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_example_app_under_uvicorn(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "TASKMGR_DATABASE_URL": f"sqlite:///{tmp_path}/shop.db",
        "SHOP_ADMIN_PASSWORD": "secret",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=APP_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    admin = ("admin", "secret")
    try:
        deadline = time.monotonic() + 30
        while True:  # another process: poll its port, bounded
            try:
                home = httpx2.get(base + "/", timeout=2)
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        assert home.json() == {"message": "welcome to the shop"}  # the host's own lifespan ran

        denied = httpx2.get(base + "/admin/jobs/jobs", timeout=5)
        assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic")
        jobs = httpx2.get(base + "/admin/jobs/jobs", auth=admin, timeout=5).json()["items"]
        assert {job["key"] for job in jobs} == {"catalogue.sync", "reports.nightly"}
        report = next(job for job in jobs if job["key"] == "reports.nightly")
        assert report["schedule"] == "every day at 02:30 (Europe/Berlin)"

        viewer = ("viewer", "look-only")
        refused = httpx2.post(base + "/admin/jobs/jobs/catalogue.sync/trigger", auth=viewer)
        assert refused.status_code == 403
        accepted = httpx2.post(base + "/admin/jobs/jobs/catalogue.sync/trigger", auth=admin)
        assert accepted.status_code == 202 and accepted.json()["actor"] == "admin"
        execution_url = accepted.headers["location"]
        deadline = time.monotonic() + 15
        while (execution := httpx2.get(execution_url, auth=admin).json())["status"] != "success":
            assert time.monotonic() < deadline, execution
            time.sleep(0.05)
        assert execution["result_summary"]["full"] is False

        created = httpx2.post(
            base + "/admin/jobs/jobs",
            auth=admin,
            json={
                "key": "search.rebuild",
                "func": "jobs.rebuild_search_index",
                "cron": "0 4 * * *",
            },
        )
        assert created.status_code == 201, created.text
        page = httpx2.get(base + "/admin/jobs/", auth=admin)
        assert page.status_code == 200 and "app.js" in page.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM), stderr
