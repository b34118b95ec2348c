"""Celery tasks a host already has, as a team arriving with its own tasks has them:
plain Celery tasks on the host's app (``define``), which taskmgr schedules and defers
with ``celery_job``. Each records its start in the witness table, as the jobs of
``tests.celery.jobs`` do."""

from __future__ import annotations

import time
from typing import Any

from tests.celery import jobs


def add(x: int, y: int) -> int:
    jobs.record()
    return x + y


def flaky(self: Any, n: int) -> dict[str, object]:
    """A ``bind=True`` task that asks Celery for a retry on its first attempt."""
    jobs.record()
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError(f"first attempt of {n} fails"), countdown=60)
    return {"n": n, "retries": self.request.retries, "id": self.request.id}


def nap(seconds: float = 30.0) -> None:
    """Sleeps past its own soft time limit."""
    jobs.record()
    time.sleep(seconds)


def define(app: Any) -> dict[str, Any]:
    """Register the host's tasks on ``app``; their objects by name."""
    return {
        "host.add": app.task(name="host.add")(add),
        "host.flaky": app.task(name="host.flaky", bind=True, max_retries=1)(flaky),
        "host.nap": app.task(name="host.nap", soft_time_limit=1)(nap),
    }
