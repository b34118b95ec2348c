"""The example's jobs: plain functions declared with ``@scheduled_job``.

They run on Celery workers (the service's default dispatcher), except
``local_cleanup``, which chooses ``dispatch="inline"`` and runs in the scheduler's own
process.
"""

from __future__ import annotations

import asyncio
import os

from taskmgr import current_execution, scheduled_job


@scheduled_job("example.report", interval=2, max_retries=2, timeout=30)
def report() -> dict[str, object]:
    context = current_execution()
    assert context is not None
    return {"rows": 42, "pid": os.getpid(), "slot": context.scheduled_for.isoformat()}


@scheduled_job("example.fetch", interval=3, timeout=10)
async def fetch() -> str:
    """``async def`` jobs run on the worker with ``asyncio.run``."""
    await asyncio.sleep(0.1)
    return f"fetched in {os.getpid()}"


@scheduled_job("example.local_cleanup", interval=5, dispatch="inline")
def local_cleanup() -> str:
    return f"cleaned up in {os.getpid()}"
