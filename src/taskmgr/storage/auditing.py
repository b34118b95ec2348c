"""The audit entries the backends write, shaped the same way by every backend: the
checks of an :class:`AuditRecord` and of an audit listing, and the ``details`` of a
change (a job's snapshot, the fields an update changed). No I/O here."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskmgr.core.audit import AuditAction, AuditEntry, AuditSource
from taskmgr.core.models import Job
from taskmgr.core.validation import validate_actor, validate_kwargs
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.inputs import build, checked_stored_range, member, members, utc
from taskmgr.storage.records import AuditFilter, AuditRecord

__all__ = [
    "MAX_DETAILS_BYTES",
    "by_code",
    "checked_audit",
    "checked_audit_cursor",
    "checked_audit_filter",
    "entry",
    "job_changes",
    "job_snapshot",
]

#: Largest ``details`` a caller adds to an entry, as compact JSON.
MAX_DETAILS_BYTES = 64 * 1024
#: Job fields an audit entry does not show: bookkeeping that every write moves.
_UNSHOWN = frozenset({"fingerprint", "version", "updated_at"})
#: ... and those an update cannot change.
_FIXED = frozenset({"id", "key", "created_at"})


def by_code(action: AuditAction, at: datetime) -> AuditRecord:
    """A change taskmgr makes on its own, as code declared it (code sync, a claim that
    finds a job's function gone, the retention job): no actor, source ``code``."""
    return AuditRecord(action=action, source=AuditSource.CODE, at=at)


def checked_audit(record: AuditRecord | None) -> AuditRecord | None:
    """``record`` with its enums as members, ``at`` in UTC, a valid actor and JSON
    details; None stays None (nothing is recorded)."""
    if record is None:
        return None
    if not isinstance(record, AuditRecord):
        raise InvalidInputError(
            f"must be an AuditRecord, got {type(record).__name__}", field="audit"
        )
    action = member(AuditAction, record.action, "action")
    source = member(AuditSource, record.source, "source")
    at = utc(record.at, "at")
    checked_stored_range(at, "at")
    actor = validate_actor(record.actor)
    details = validate_kwargs(dict(record.details), "details", max_bytes=MAX_DETAILS_BYTES)
    return AuditRecord(action=action, source=source, at=at, actor=actor, details=details)


def checked_audit_filter(filters: AuditFilter) -> AuditFilter:
    """An audit listing's filter with its actions as members and its bounds in UTC,
    within what the database stores."""
    if filters.job_key is not None and not isinstance(filters.job_key, str):
        raise InvalidInputError("must be a job key", field="job_key")
    since = None if filters.since is None else utc(filters.since, "since")
    until = None if filters.until is None else utc(filters.until, "until")
    return AuditFilter(
        job_key=filters.job_key,
        actions=members(AuditAction, filters.actions, "action"),
        since=checked_stored_range(since, "since"),
        until=checked_stored_range(until, "until"),
    )


def checked_audit_cursor(before: object) -> int | None:
    """A keyset position in the audit log: the id of the last entry seen (>= 1)."""
    if before is None:
        return None
    if isinstance(before, bool) or not isinstance(before, int) or not 1 <= before < 2**63:
        raise InvalidInputError(f"must be an audit entry id, got {before!r:.80}", field="before")
    return before


def job_snapshot(job: Job) -> dict[str, Any]:
    """The job as an entry shows it created or deleted (JSON)."""
    return job.model_dump(mode="json", exclude=set(_UNSHOWN))


def job_changes(before: Job, after: Job) -> dict[str, dict[str, Any]]:
    """The fields an update changed, each ``{"before": ..., "after": ...}`` (JSON)."""
    old = job_snapshot(before)
    new = job_snapshot(after)
    return {
        name: {"before": old[name], "after": new[name]}
        for name in new
        if name not in _FIXED and old.get(name) != new[name]
    }


def entry(
    record: AuditRecord,
    *,
    entry_id: int,
    job_key: str | None = None,
    execution_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The entry written for ``record`` (checked by :func:`checked_audit`): its caller's
    details, then the storage's own (``details``) over them."""
    merged = copy.deepcopy(dict(record.details))
    if details:
        merged.update(details)
    return build(
        AuditEntry,
        {
            "id": entry_id,
            "at": record.at,
            "actor": record.actor,
            "source": record.source,
            "action": record.action,
            "job_key": job_key,
            "execution_id": execution_id,
            "details": merged,
        },
    )
