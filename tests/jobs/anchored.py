"""Interval jobs declared in code without a ``start``: each instance that syncs them
computes an anchor from its own clock, so the stored anchor must win for every
instance (reliability scenario "anchored start")."""

from __future__ import annotations

from taskmgr import scheduled_job
from tests.jobs.witness import witness

KEYS = tuple(f"anchored-{i}" for i in range(5))


@scheduled_job("anchored-0", interval=1)
def anchored_0() -> None:
    witness()


@scheduled_job("anchored-1", interval=1)
def anchored_1() -> None:
    witness()


@scheduled_job("anchored-2", interval=1)
def anchored_2() -> None:
    witness()


@scheduled_job("anchored-3", interval=2)
def anchored_3() -> None:
    witness()


@scheduled_job("anchored-4", interval=2)
def anchored_4() -> None:
    witness()
