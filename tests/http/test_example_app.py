"""``examples/fastapi_app`` runs under uvicorn and behaves as its README says: the
router under the shop's auth, and ``POST /signup`` deferring the welcome mail in the
signup's own transaction."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[str]:
    """The example app under uvicorn on a free loopback port; its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/shop.db",
        "SHOP_ADMIN_PASSWORD": "secret",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)]
    process = subprocess.Popen(
        command, cwd=APP_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
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
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM), stderr


def _ended(url: str, auth: tuple[str, str]) -> dict[str, Any]:
    """The execution at ``url`` once it has ended, polled (another process), bounded."""
    deadline = time.monotonic() + 15
    while (execution := httpx2.get(url, auth=auth, timeout=5).json())["status"] in (
        "pending",
        "running",
    ):
        assert time.monotonic() < deadline, execution
        time.sleep(0.05)
    return execution


@pytest.mark.slow
def test_example_app_under_uvicorn(shop: str) -> None:
    base = shop
    admin = ("admin", "secret")
    denied = httpx2.get(base + "/admin/jobs/jobs", timeout=5)
    assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Basic")
    jobs = httpx2.get(base + "/admin/jobs/jobs", auth=admin, timeout=5).json()["items"]
    assert {job["key"] for job in jobs} == {
        "catalogue.sync",
        "emails.welcome",
        "reports.nightly",
    }
    report = next(job for job in jobs if job["key"] == "reports.nightly")
    assert report["schedule"] == "every day at 02:30 (Europe/Berlin)"

    viewer = ("viewer", "look-only")
    trigger = base + "/admin/jobs/jobs/catalogue.sync/trigger"
    action = {"X-Taskmgr-Action": "1"}  # a write without a JSON body, as in the README
    refused = httpx2.post(trigger, auth=viewer, headers=action)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    unmarked = httpx2.post(trigger, auth=admin)  # what a cross-site form could send
    assert unmarked.status_code == 403 and unmarked.json()["code"] == "action_header_required"
    accepted = httpx2.post(trigger, auth=admin, headers=action)
    assert accepted.status_code == 202 and accepted.json()["actor"] == "admin"
    execution = _ended(accepted.headers["location"], admin)
    assert execution["status"] == "success"
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


@pytest.mark.slow
def test_signup_defers_the_welcome_mail_in_its_own_transaction(shop: str) -> None:
    admin = ("admin", "secret")
    signup = httpx2.post(shop + "/signup", json={"email": "ada@example.com"}, timeout=10)
    assert signup.status_code == 201, signup.text
    user_id, run_id = signup.json()["user_id"], signup.json()["welcome_run"]
    execution = _ended(f"{shop}/admin/jobs/executions/{run_id}", admin)
    # committed together: the task ran once, with the new user's id, and found the row
    assert execution["status"] == "success", execution
    assert execution["kwargs"] == {"user_id": user_id}
    assert execution["result_summary"] == {"sent_to": "ada@example.com"}

    refused = httpx2.post(
        shop + "/signup", json={"email": "bob@example.com", "referral": "NOPE"}, timeout=10
    )
    assert refused.status_code == 422, refused.text  # raised after the defer: rolled back
    taken = httpx2.post(shop + "/signup", json={"email": "ada@example.com"}, timeout=10)
    assert taken.status_code == 409, taken.text
    again = httpx2.post(shop + "/signup", json={"email": "bob@example.com"}, timeout=10)
    assert again.status_code == 201, again.text  # bob's rolled-back row is not there
    assert _ended(f"{shop}/admin/jobs/executions/{again.json()['welcome_run']}", admin)[
        "result_summary"
    ] == {"sent_to": "bob@example.com"}

    runs = httpx2.get(
        shop + "/admin/jobs/executions", params={"job": "emails.welcome"}, auth=admin, timeout=5
    ).json()["items"]
    # the rolled-back signup enqueued nothing: one run per committed signup, each once
    assert sorted((run["kwargs"]["user_id"], run["attempt"]) for run in runs) == [
        (user_id, 1),
        (again.json()["user_id"], 1),
    ]
