"""The memory backend's job operations: add, read, list, update and delete jobs, each
under the storage's lock, with its audit entry in the same atomic block."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from taskmgr.core.models import ExecutionStatus, Job, JobDefinition, JobSource, JobState
from taskmgr.exceptions import JobExistsError, JobNotFoundError, VersionConflictError
from taskmgr.storage.auditing import checked_audit, job_changes, job_snapshot
from taskmgr.storage.common import apply_job_changes, job_from_definition
from taskmgr.storage.inputs import checked_limit, checked_text, member, members, utc, validated
from taskmgr.storage.memory import queries
from taskmgr.storage.memory.audit import write_entry
from taskmgr.storage.memory.state import State
from taskmgr.storage.records import AuditRecord

__all__ = ["MemoryJobOperations"]


class MemoryJobOperations:
    """The job half of :class:`~taskmgr.storage.MemoryStorage` (see
    :class:`~taskmgr.storage.base.Storage` for the contract)."""

    _lock: threading.RLock
    _state: State

    def _notify(self) -> None:
        raise NotImplementedError

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
        # validated before anything is looked up, as on SQL
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
        with self._lock, self._state.atomic():
            st = self._state
            if draft.key in st.job_ids:
                raise JobExistsError(draft.key)
            job = validated(draft, {"id": st.next_job_id})
            st.next_job_id += 1
            st.put_job(job)
            write_entry(st, audit, job_key=job.key, details={"job": job_snapshot(job)})
        self._notify()
        return job

    def _job_by_key(self, key: str) -> Job:
        job = self._state.job_by_key(key)
        if job is None:
            raise JobNotFoundError(key)
        return job

    def get_job(self, key: str) -> Job:
        with self._lock:
            return self._job_by_key(key)

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
        wanted = set(members(JobState, states, "states"))
        origin = None if source is None else member(JobSource, source, "source")
        if limit is not None:
            checked_limit(limit)
        text = checked_text(text)
        with self._lock:
            found = queries.jobs_matching(self._state, wanted, origin, after_key, text)
        if with_retention:
            found = [job for job in found if job.retention is not None]
        return found if limit is None else found[:limit]

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
        with self._lock, self._state.atomic():
            job = self._job_by_key(key)
            if expected_version is not None and job.version != expected_version:
                raise VersionConflictError(
                    f"job {key!r} is at version {job.version}, not {expected_version}"
                )
            updated = apply_job_changes(job, changes, now=now)
            self._state.put_job(updated)
            write_entry(
                self._state, audit, job_key=key, details={"changes": job_changes(job, updated)}
            )
        self._notify()
        return updated

    def delete_job(self, key: str, *, now: datetime, audit: AuditRecord | None = None) -> None:
        now = utc(now, "now")
        audit = checked_audit(audit)
        with self._lock:
            st = self._state
            job = self._job_by_key(key)
            with st.atomic():
                st.drop_job(job)
                write_entry(st, audit, job_key=key, details={"job": job_snapshot(job)})
                for execution in list(st.executions.values()):
                    if execution.job_id == job.id and execution.status is ExecutionStatus.PENDING:
                        st.put_execution(
                            validated(
                                execution,
                                {"status": ExecutionStatus.CANCELLED, "completed_at": now},
                            )
                        )
        self._notify()
