"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by
Playwright's Python package; never ``playwright install``), served by a real
uvicorn server on 127.0.0.1 in front of a started service running the demo jobs.

Skipped with a reason when Chromium or Playwright is missing on a developer's
machine; a failure when ``CI`` is set (or ``TASKMGR_REQUIRE_SERVICES=1``).
Set ``TASKMGR_UPDATE_SCREENSHOT=1`` to refresh the screenshots in ``docs/``
(``dashboard.png``, ``dashboard-failures.png``, ``dashboard-runs.png``,
``dashboard-confirm.png``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends

from taskmgr import SchedulerService, task
from taskmgr.fastapi import create_app
from taskmgr.storage.memory import MemoryStorage
from tests.http.browser_incidents import incident_app_server, incidents_in_the_header
from tests.http.browser_steps import (
    CHAIN_TEXT,
    DOCS,
    FLAKY,
    UPDATE_SCREENSHOTS,
    chains_and_keyboard,
    failures_view,
    far_one_shot_asks_first,
    filters_in_the_url,
    flaky_once_then_paused,
)
from tests.http.conftest import (
    ADMIN,
    PREFIX,
    READER,
    actor_name,
    principal,
    require_writer,
)
from tests.services import services_required

pytestmark = pytest.mark.slow  # a browser per test: started first in a parallel run

CHROMIUM = os.environ.get("TASKMGR_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 15_000
#: Whether the every-minute job's countdown reads "in 42 s" for the slot it showed (a
#: refresh may have brought the next slot meanwhile: that one is still to come too).
COUNTDOWN_READS = """(shown) => {
  const node = document.querySelector('tr[data-key="demo.every-minute"] .countdown');
  if (node === null) return false;
  if (node.dataset.at === shown) return node.textContent === "in 42 s";
  return node.textContent.startsWith("in ");
}"""
TASK = "demo.send-email"
#: Holds the task's run until the server stops: its other runs wait pending.
GATE = threading.Event()


@task(TASK, concurrency=1, description="A task: one email at a time.")
def send_email(to: str, template: str = "welcome") -> str:
    GATE.wait(30)
    return f"{template} mail sent to {to}"


def _require_browser() -> Any:
    reason = None
    if not Path(CHROMIUM).is_file():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "the playwright Python package is not installed"
    if reason is not None:
        if services_required():
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture
def server() -> Iterator[str]:
    """A real uvicorn server on a free loopback port; the app's lifespan starts the
    service (demo jobs, memory storage) and stops it."""
    import uvicorn

    from taskmgr.cli import demo as _demo

    GATE.clear()
    service = SchedulerService(MemoryStorage(), jobs=[_demo, send_email], poll_interval=0.2)
    app = create_app(
        service,
        prefix=PREFIX,
        dependencies=[Depends(principal)],
        write_dependencies=[Depends(require_writer)],
        actor=actor_name,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until uvicorn serves them
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}{PREFIX}/"
    finally:
        GATE.set()
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"
        assert not service.running


def test_dashboard_in_headless_chromium(server: str, tmp_path: Path) -> None:
    sync_playwright = _require_browser()
    problems: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = browser.new_context(
                extra_http_headers=ADMIN, viewport={"width": 1400, "height": 900}
            )
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("request", lambda request: requests.append(request.url))

            page.goto(server)
            page.wait_for_selector("body[data-loaded=true]")
            rows = page.locator("#jobs tbody tr")
            page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length >= 4")
            keys = set(rows.evaluate_all("rows => rows.map(r => r.dataset.key)"))
            assert {"demo.tick", "demo.every-minute", "demo.flaky", "demo.async-nap"} <= keys
            minute = page.locator('tr[data-key="demo.every-minute"]')
            # The countdown says "due now" from half a second before its slot: read on the
            # real clock, the slot of an every-minute job is that close about one run in
            # a hundred. Frozen 42 s before the slot the row shows, the page must read
            # exactly "in 42 s"; then it is given back the real time.
            shown = minute.locator(".countdown").get_attribute("data-at")
            assert shown is not None
            page.clock.set_fixed_time(datetime.fromisoformat(shown) - timedelta(seconds=42))
            page.wait_for_function(COUNTDOWN_READS, arg=shown)
            page.clock.set_system_time(datetime.now(UTC))
            assert "every minute" in minute.inner_text()
            # demo.tick runs every 2 s: its sparkline fills and its last status shows
            page.wait_for_selector('tr[data-key="demo.tick"] .last-run .s-success')

            minute.locator("button.run-now").click()
            page.wait_for_selector("#toast:not([hidden])")
            page.goto(server + "#job/demo.every-minute")
            manual = page.locator("#executions tbody tr", has_text="manual by alice")
            manual.first.wait_for()
            page.wait_for_selector("#executions tbody tr .s-success")
            manual.first.locator("button.rowlink").click()
            page.wait_for_selector("#drawer:not([hidden])")
            assert "a new minute" in page.locator("#drawer-body").inner_text()
            page.locator("#drawer-close").click()
            # the run is in the audit log: by whom, through the dashboard
            audited = page.locator("#job-audit tbody tr", has_text="trigger")
            assert "alice" in audited.first.inner_text()
            assert "dashboard" in audited.first.inner_text()
            page.goto(server + "#audit")
            page.locator("#audit tbody tr", has_text="demo.every-minute").first.wait_for()

            # a task: one run holds its only slot, the two deferred after it wait
            for n, to in enumerate(["ada@example.com", "bob@example.com", "cy@example.com"]):
                response = context.request.post(
                    f"{server}jobs/{TASK}/defer",
                    data={"kwargs": {"to": to}},
                    headers={**ADMIN, "Idempotency-Key": f"welcome-{n}"},
                )
                assert response.status == 202, response.text()
            page.goto(server)
            row = page.locator(f'tr[data-key="{TASK}"]')
            row.locator(".queue", has_text=re.compile(r"2 pending.*1 running", re.S)).wait_for()
            assert "task" in row.locator(".schedule").inner_text()
            assert "oldest waiting" in row.locator(".queue").inner_text()
            page.select_option("#filter-kind", "task")
            assert page.locator("#jobs tbody tr").count() == 1
            page.select_option("#filter-kind", "")
            page.goto(server + f"#job/{TASK}")
            waiting = page.locator("#executions tbody tr", has_text="pending")
            waiting.first.wait_for()
            waiting.last.locator("button.rowlink").click()  # the oldest: the second deferred
            page.wait_for_selector("#drawer:not([hidden])")
            drawer = page.locator("#drawer-body").inner_text()
            assert '"to": "bob@example.com"' in drawer
            assert "welcome-1" in drawer and "alice" in drawer and "deferred" in drawer
            page.screenshot(path=str(tmp_path / "task-drawer.png"))
            page.locator("#drawer-close").click()

            page.goto(server)
            page.wait_for_selector('tr[data-key="demo.flaky"] svg.spark')
            page.wait_for_selector('tr[data-key="demo.tick"] svg.spark rect')
            if UPDATE_SCREENSHOTS:
                # for the docs: the flaky job's first run has ended, two failures and a
                # success on its last retry (7 s + retries), a few more runs elsewhere
                page.locator(
                    f'tr[data-key="{FLAKY}"] .last-run .status', has_text=CHAIN_TEXT
                ).wait_for()
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if UPDATE_SCREENSHOTS:
                shutil.copy(shot, DOCS / "dashboard.png")

            flaky_once_then_paused(context, server)
            chains_and_keyboard(page, server)
            failures_view(page, server, tmp_path)
            filters_in_the_url(page, server, tmp_path)
            far_one_shot_asks_first(page, context, server, tmp_path)

            # a read-only principal sees the data but no action buttons
            reader = browser.new_context(extra_http_headers=READER)
            reader_page = reader.new_page()
            reader_page.set_default_timeout(TIMEOUT_MS)
            reader_page.on(
                "console", lambda m: problems.append(m.text) if m.type == "error" else None
            )
            reader_page.goto(server)
            reader_page.wait_for_selector('#jobs tbody tr[data-key="demo.tick"]')
            assert reader_page.locator("button.run-now").count() == 0
            assert not reader_page.locator("th.write-only").is_visible()
        finally:
            browser.close()
    assert problems == []
    origin = server.split(PREFIX)[0]
    assert all(url.startswith(origin) for url in requests), requests
    # the job list reads the sparklines' runs in one call, not one call per job
    recent = [url for url in requests if "/recent-executions?" in url]
    assert recent and all("job_key=demo.tick" in url for url in recent)
    assert not [url for url in requests if re.search(r"/jobs/[^/]+/executions\?limit=20$", url)]


@pytest.fixture
def other_port_page(server: str) -> Iterator[str]:
    """A page served on another port of 127.0.0.1 (same site, another origin) that
    tries to act on the dashboard's API with the operator's credentials: a ``fetch``
    without CORS preflight, then a form post."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    page = f"""<!doctype html><html><body>
<form id="form" method="post" action="{server}jobs/demo.tick/pause"
      enctype="application/x-www-form-urlencoded"><input name="force" value="1"></form>
<script>
fetch("{server}jobs/demo.tick/trigger", {{method: "POST", mode: "no-cors", credentials: "include"}})
  .finally(() => document.getElementById("form").submit());
</script></body></html>""".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


def test_a_page_on_another_port_cannot_act(server: str, other_port_page: str) -> None:
    sync_playwright = _require_browser()
    answered: dict[str, int] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            # the operator's credentials go with every request, as a cookie would
            context = browser.new_context(extra_http_headers=ADMIN)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on(
                "response",
                lambda response: (
                    answered.__setitem__(response.url, response.status)
                    if response.url.startswith(server)
                    else None
                ),
            )
            with page.expect_response(f"{server}jobs/demo.tick/pause"):
                page.goto(other_port_page)
            job = context.request.get(f"{server}jobs/demo.tick").json()
            runs = context.request.get(
                f"{server}executions", params={"job": "demo.tick", "status": "pending"}
            ).json()
        finally:
            browser.close()
    assert answered == {
        f"{server}jobs/demo.tick/trigger": 403,
        f"{server}jobs/demo.tick/pause": 403,
    }
    assert job["state"] == "active"
    assert all(run["trigger"] != "manual" for run in runs["items"])


@pytest.fixture
def incident_server() -> Iterator[str]:
    with incident_app_server() as base:
        yield base


def test_open_incidents_in_the_header(incident_server: str, tmp_path: Path) -> None:
    sync_playwright = _require_browser()
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = browser.new_context(
                extra_http_headers=ADMIN, viewport={"width": 1400, "height": 900}
            )
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            incidents_in_the_header(page, incident_server, tmp_path)
        finally:
            browser.close()
    assert problems == []
