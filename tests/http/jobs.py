"""The jobs of the HTTP tests: what a host registers in code."""

from __future__ import annotations

import threading

from taskmgr import scheduled_job

#: Set by ``blocking`` while it runs; ``release`` lets it finish.
started = threading.Event()
release = threading.Event()


@scheduled_job(
    "http.report",
    cron="30 2 * * *",
    timezone="Europe/Berlin",
    names={"en": "Nightly report", "de": "Nächtlicher Bericht"},
    description="Mails the nightly report.",
)
def nightly_report(recipients: list[str] | None = None) -> dict[str, int]:
    return {"sent": len(recipients or [])}


@scheduled_job("http.sync", interval=60, description="Syncs the catalogue.")
def sync() -> str:
    return "synced"


def add(a: int = 1, b: int = 2) -> int:
    """Registered without a schedule: jobs for it are created over HTTP."""
    return a + b


def boom() -> None:
    raise RuntimeError("boom")


def blocking() -> str:
    started.set()
    release.wait(10)
    return "released"
