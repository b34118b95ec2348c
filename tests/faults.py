"""Fault injection for the reliability suite, plugged in through the ``Storage`` port.

The installed package has no fault switch: a test process wraps its real storage in
:class:`FaultyStorage` (``tests/procs/run_service.py --pause-at/--uncoordinated``).

``pause_at="after_claim_commit"``
    The first claim that returns work commits as usual, then the claiming thread
    writes the process id to ``marker`` and parks forever, before anything is
    dispatched: the test SIGKILLs the process at exactly that moment.
``pause_at="after_execute"``
    The jobs run; the first write of their outcomes parks (after writing the
    marker), so they returned but nothing of their end is stored.
``pause_at="after_reap"``
    The first sweep that marks executions ``lost`` commits as usual, then the
    reaper thread parks (after writing the marker), before it does anything else
    with them (such as inserting their retries).
``uncoordinated=True``
    Claims bypass the database: every process fires every slot from its own copy of
    the schedules, as independent APScheduler processes would. Only for proving that
    the harness sees duplicate starts at all.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Job,
    JobState,
    new_execution_id,
)
from taskmgr.scheduling.planner import due_slots
from taskmgr.storage.base import Claimed, NewExecution, Outcome, Planner, Storage

__all__ = ["POINTS", "FaultyStorage"]

logger = logging.getLogger("tests.faults")

POINTS = ("after_claim_commit", "after_execute", "after_reap")


class FaultyStorage(Storage):
    """Forwards every call to ``inner``, except where a fault is asked for."""

    def __init__(
        self,
        inner: Storage,
        *,
        pause_at: str | None = None,
        marker: Path | None = None,
        uncoordinated: bool = False,
    ) -> None:
        if pause_at not in (None, *POINTS):
            raise ValueError(f"unknown fault point {pause_at!r}")
        self.inner = inner
        self.pause_at = pause_at
        self.marker = marker
        self.uncoordinated = uncoordinated
        self._next_runs: dict[int, tuple[Job, datetime | None]] | None = None

    def _park(self, point: str) -> None:
        logger.error("fault injection: pausing at %s (pid %d)", point, os.getpid())
        if self.marker is not None:
            self.marker.write_text(str(os.getpid()))
        threading.Event().wait()  # until the test kills this process

    def claim(
        self,
        *,
        now: datetime,
        owner: str,
        limit: int,
        planner: Planner,
        cap_at_database_now: bool = False,
        lookahead: float = 0.0,
    ) -> list[Claimed]:
        if self.uncoordinated:
            return self._claim_uncoordinated(now, owner, limit)
        claimed = self.inner.claim(
            now=now,
            owner=owner,
            limit=limit,
            planner=planner,
            cap_at_database_now=cap_at_database_now,
            lookahead=lookahead,
        )
        if claimed and self.pause_at == "after_claim_commit":
            self._park("after_claim_commit")
        return claimed

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if outcomes and self.pause_at == "after_execute":
            self._park("after_execute")
        return self.inner.record_outcomes(outcomes)

    def reap(
        self,
        *,
        heartbeat_before: datetime,
        now: datetime,
        retry: Callable[[Claimed], NewExecution | None] | None = None,
    ) -> list[Claimed] | None:
        lost = self.inner.reap(heartbeat_before=heartbeat_before, now=now, retry=retry)
        if lost and self.pause_at == "after_reap":
            self._park("after_reap")
        return lost

    def _claim_uncoordinated(self, now: datetime, owner: str, limit: int) -> list[Claimed]:
        if self._next_runs is None:
            jobs = self.inner.list_jobs(states=[JobState.ACTIVE])
            self._next_runs = {job.id: (job, job.next_run_at) for job in jobs}
        claimed: list[Claimed] = []
        for job_id, (job, next_run) in list(self._next_runs.items()):
            if next_run is None or next_run > now:
                continue
            slots, following, _ = due_slots(job.model_copy(update={"next_run_at": next_run}), now)
            self._next_runs[job_id] = (job, following)
            claimed += [Claimed(_execution(job, slot, owner, now), job) for slot in slots]
        return claimed[:limit]


def _forward(name: str) -> Callable[..., Any]:
    def forward(self: FaultyStorage, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    forward.__name__ = name
    return forward


for _name in dir(Storage):
    if (
        not _name.startswith("_")
        and _name not in ("claim", "record_outcomes", "reap")
        and callable(getattr(Storage, _name))
    ):
        setattr(FaultyStorage, _name, _forward(_name))
FaultyStorage.__abstractmethods__ = frozenset()


def _execution(job: Job, slot: datetime, owner: str, now: datetime) -> Execution:
    execution_id = new_execution_id()
    return Execution(
        id=execution_id,
        job_id=job.id,
        job_key=job.key,
        scheduled_for=slot,
        attempt=1,
        chain_id=execution_id,
        trigger=ExecutionTrigger.SCHEDULE,
        status=ExecutionStatus.RUNNING,
        due_at=slot,
        kwargs=job.kwargs,
        owner=owner,
        created_at=now,
        dispatched_at=now,
    )
