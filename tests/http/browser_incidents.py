"""The open incidents in the dashboard's header, in headless Chromium
(``test_browser.py``): a started service whose job always fails opens an incident, the
header says how many are open in words and a glyph, and the list opens, stays open
across refreshes and leads to the job, by keyboard alone."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends

from taskmgr import AlertSettings, SchedulerService, scheduled_job
from taskmgr.fastapi import create_app
from taskmgr.storage.memory import MemoryStorage
from tests.http.browser_steps import _tab_to
from tests.http.conftest import PREFIX, actor_name, principal, require_writer

__all__ = ["ALERTING", "incident_app_server", "incidents_in_the_header"]

ALERTING = "demo.always-failing"


@scheduled_job(ALERTING, interval=1, misfire_grace_time=None, alert_failures=1)
def always_failing() -> None:
    raise RuntimeError("the mail server refuses us")


@contextmanager
def incident_app_server() -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in front of a started service
    that evaluates its alert rules every 0.2 s; yields the dashboard's URL."""
    import uvicorn

    service = SchedulerService(
        MemoryStorage(),
        jobs=[always_failing],
        poll_interval=0.2,
        alerts=AlertSettings(interval=0.2),
    )
    app = create_app(
        service,
        prefix=PREFIX,
        dependencies=[Depends(principal)],
        write_dependencies=[Depends(require_writer)],
        actor=actor_name,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}{PREFIX}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"
        assert not service.running


def incidents_in_the_header(page: Any, server: str, tmp_path: Path) -> None:
    page.goto(server)
    page.wait_for_selector("body[data-loaded=true]")
    summary = page.locator("#incidents-summary")
    summary.wait_for()  # the first page may come before the incident: the next refresh
    assert summary.inner_text() == "⚠ 1 open incident"  # words and a glyph, not a colour
    listing = page.locator("#incident-list")
    assert not listing.is_visible()

    # by keyboard: Tab to the summary, Enter opens the list
    _tab_to(page, "#incidents-summary")
    page.keyboard.press("Enter")
    listing.wait_for()
    item = listing.locator("li").first
    text = item.inner_text()
    assert "⚠ failing" in text and ALERTING in text
    assert "the last run failed (latest: RuntimeError: the mail server refuses us)" in text

    # the next refresh keeps it open, and the focus where it was
    with page.expect_response(lambda response: "incidents?open=true" in response.url):
        pass
    page.wait_for_function("() => document.activeElement.dataset.focus === 'incidents'")
    assert listing.is_visible()
    page.screenshot(path=str(tmp_path / "incidents.png"))

    # the job's link leads to its page
    _tab_to(page, f'#incident-list a[href="#job/{ALERTING}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**#job/{ALERTING}")
