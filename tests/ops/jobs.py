"""Jobs used by the operability tests."""

from __future__ import annotations

from taskmgr import scheduled_job, task


@scheduled_job(interval=60, misfire_grace_time=30, coalesce=True)
def ok() -> str:
    return "done"


@scheduled_job(interval=60, misfire_grace_time=30)
def boom() -> None:
    raise RuntimeError("boom")


@scheduled_job(interval=1, misfire_grace_time=None, coalesce=False)
def tick() -> None:
    pass


@task()
def send(to: str) -> str:
    return to
