"""The SQL backend's pauses: the pause rows of queues and of the service, what a claim
does with them (and with the jobs whose pause has run out), and backfills."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.enums import SLOT_TRIGGERS, JobState, PauseScope
from taskmgr.core.models import Job
from taskmgr.core.pauses import Pause
from taskmgr.core.rules import in_effect
from taskmgr.exceptions import ConflictError, JobNotFoundError, VersionConflictError
from taskmgr.storage.auditing import checked_audit, job_changes
from taskmgr.storage.inputs import member, utc
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
from taskmgr.storage.sqlalchemy.audit import insert_entry
from taskmgr.storage.sqlalchemy.database import Database, retried_once_if_timed_out
from taskmgr.storage.sqlalchemy.rows import execution_values, job_from_row, job_values
from taskmgr.storage.sqlalchemy.tables import Tables

__all__ = ["PauseOperations", "honour_pauses"]

#: Most jobs whose pause ran out one claim resumes (the next claim resumes the rest).
RESUME_BATCH = 100
#: Slots whose row a backfill looks up per statement.
_LOOKUP_BATCH = 500


def pause_from_row(row: Mapping[Any, Any]) -> Pause:
    scope = PauseScope(row["scope"])
    return Pause(
        scope=scope,
        name=None if scope is PauseScope.SERVICE else row["name"],
        paused_by=row["paused_by"],
        reason=row["reason"],
        paused_at=row["paused_at"],
        until=row["paused_until"],
    )


def _pause_values(pause: Pause) -> dict[str, Any]:
    return {
        "scope": pause.scope.value,
        "name": stored_name(pause.scope, pause.name),
        "paused_by": pause.paused_by,
        "reason": pause.reason,
        "paused_at": pause.paused_at,
        "paused_until": pause.until,
    }


def _ordered(pauses: Sequence[Pause]) -> list[Pause]:
    """The service's pause first, then the queues' by name (code point order)."""
    return sorted(pauses, key=lambda p: (p.scope is not PauseScope.SERVICE, p.name or ""))


def honour_pauses(conn: Connection, tables: Tables, *, now: datetime, sqlite: bool) -> list[Pause]:
    """In a claim's transaction: resume the jobs whose pause ran out, end the pauses of
    queues and of the service that ran out (each exactly once, however many claims race:
    the rows are locked, skipping those another claim holds, and the writes repeat their
    conditions), and return the pauses still in effect at ``now``."""
    _resume_jobs(conn, tables, now=now, sqlite=sqlite)
    pauses = tables.pauses
    p = pauses.c
    stored = [pause_from_row(row) for row in conn.execute(sa.select(pauses)).mappings()]
    for pause in stored:
        if in_effect(pause, now):
            continue
        key = (p.scope == pause.scope.value, p.name == stored_name(pause.scope, pause.name))
        found = sa.select(pauses).where(*key, p.paused_until <= now)
        if not sqlite:
            found = found.with_for_update(skip_locked=True)
        row = conn.execute(found).mappings().first()
        if row is None:
            continue  # another claim is ending it, or it was changed meanwhile
        ended = pause_from_row(row)
        conn.execute(sa.delete(pauses).where(*key))
        insert_entry(conn, tables.audit, auto_resume(now, ended))
    return _ordered([pause for pause in stored if in_effect(pause, now)])


def _resume_jobs(conn: Connection, tables: Tables, *, now: datetime, sqlite: bool) -> None:
    jobs = tables.jobs
    j = jobs.c
    query = (
        sa.select(jobs)
        .where(j.state == JobState.PAUSED.value, j.paused_until <= now)
        .order_by(j.paused_until, j.id)
        .limit(RESUME_BATCH)
    )
    if not sqlite:
        query = query.with_for_update(skip_locked=True)
    for row in conn.execute(query).mappings().all():
        job = job_from_row(row)
        resumed = resumed_at_until(job, now)
        values = job_values(resumed)
        for column in ("id", "job_key", "created_at"):
            del values[column]
        conn.execute(sa.update(jobs).where(j.id == job.id, j.version == job.version).values(values))
        insert_entry(
            conn,
            tables.audit,
            auto_resume(now, job_pause(job)),
            job_key=job.key,
            details={"changes": job_changes(job, resumed)},
        )


class PauseOperations(Database):
    """Pauses and backfills (see :class:`~taskmgr.storage.pause_store.PauseStore`)."""

    @retried_once_if_timed_out
    def set_pause(self, pause: Pause, *, audit: AuditRecord | None = None) -> Pause:
        pause = checked_pause(pause)
        audit = checked_audit(audit)
        pauses = self.tables.pauses
        p = pauses.c
        values = _pause_values(pause)
        key = (p.scope == values["scope"], p.name == values["name"])
        with self._tx("set_pause") as conn:
            row = conn.execute(self._lock(sa.select(pauses).where(*key))).mappings().first()
            before = None if row is None else pause_from_row(row)
            if before is not None:
                pause = pause.model_copy(update={"paused_at": before.paused_at})
                if pause == before:
                    return before
                values["paused_at"] = before.paused_at
                conn.execute(sa.update(pauses).where(*key).values(values))
            else:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(pauses).values(values))
                except sa.exc.IntegrityError as exc:  # another process paused it just now
                    raise ConflictError(
                        f"{pause.scope.value} {pause.name or ''} was paused meanwhile: try again"
                    ) from exc
            details = {"pause": pause_details(pause)}
            if before is not None:
                details["before"] = pause_details(before)
            insert_entry(conn, self.tables.audit, audit, details=details)
            self._changed(conn)
        return pause

    @retried_once_if_timed_out
    def delete_pause(
        self, scope: PauseScope, name: str | None, *, audit: AuditRecord | None = None
    ) -> Pause | None:
        scope = member(PauseScope, scope, "scope")
        stored = stored_name(scope, name)
        audit = checked_audit(audit)
        pauses = self.tables.pauses
        p = pauses.c
        key = (p.scope == scope.value, p.name == stored)
        with self._tx("delete_pause") as conn:
            row = conn.execute(self._lock(sa.select(pauses).where(*key))).mappings().first()
            if row is None:
                return None
            removed = pause_from_row(row)
            conn.execute(sa.delete(pauses).where(*key))
            insert_entry(conn, self.tables.audit, audit, details={"pause": pause_details(removed)})
            self._changed(conn)
        return removed

    def list_pauses(self, *, now: datetime) -> list[Pause]:
        now = utc(now, "now")
        with self._tx("list_pauses", write=False) as conn:
            rows = conn.execute(sa.select(self.tables.pauses)).mappings().all()
        return _ordered([p for p in map(pause_from_row, rows) if in_effect(p, now)])

    @retried_once_if_timed_out
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
        jobs, table = self.tables.jobs, self.tables.executions
        c = table.c
        with self._tx("add_backfill") as conn:
            row = conn.execute(self._lock(sa.select(jobs).where(jobs.c.id == job.id)))
            current = row.mappings().first()
            if current is None:
                raise JobNotFoundError(job.key)
            locked = job_from_row(current)
            if locked.version != job.version:
                raise VersionConflictError(
                    f"job {job.key!r} is at version {locked.version}, not {job.version}"
                )
            slots = [e.scheduled_for for e in executions]
            held: set[datetime] = set()
            for first in range(0, len(slots), _LOOKUP_BATCH):
                chunk = slots[first : first + _LOOKUP_BATCH]
                found = sa.select(c.scheduled_for).where(
                    c.job_id == job.id, c.scheduled_for.in_(chunk), _slot_rows(table)
                )
                held.update(conn.execute(found).scalars())
            plan = backfill_plan(executions, locked, held, now)
            if plan.insert:
                try:
                    with conn.begin_nested():
                        rows = [execution_values(e) for e in plan.insert]
                        conn.execute(sa.insert(table), rows)
                except sa.exc.IntegrityError as exc:  # an id is taken: nothing is written
                    raise ConflictError(
                        f"a run of the backfill of job {job.key!r} has the id of a stored one"
                    ) from exc
                details = {
                    "created": len(plan.insert),
                    "existing": plan.existing,
                    "scheduled": plan.scheduled,
                }
                insert_entry(conn, self.tables.audit, audit, job_key=job.key, details=details)
                self._changed(conn)
        return BackfillWrite(created=plan.insert, existing=plan.existing, scheduled=plan.scheduled)


def _slot_rows(table: sa.Table) -> sa.ColumnElement[bool]:
    """The rows that are slots of a schedule (the condition of the unique slot index)."""
    return table.c.trigger.in_(sorted(t.value for t in SLOT_TRIGGERS))
