"""The operator's steps of the headless-Chromium test (``test_browser.py``): a run and
its retries told as one chain, by keyboard; the failures view; the history's filters
in the URL; the confirmation before a one-shot job far from its time runs by hand.

Each step takes the test's page (and context) on the demo service, after the flaky
demo job's first run ended and the job was paused (:func:`flaky_once_then_paused`),
so what the pages show holds still. Screenshots go to the test's ``tmp_path``, and to
``docs/`` with ``TASKMGR_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.http.conftest import ACTION, ADMIN

__all__ = [
    "CHAIN_TEXT",
    "DOCS",
    "FLAKY",
    "UPDATE_SCREENSHOTS",
    "chains_and_keyboard",
    "failures_view",
    "far_one_shot_asks_first",
    "filters_in_the_url",
    "flaky_once_then_paused",
]

DOCS = Path(__file__).resolve().parents[2] / "docs"
UPDATE_SCREENSHOTS = os.environ.get("TASKMGR_UPDATE_SCREENSHOT") == "1"
#: The demo's job that fails twice, then succeeds on its last retry (every 7 s).
FLAKY = "demo.flaky"
CHAIN_TEXT = "✓ success after 2 failed attempts"


def _screenshot(page: Any, tmp_path: Path, name: str, around: Any = None) -> None:
    """A small PNG of the page down to its legend (at most the viewport), or of the
    element ``around`` with a margin: in ``tmp_path``, and in ``docs/`` when updating."""
    shot = tmp_path / name
    size = page.viewport_size
    if around is not None:
        box = around.bounding_box()
        margin = 24
        clip = {
            "x": max(box["x"] - margin, 0),
            "y": max(box["y"] - margin, 0),
            "width": box["width"] + 2 * margin,
            "height": box["height"] + 2 * margin,
        }
    else:
        bottom = page.evaluate(
            "() => document.querySelector('footer').getBoundingClientRect().bottom"
        )
        clip = {
            "x": 0,
            "y": 0,
            "width": size["width"],
            "height": min(round(bottom) + 8, size["height"]),
        }
    page.screenshot(path=str(shot), clip=clip)
    assert shot.stat().st_size > 5_000
    if UPDATE_SCREENSHOTS:
        shutil.copy(shot, DOCS / name)


def _api(context: Any, server: str, path: str, **params: Any) -> Any:
    response = context.request.get(f"{server}{path}", params=params, headers=ADMIN)
    assert response.ok, response.text()
    return response.json()


def flaky_once_then_paused(context: Any, server: str) -> None:
    """Wait for the flaky demo job's first run to end (two failed attempts, then a
    success), and pause it at once, so what the pages show next holds still."""
    deadline = time.monotonic() + 30
    while not _api(context, server, "executions", job=FLAKY, status="success")["items"]:
        assert time.monotonic() < deadline, "demo.flaky never succeeded"
        time.sleep(0.1)
    paused = context.request.post(f"{server}jobs/{FLAKY}/pause", headers={**ADMIN, **ACTION})
    assert paused.ok, paused.text()
    runs = _api(context, server, "executions", job=FLAKY)["items"]
    assert [(e["attempt"], e["status"]) for e in reversed(runs)] == [
        (1, "failed"),
        (2, "failed"),
        (3, "success"),
    ]


def _active_focus(page: Any) -> str:
    return str(page.evaluate("document.activeElement.dataset.focus || ''"))


def _tab_to(page: Any, selector: str, limit: int = 120) -> None:
    """Press Tab until the focus is on ``selector``: reachable by keyboard alone."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab")


def chains_and_keyboard(page: Any, server: str) -> None:
    # the job list's last run tells the chain, not a bare success
    page.goto(server)
    last = page.locator(f'tr[data-key="{FLAKY}"] .last-run')
    last.locator(".status", has_text=CHAIN_TEXT).wait_for()
    # the header says what is paused, and leads to it
    page.locator("#paused-jobs", has_text="❚❚ 1 job paused").click()
    page.wait_for_url(re.compile(r"#\?state=paused$"))
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 1")
    assert page.locator("#filter-state").input_value() == "paused"
    assert page.locator("#jobs tbody tr").get_attribute("data-key") == FLAKY
    # ... and which maintenance windows are open (on the paused job: nothing changes)
    now = datetime.now(UTC)
    window = {
        "name": "flaky-fix",
        "job_key": FLAKY,
        "start": (now - timedelta(minutes=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "reason": "fixing it",
    }
    added = page.context.request.post(f"{server}windows", data=window, headers=ADMIN)
    assert added.status == 201, added.text()
    page.reload()
    badge = page.locator(".badge.window", has_text=f"⚒ window flaky-fix (skip, job {FLAKY})")
    badge.wait_for()
    assert badge.get_attribute("title") == "fixing it · by alice"
    removed = page.context.request.delete(f"{server}windows/flaky-fix", headers={**ADMIN, **ACTION})
    assert removed.status == 204, removed.text()

    # the job's history: one row for the run, its two failed attempts folded under it
    page.goto(server + f"#job/{FLAKY}")
    head = page.locator("#executions tr.chain-head", has_text=CHAIN_TEXT)
    head.wait_for()
    chain = head.get_attribute("data-chain")
    earlier = page.locator(f'#executions tr.attempt[data-chain="{chain}"]')
    assert earlier.count() == 2 and not earlier.first.is_visible()

    # by keyboard: Tab to the run's toggle, Space unfolds the attempts
    toggle = f'#executions tr.chain-head[data-chain="{chain}"] .chain-toggle'
    _tab_to(page, toggle)
    assert page.locator(toggle).get_attribute("aria-expanded") == "false"
    page.keyboard.press("Space")
    assert page.locator(toggle).get_attribute("aria-expanded") == "true"
    assert earlier.first.is_visible()
    assert "✗ failed after 1 failed attempt" in earlier.first.inner_text()
    # back to the run's own button: Enter opens the drawer, the focus goes in
    page.keyboard.press("Shift+Tab")
    opener = _active_focus(page)
    assert opener.startswith("open:")
    page.keyboard.press("Enter")
    page.wait_for_selector("#drawer:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "drawer-close"
    assert CHAIN_TEXT in page.locator("#drawer-chain-text").inner_text()
    attempts = page.locator("#drawer-chain li")
    assert attempts.count() == 3
    assert "ConnectionError" in attempts.first.inner_text()
    # Escape closes it and gives the focus back to the button that opened it
    page.keyboard.press("Escape")
    page.wait_for_selector("#drawer", state="hidden")
    assert _active_focus(page) == opener


def failures_view(page: Any, server: str, tmp_path: Path) -> None:
    page.locator('nav a[data-view="failures"]').click()
    group = page.locator(f'#failures tr[data-job="{FLAKY}"]')
    group.wait_for()
    text = group.inner_text()
    assert "ConnectionError" in text and "✗ failed" in text
    assert "2 attempts" in text and "in 1 run" in text
    assert "service unavailable (attempt 2 of 3)" in text
    assert page.locator("#failures tbody tr").count() == 1  # nothing else failed
    _screenshot(page, tmp_path, "dashboard-failures.png")
    # its runs: the two failed attempts of the one run
    group.get_by_role("link", name="View runs").click()
    page.wait_for_url(re.compile(r"#runs\?job=demo\.flaky&status=failed"))
    page.locator("#runs tr.chain-head", has_text="✗ failed after 1 failed attempt").wait_for()
    assert page.locator("#runs tbody tr").count() == 2


def _rows_are(page: Any, condition: str) -> None:
    """Wait until the runs table's row count ``n`` meets ``condition`` (a function, not
    an expression: the page's CSP forbids ``eval``, which polling an expression uses)."""
    page.wait_for_function(
        f"() => (n => {condition})(document.querySelectorAll('#runs tbody tr').length)"
    )


def filters_in_the_url(page: Any, server: str, tmp_path: Path) -> None:
    page.goto(server + "#runs")
    rows = page.locator("#runs tbody tr")
    _rows_are(page, "n > 5")
    form = page.locator("#runs-filters")
    form.locator('input[name="job"]').fill(FLAKY)
    page.wait_for_url(re.compile(r"job=demo\.flaky"))
    page.wait_for_function(  # a function: CSP forbids the eval of an expression
        "() => [...document.querySelectorAll('#runs tbody tr')]"
        ".every(r => r.innerText.includes('demo.flaky'))"
    )
    assert rows.count() == 3  # the run's three attempts, as one chain
    form.get_by_label("retry").check()
    page.wait_for_url(re.compile(r"trigger=retry"))
    _rows_are(page, "n === 2")
    form.get_by_label("✓ success").check()
    _rows_are(page, "n === 1")
    assert CHAIN_TEXT in rows.first.inner_text()
    # a reload (or a shared link) keeps the filters and the rows
    url = page.url
    page.reload()
    page.wait_for_selector("body[data-loaded=true]")
    assert page.url == url
    assert form.locator('input[name="job"]').input_value() == FLAKY
    assert form.get_by_label("retry").is_checked() and form.get_by_label("✓ success").is_checked()
    assert not form.get_by_label("✗ failed").is_checked()
    _rows_are(page, "n === 1")
    assert CHAIN_TEXT in rows.first.inner_text()
    form.get_by_label("retry").uncheck()
    form.get_by_label("✓ success").uncheck()
    form.locator('select[name="range"]').select_option("1h")
    page.wait_for_url(re.compile(r"range=1h"))
    _rows_are(page, "n === 3")
    page.locator("#runs .chain-toggle").first.click()  # the run's attempts, unfolded
    _screenshot(page, tmp_path, "dashboard-runs.png")


def far_one_shot_asks_first(page: Any, context: Any, server: str, tmp_path: Path) -> None:
    func = _api(context, server, "jobs/demo.every-minute")["func"]  # succeeds
    now = datetime.now(UTC)
    for key, at in (
        ("ops.far-once", now + timedelta(days=2)),
        ("ops.soon", now + timedelta(minutes=10)),
    ):
        created = context.request.post(
            f"{server}jobs",
            data={"key": key, "func": func, "at": at.isoformat(), "description": "A one-shot job."},
            headers=ADMIN,
        )
        assert created.status == 201, created.text()
    page.goto(server)
    run = page.locator('tr[data-key="ops.far-once"] button.run-now')
    run.wait_for()
    run.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    dialog.wait_for()
    assert "one-shot" in dialog.inner_text() and "stays scheduled" in dialog.inner_text()
    assert page.evaluate("document.activeElement.id") == "confirm-cancel"
    _screenshot(page, tmp_path, "dashboard-confirm.png", around=dialog)
    page.keyboard.press("Escape")  # no: nothing runs, the focus is back on the button
    dialog.wait_for(state="hidden")
    assert _active_focus(page) == "run:ops.far-once"
    page.locator("#toast", has_text="was not run").wait_for()
    assert _api(context, server, "executions", job="ops.far-once")["items"] == []
    run.click()
    dialog.get_by_role("button", name="Run now anyway").click()
    page.locator("#toast", has_text="Run of ops.far-once queued").wait_for()
    [manual] = _api(context, server, "executions", job="ops.far-once", trigger="manual")["items"]
    assert manual["actor"] == "alice"
    # a one-shot due soon runs at once, like any job
    page.locator('tr[data-key="ops.soon"] button.run-now').click()
    page.locator("#toast", has_text="Run of ops.soon queued").wait_for()
    assert not dialog.is_visible()
