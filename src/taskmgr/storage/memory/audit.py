"""The memory backend's audit log: entries written with the change they record (inside
the caller's :meth:`State.atomic` block, so a failed change leaves no entry), listed
newest first, and removed by retention."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskmgr.core.audit import AuditEntry
from taskmgr.storage.auditing import (
    checked_audit,
    checked_audit_cursor,
    checked_audit_filter,
    entry,
)
from taskmgr.storage.inputs import checked_limit, utc
from taskmgr.storage.memory.state import State
from taskmgr.storage.records import AuditFilter, AuditRecord

__all__ = ["MemoryAuditLog", "write_entry"]


def write_entry(
    state: State,
    record: AuditRecord | None,
    *,
    job_key: str | None = None,
    execution_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Store the entry of ``record`` (checked already), if any, with the next id."""
    if record is None:
        return
    made = entry(
        record,
        entry_id=state.next_audit_id,
        job_key=job_key,
        execution_id=execution_id,
        details=details,
    )
    state.next_audit_id += 1
    state.put(state.audit, made.id, made)


class MemoryAuditLog:
    """The audit half of :class:`~taskmgr.storage.MemoryStorage`."""

    _lock: threading.RLock
    _state: State

    def record_audit(self, record: AuditRecord) -> AuditEntry:
        checked = checked_audit(record)
        assert checked is not None
        with self._lock, self._state.atomic():
            write_entry(self._state, checked)
            return self._state.audit[self._state.next_audit_id - 1]

    def list_audit(
        self, filters: AuditFilter, *, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        filters = checked_audit_filter(filters)
        checked_limit(limit)
        before = checked_audit_cursor(before)
        actions = set(filters.actions)
        found: list[AuditEntry] = []
        with self._lock:
            for entry_id in sorted(self._state.audit, reverse=True):
                if len(found) >= limit:
                    break
                item = self._state.audit[entry_id]
                if (
                    (before is None or item.id < before)
                    and (filters.job_key is None or item.job_key == filters.job_key)
                    and (not actions or item.action in actions)
                    and (filters.since is None or item.at >= filters.since)
                    and (filters.until is None or item.at <= filters.until)
                ):
                    found.append(item)
        return found

    def delete_audit(self, *, before: datetime, limit: int) -> int:
        before = utc(before, "before")
        checked_limit(limit)
        with self._lock, self._state.atomic():
            st = self._state
            old = sorted(
                (e for e in st.audit.values() if e.at < before), key=lambda e: (e.at, e.id)
            )
            for item in old[:limit]:
                st.drop(st.audit, item.id)
            return len(old[:limit])
