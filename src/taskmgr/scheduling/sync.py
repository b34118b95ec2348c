"""Sync the jobs declared in code with the stored ones (``docs/concepts.md``).

New keys are created; existing keys keep what an operator changed unless the code's
definition changed (then code wins, and the change is logged); keys that vanished
from code become ``orphaned``, never deleted. Several instances may sync at once.
Each change is in the audit log with source ``code``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from taskmgr.core.audit import AuditAction
from taskmgr.core.models import Job, JobDefinition, JobSource, JobState
from taskmgr.core.registry import JobRegistry
from taskmgr.core.rules import anchor, first_slot, option_changes, resume_slot, same_schedule
from taskmgr.exceptions import JobExistsError, JobNotFoundError
from taskmgr.storage.auditing import by_code
from taskmgr.storage.base import AuditRecord, Storage

__all__ = ["add_new_job", "sync_code_jobs"]

logger = logging.getLogger("taskmgr.service")


def sync_code_jobs(
    storage: Storage, registry: JobRegistry, now: datetime, *, orphan_missing: bool
) -> None:
    """New keys are created; existing keys keep operator changes unless
    the code definition changed (then code wins); vanished keys become orphaned."""
    declared = {definition.key: definition for definition in registry.definitions()}
    for definition in declared.values():
        _sync_one(storage, definition, now)
    # Only two kinds of undeclared job need anything: orphaned API jobs (restored when
    # their function is back) and code jobs (orphaned when gone). Listing just those
    # keeps start-up from loading every job (100,000 API jobs cost seconds).
    candidates = [
        *storage.list_jobs(states=[JobState.ORPHANED], source=JobSource.API),
        *storage.list_jobs(source=JobSource.CODE),
    ]
    for job in candidates:
        if job.key in declared:
            continue
        if job.state is JobState.ORPHANED:
            if job.func in registry and job.source is JobSource.API:
                _restore(storage, job, now)
        elif orphan_missing and job.source is JobSource.CODE:
            logger.warning(
                "job %r is no longer declared in code: marked orphaned (kept, not deleted)",
                job.key,
                extra={"taskmgr_job_key": job.key},
            )
            storage.update_job(
                job.key,
                {"state": JobState.ORPHANED},
                now=now,
                audit=by_code(AuditAction.UPDATE, now),
            )


def add_new_job(
    storage: Storage,
    definition: JobDefinition,
    *,
    source: JobSource,
    fingerprint: str | None,
    now: datetime,
    audit: AuditRecord | None = None,
) -> Job:
    """Store a new job: its interval anchored at ``now``, its first slot computed;
    ``audit`` is recorded with it."""
    trigger = anchor(definition.trigger, now)
    return storage.add_job(
        definition.model_copy(update={"trigger": trigger}),
        source=source,
        state=JobState.ACTIVE if definition.enabled else JobState.PAUSED,
        next_run_at=first_slot(trigger, now),
        fingerprint=fingerprint,
        now=now,
        audit=audit,
    )


def _sync_one(storage: Storage, definition: JobDefinition, now: datetime) -> None:
    fingerprint = definition.fingerprint()
    try:
        job = storage.get_job(definition.key)
    except JobNotFoundError:
        try:
            add_new_job(
                storage,
                definition,
                source=JobSource.CODE,
                fingerprint=fingerprint,
                now=now,
                audit=by_code(AuditAction.CREATE, now),
            )
            logger.info("job %r created from code", definition.key)
            return
        except JobExistsError:  # another instance created it first
            job = storage.get_job(definition.key)
    if job.fingerprint == fingerprint:
        if job.state is JobState.ORPHANED:
            _restore(storage, job, now)
        return
    changes = option_changes(job, definition)
    if not same_schedule(job.trigger, definition.trigger):
        changes["trigger"] = anchor(definition.trigger, now)
        changes["next_run_at"] = first_slot(changes["trigger"], now)
    state = JobState.ACTIVE if definition.enabled else JobState.PAUSED
    if state is not job.state:
        changes["state"] = state
        if state is JobState.ACTIVE and "trigger" not in changes:
            changes["next_run_at"] = resume_slot(job, now)
    changes.update(source=JobSource.CODE, fingerprint=fingerprint)
    logger.info(
        "job %r changed in code; code wins: %s",
        definition.key,
        ", ".join(sorted(set(changes) - {"fingerprint", "source"})) or "no field",
        extra={"taskmgr_job_key": definition.key},
    )
    storage.update_job(definition.key, changes, now=now, audit=by_code(AuditAction.UPDATE, now))


def _restore(storage: Storage, job: Job, now: datetime) -> None:
    logger.info("job %r: its function is registered again; active", job.key)
    storage.update_job(
        job.key,
        {"state": JobState.ACTIVE, "next_run_at": resume_slot(job, now)},
        now=now,
        audit=by_code(AuditAction.UPDATE, now),
    )
