"""The SQL backend's job operations: add, read, list, update and delete job rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.models import ExecutionStatus, Job, JobDefinition, JobSource, JobState
from taskmgr.exceptions import JobExistsError, JobNotFoundError, VersionConflictError
from taskmgr.storage.auditing import checked_audit, job_changes, job_snapshot
from taskmgr.storage.common import apply_job_changes, job_from_definition
from taskmgr.storage.inputs import (
    checked_limit,
    checked_text,
    fold_ascii,
    member,
    members,
    utc,
)
from taskmgr.storage.records import AuditRecord
from taskmgr.storage.sqlalchemy.audit import insert_entry
from taskmgr.storage.sqlalchemy.database import Database, retried_once_if_timed_out
from taskmgr.storage.sqlalchemy.rows import job_from_row, job_values

__all__ = ["JobOperations"]

_PENDING = ExecutionStatus.PENDING.value
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class JobOperations(Database):
    """The job half of the storage contract (see :class:`~taskmgr.storage.base.Storage`)."""

    @retried_once_if_timed_out
    def add_job(
        self,
        definition: JobDefinition,
        *,
        source: JobSource,
        state: JobState,
        next_run_at: datetime | None,
        fingerprint: str | None,
        now: datetime,
        audit: AuditRecord | None = None,
    ) -> Job:
        # Build (and so validate) the model before writing; the id comes from the insert.
        draft = job_from_definition(
            definition,
            job_id=0,
            source=source,
            state=state,
            next_run_at=next_run_at,
            fingerprint=fingerprint,
            now=now,
        )
        audit = checked_audit(audit)
        jobs = self.tables.jobs
        values = job_values(draft)
        del values["id"]
        with self._tx("add_job") as conn:
            exists = conn.execute(sa.select(jobs.c.id).where(jobs.c.job_key == draft.key))
            if exists.first() is not None:
                raise JobExistsError(draft.key)
            if self._sqlite:
                values["id"] = self._unused_job_id(conn)
            try:
                with conn.begin_nested():
                    inserted = conn.execute(sa.insert(jobs).values(values)).inserted_primary_key
            except sa.exc.IntegrityError as exc:
                # Another process inserted the same key after our check.
                raise JobExistsError(draft.key) from exc
            assert inserted is not None
            job = draft.model_copy(update={"id": int(inserted[0])})
            details = {"job": job_snapshot(job)}
            insert_entry(conn, self.tables.audit, audit, job_key=job.key, details=details)
            self._changed(conn)
        return job

    def _unused_job_id(self, conn: Connection) -> int:
        """A job id that no job holds and no stored execution refers to.

        SQLite gives a new row the largest id + 1, so it would hand a deleted job's id
        (whose history is kept, running runs included) to the next job, which would then
        count those runs as its own and clash with their slots. ``BEGIN IMMEDIATE``
        holds the write lock, so no other writer can take this id before we commit.
        """
        j, c = self.tables.jobs.c, self.tables.executions.c
        largest = conn.execute(
            sa.select(
                sa.select(sa.func.max(j.id)).scalar_subquery(),
                sa.select(sa.func.max(c.job_id)).scalar_subquery(),
            )
        ).one()
        return max((value for value in largest if value is not None), default=0) + 1

    def get_job(self, key: str) -> Job:
        jobs = self.tables.jobs
        with self._tx("get_job", write=False) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_key == key)).mappings().first()
        if row is None:
            raise JobNotFoundError(key)
        return job_from_row(row)

    def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        source: JobSource | None = None,
        after_key: str | None = None,
        limit: int | None = None,
        text: str | None = None,
        with_retention: bool = False,
    ) -> list[Job]:
        wanted = members(JobState, states, "states")
        origin = None if source is None else member(JobSource, source, "source")
        if limit is not None:
            checked_limit(limit)
        text = checked_text(text)
        jobs = self.tables.jobs
        key = self._code_point_order(jobs.c.job_key)
        query = sa.select(jobs).order_by(key)
        if wanted:
            query = query.where(jobs.c.state.in_([s.value for s in wanted]))
        if origin is not None:
            query = query.where(jobs.c.source == origin.value)
        if after_key is not None:
            query = query.where(key > after_key)
        if text is not None:
            query = query.where(self._mentions(fold_ascii(text)))
        if with_retention:
            query = query.where(jobs.c.retention.is_not(None))
        if limit is not None:
            query = query.limit(limit)
        with self._tx("list_jobs", write=False) as conn:
            # converted while fetching: never all rows and all models in memory at once
            return [job_from_row(row) for row in conn.execute(query).mappings()]

    def _folded(self, text: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """``text`` with ASCII letters in lower case, others kept (``fold_ascii``):
        SQLite's ``lower`` does exactly that, PostgreSQL's follows the locale."""
        if self._sqlite:
            return sa.func.lower(text)
        return sa.func.translate(text, _UPPER, _UPPER.lower())

    def _contains(self, text: sa.ColumnElement[Any], folded: str) -> sa.ColumnElement[bool]:
        haystack = self._folded(text)
        if self._sqlite:
            return sa.func.instr(haystack, folded) > 0
        return sa.func.strpos(haystack, folded) > 0

    def _mentions(self, folded: str) -> sa.ColumnElement[bool]:
        """The job's key, description or one of its display names contains ``folded``,
        searched by the database (the names are a JSON object: its values)."""
        jobs = self.tables.jobs
        if self._sqlite:
            names = sa.func.json_each(jobs.c.names).table_valued("value").alias("name")
        else:
            names = sa.func.json_each_text(jobs.c.names).table_valued("key", "value").alias("name")
        in_names = (
            sa.select(sa.literal(1))
            .select_from(names)
            .where(self._contains(names.c.value, folded))
            .exists()
        )
        return sa.or_(
            self._contains(jobs.c.job_key, folded),
            self._contains(sa.func.coalesce(jobs.c.description, ""), folded),
            in_names,
        )

    @retried_once_if_timed_out
    def update_job(
        self,
        key: str,
        changes: Mapping[str, Any],
        *,
        now: datetime,
        expected_version: int | None = None,
        audit: AuditRecord | None = None,
    ) -> Job:
        now = utc(now, "now")
        audit = checked_audit(audit)
        jobs = self.tables.jobs
        with self._tx("update_job") as conn:
            row = conn.execute(self._lock(sa.select(jobs).where(jobs.c.job_key == key)))
            current = row.mappings().first()
            if current is None:
                raise JobNotFoundError(key)
            job = job_from_row(current)
            if expected_version is not None and job.version != expected_version:
                raise VersionConflictError(
                    f"job {key!r} is at version {job.version}, not {expected_version}"
                )
            updated = apply_job_changes(job, changes, now=now)
            values = job_values(updated)
            for column in ("id", "job_key", "created_at"):
                del values[column]
            result = conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job.id, jobs.c.version == job.version)
                .values(values)
            )
            if result.rowcount != 1:  # the row lock makes this unreachable; keep the guard
                raise VersionConflictError(f"job {key!r} changed while it was being updated")
            details = {"changes": job_changes(job, updated)}
            insert_entry(conn, self.tables.audit, audit, job_key=key, details=details)
            self._changed(conn)
        return updated

    @retried_once_if_timed_out
    def delete_job(self, key: str, *, now: datetime, audit: AuditRecord | None = None) -> None:
        now = utc(now, "now")
        audit = checked_audit(audit)
        jobs, executions = self.tables.jobs, self.tables.executions
        with self._tx("delete_job") as conn:
            found = conn.execute(self._lock(sa.select(jobs).where(jobs.c.job_key == key)))
            row = found.mappings().first()
            if row is None:
                raise JobNotFoundError(key)
            job_id = row["id"]
            conn.execute(sa.delete(jobs).where(jobs.c.id == job_id))
            conn.execute(
                sa.update(executions)
                .where(executions.c.job_id == job_id, executions.c.status == _PENDING)
                .values(status=ExecutionStatus.CANCELLED.value, completed_at=now)
            )
            if audit is not None:
                details = {"job": job_snapshot(job_from_row(row))}
                insert_entry(conn, self.tables.audit, audit, job_key=key, details=details)
            self._changed(conn)
