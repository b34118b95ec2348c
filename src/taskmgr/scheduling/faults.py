"""Fault-injection points for taskmgr's own reliability tests; inert in normal use.

Two environment variables, read once at import, switch them on:

``TASKMGR_FAULT_PAUSE_AT=<point>``
    The thread reaching ``checkpoint(<point>)`` writes its pid to the file named by
    ``TASKMGR_FAULT_MARKER`` (if set) and parks forever, so a test can SIGKILL the
    process at exactly that moment. Points: ``after_claim_commit`` (slots claimed and
    committed, nothing dispatched yet) and ``after_execute`` (the job returned, its
    outcome not yet handed to the writer).

``TASKMGR_FAULT_UNCOORDINATED=1``
    Bypass the database's claim: every process fires every slot from its own
    in-memory copy of the schedules, as independent APScheduler processes would.
    Only for proving that a test harness can see duplicate starts at all.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from pathlib import Path

from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger, Job, JobState
from taskmgr.scheduling.planner import due_slots, new_execution_id
from taskmgr.storage.base import Claimed, Planner, Storage

__all__ = ["UNCOORDINATED", "UncoordinatedClaims", "checkpoint"]

logger = logging.getLogger("taskmgr.faults")

_PAUSE_AT = os.environ.get("TASKMGR_FAULT_PAUSE_AT") or None
UNCOORDINATED = os.environ.get("TASKMGR_FAULT_UNCOORDINATED") == "1"


def checkpoint(point: str) -> None:
    if _PAUSE_AT is None or point != _PAUSE_AT:
        return
    marker = os.environ.get("TASKMGR_FAULT_MARKER")
    logger.error("fault injection: pausing at %s (pid %d)", point, os.getpid())
    if marker:
        Path(marker).write_text(str(os.getpid()))
    threading.Event().wait()  # until the test kills this process


class UncoordinatedClaims:
    """A stand-in for ``Storage.claim`` that claims nothing in the database."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.next_runs: dict[int, tuple[Job, datetime | None]] | None = None
        logger.error("fault injection: claims are NOT coordinated; slots will run twice")

    def claim(self, *, now: datetime, owner: str, limit: int, planner: Planner) -> list[Claimed]:
        if self.next_runs is None:
            jobs = self.storage.list_jobs(states=[JobState.ACTIVE])
            self.next_runs = {job.id: (job, job.next_run_at) for job in jobs}
        claimed: list[Claimed] = []
        for job_id, (job, next_run) in list(self.next_runs.items()):
            if next_run is None or next_run > now:
                continue
            slots, following, _ = due_slots(job.model_copy(update={"next_run_at": next_run}), now)
            self.next_runs[job_id] = (job, following)
            claimed += [Claimed(_execution(job, slot, owner, now), job) for slot in slots]
        return claimed[:limit]


def _execution(job: Job, slot: datetime, owner: str, now: datetime) -> Execution:
    return Execution(
        id=new_execution_id(),
        job_id=job.id,
        job_key=job.key,
        scheduled_for=slot,
        attempt=1,
        trigger=ExecutionTrigger.SCHEDULE,
        status=ExecutionStatus.RUNNING,
        due_at=slot,
        kwargs=job.kwargs,
        owner=owner,
        created_at=now,
        dispatched_at=now,
    )
