"""Sync the jobs declared in code with the stored ones (DESIGN §3).

New keys are created; existing keys keep what an operator changed unless the code's
definition changed (then code wins, and the change is logged); keys that vanished
from code become ``orphaned``, never deleted. Several instances may sync at once.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from taskmgr.core.definition import OPTION_NAMES
from taskmgr.core.models import Job, JobDefinition, JobSource, JobState
from taskmgr.core.registry import JobRegistry
from taskmgr.core.triggers import Date, Interval, TriggerSpec
from taskmgr.exceptions import JobExistsError, JobNotFoundError
from taskmgr.storage.base import Storage

__all__ = ["add_new_job", "anchor", "first_run", "same_schedule", "sync_code_jobs"]

logger = logging.getLogger("taskmgr.service")


def anchor(trigger: TriggerSpec, now: datetime) -> TriggerSpec:
    return trigger.anchored(now) if isinstance(trigger, Interval) else trigger


def first_run(trigger: TriggerSpec, now: datetime) -> datetime | None:
    """The first slot of a new (or newly resumed) schedule: the next fire time after now.
    A one-shot date already past stays due, so its misfire policy decides."""
    if isinstance(trigger, Date):
        return trigger.at
    following = trigger.next_fire_times(now, 1)
    return following[0] if following else None


def same_schedule(stored: TriggerSpec, declared: TriggerSpec) -> bool:
    if isinstance(stored, Interval) and isinstance(declared, Interval) and declared.start is None:
        return stored.every == declared.every
    return stored == declared


def sync_code_jobs(
    storage: Storage, registry: JobRegistry, now: datetime, *, orphan_missing: bool
) -> None:
    """DESIGN §3: new keys are created; existing keys keep operator changes unless
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
            storage.update_job(job.key, {"state": JobState.ORPHANED}, now=now)


def add_new_job(
    storage: Storage,
    definition: JobDefinition,
    *,
    source: JobSource,
    fingerprint: str | None,
    now: datetime,
) -> Job:
    """Store a new job: its interval anchored at ``now``, its first slot computed."""
    trigger = anchor(definition.trigger, now)
    return storage.add_job(
        definition.model_copy(update={"trigger": trigger}),
        source=source,
        state=JobState.ACTIVE if definition.enabled else JobState.PAUSED,
        next_run_at=first_run(trigger, now),
        fingerprint=fingerprint,
        now=now,
    )


def _sync_one(storage: Storage, definition: JobDefinition, now: datetime) -> None:
    fingerprint = definition.fingerprint()
    try:
        job = storage.get_job(definition.key)
    except JobNotFoundError:
        try:
            add_new_job(
                storage, definition, source=JobSource.CODE, fingerprint=fingerprint, now=now
            )
            logger.info("job %r created from code", definition.key)
            return
        except JobExistsError:  # another instance created it first
            job = storage.get_job(definition.key)
    if job.fingerprint == fingerprint:
        if job.state is JobState.ORPHANED:
            _restore(storage, job, now)
        return
    changes: dict[str, Any] = {
        field: getattr(definition, field)
        for field in OPTION_NAMES
        if field != "enabled" and getattr(definition, field) != getattr(job, field)
    }
    if definition.func != job.func:
        changes["func"] = definition.func
    if not same_schedule(job.trigger, definition.trigger):
        changes["trigger"] = anchor(definition.trigger, now)
    state = JobState.ACTIVE if definition.enabled else JobState.PAUSED
    if state is not job.state:
        changes["state"] = state
    if "trigger" in changes or (state is JobState.ACTIVE and job.state is not state):
        changes["next_run_at"] = first_run(changes.get("trigger", job.trigger), now)
    changes.update(source=JobSource.CODE, fingerprint=fingerprint)
    logger.info(
        "job %r changed in code; code wins: %s",
        definition.key,
        ", ".join(sorted(set(changes) - {"fingerprint", "source"})) or "no field",
        extra={"taskmgr_job_key": definition.key},
    )
    storage.update_job(definition.key, changes, now=now)


def _restore(storage: Storage, job: Job, now: datetime) -> None:
    logger.info("job %r: its function is registered again; active", job.key)
    storage.update_job(
        job.key,
        {"state": JobState.ACTIVE, "next_run_at": first_run(job.trigger, now)},
        now=now,
    )
