"""The memory backend's pauses and backfills, as the SQL backend keeps them
(:mod:`taskmgr.storage.sqlalchemy.pauses`): pause rows of queues and of the service,
what a claim does with them and with the jobs whose pause ran out, and backfills."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from taskmgr.core.enums import JobState, PauseScope
from taskmgr.core.models import Job
from taskmgr.core.pauses import Pause
from taskmgr.core.rules import in_effect
from taskmgr.exceptions import JobNotFoundError, VersionConflictError
from taskmgr.storage.auditing import checked_audit, job_changes
from taskmgr.storage.common import execution_conflict
from taskmgr.storage.inputs import member, utc
from taskmgr.storage.memory.audit import write_entry
from taskmgr.storage.memory.state import State
from taskmgr.storage.pause_store import BackfillWrite
from taskmgr.storage.pausing import (
    auto_resume,
    backfill_plan,
    checked_backfill,
    checked_pause,
    job_pause,
    pause_details,
    resumed_at_until,
    stored_name,
)
from taskmgr.storage.records import AuditRecord, NewExecution

__all__ = ["MemoryPauseOperations", "honour_pauses"]

#: Most jobs whose pause ran out one claim resumes (as on SQL).
RESUME_BATCH = 100


def _ordered(pauses: Sequence[Pause]) -> list[Pause]:
    return sorted(pauses, key=lambda p: (p.scope is not PauseScope.SERVICE, p.name or ""))


def honour_pauses(state: State, now: datetime) -> list[Pause]:
    """In a claim: resume the jobs whose pause ran out, end the pauses of queues and of
    the service that ran out, and return those still in effect at ``now``."""
    expired = sorted(
        (
            job
            for job in state.jobs.values()
            if job.state is JobState.PAUSED
            and job.paused_until is not None
            and job.paused_until <= now
        ),
        key=lambda job: (job.paused_until, job.id),
    )[:RESUME_BATCH]
    for job in expired:
        resumed = resumed_at_until(job, now)
        state.put_job(resumed)
        write_entry(
            state,
            auto_resume(now, job_pause(job)),
            job_key=job.key,
            details={"changes": job_changes(job, resumed)},
        )
    kept = []
    for key, pause in list(state.pauses.items()):
        if in_effect(pause, now):
            kept.append(pause)
            continue
        state.drop(state.pauses, key)
        write_entry(state, auto_resume(now, pause))
    return _ordered(kept)


class MemoryPauseOperations:
    """The pause half of :class:`~taskmgr.storage.MemoryStorage` (see
    :class:`~taskmgr.storage.pause_store.PauseStore` for the contract)."""

    _lock: threading.RLock
    _state: State

    def _notify(self) -> None:
        raise NotImplementedError

    def set_pause(self, pause: Pause, *, audit: AuditRecord | None = None) -> Pause:
        pause = checked_pause(pause)
        audit = checked_audit(audit)
        key = (pause.scope.value, stored_name(pause.scope, pause.name))
        with self._lock, self._state.atomic():
            st = self._state
            before = st.pauses.get(key)
            if before is not None:
                pause = pause.model_copy(update={"paused_at": before.paused_at})
                if pause == before:
                    return before
            st.put(st.pauses, key, pause)
            details = {"pause": pause_details(pause)}
            if before is not None:
                details["before"] = pause_details(before)
            write_entry(st, audit, details=details)
        self._notify()
        return pause

    def delete_pause(
        self, scope: PauseScope, name: str | None, *, audit: AuditRecord | None = None
    ) -> Pause | None:
        scope = member(PauseScope, scope, "scope")
        key = (scope.value, stored_name(scope, name))
        audit = checked_audit(audit)
        with self._lock, self._state.atomic():
            st = self._state
            removed = st.pauses.get(key)
            if removed is None:
                return None
            st.drop(st.pauses, key)
            write_entry(st, audit, details={"pause": pause_details(removed)})
        self._notify()
        return removed

    def list_pauses(self, *, now: datetime) -> list[Pause]:
        now = utc(now, "now")
        with self._lock:
            return _ordered([p for p in self._state.pauses.values() if in_effect(p, now)])

    def add_backfill(
        self,
        news: Sequence[NewExecution],
        *,
        job: Job,
        now: datetime,
        audit: AuditRecord | None = None,
    ) -> BackfillWrite:
        executions = checked_backfill(news, job)
        now = utc(now, "now")
        audit = checked_audit(audit)
        with self._lock, self._state.atomic():
            st = self._state
            locked = st.jobs.get(job.id)
            if locked is None:
                raise JobNotFoundError(job.key)
            if locked.version != job.version:
                raise VersionConflictError(
                    f"job {job.key!r} is at version {locked.version}, not {job.version}"
                )
            held = {
                e.scheduled_for
                for e in executions
                if st.holder(("slot", job.id, e.scheduled_for)) is not None
            }
            plan = backfill_plan(executions, locked, held, now)
            for execution in plan.insert:
                if st.taken(execution):
                    raise execution_conflict(execution)
                st.put_execution(execution)
            if plan.insert:
                details = {
                    "created": len(plan.insert),
                    "existing": plan.existing,
                    "scheduled": plan.scheduled,
                }
                write_entry(st, audit, job_key=job.key, details=details)
        if plan.insert:
            self._notify()
        return BackfillWrite(created=plan.insert, existing=plan.existing, scheduled=plan.scheduled)
