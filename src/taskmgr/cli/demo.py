"""The jobs that ``taskmgr demo`` runs: one of each kind a user meets first.

Declared with ``@scheduled_job`` like any host's jobs and handed to the service
explicitly by the CLI; importing this module registers nothing.
"""

from __future__ import annotations

import asyncio
import random

from taskmgr.core.context import current_execution
from taskmgr.core.decorators import scheduled_job

__all__ = ["async_nap", "every_minute", "flaky", "tick"]


@scheduled_job("demo.tick", interval=2, description="An interval job: every 2 seconds.")
def tick() -> dict[str, int]:
    return {"random": random.randint(1, 6)}


@scheduled_job(
    "demo.every-minute", cron="* * * * *", description="A cron job: at the start of every minute."
)
def every_minute() -> str:
    return "a new minute"


@scheduled_job(
    "demo.flaky",
    interval=7,
    max_retries=2,
    retry_backoff=(0.5, 2.0),
    description="Fails twice, then succeeds on its last retry.",
)
def flaky() -> str:
    context = current_execution()
    attempt = context.attempt if context is not None else 1
    if attempt < 3:
        raise ConnectionError(f"service unavailable (attempt {attempt} of 3)")
    return "succeeded on the last retry"


@scheduled_job(
    "demo.async-nap",
    interval=5,
    timeout=2,
    description="An async def job, awaited on the service's event loop.",
)
async def async_nap() -> str:
    await asyncio.sleep(0.3)
    return "rested 0.3s"
