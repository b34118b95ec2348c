"""The SQL backend's audit log: one ``INSERT`` on the connection of the change it
records (so it commits or rolls back with it), the listing newest first by id, and
retention in short transactions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.audit import AuditAction, AuditEntry, AuditSource
from taskmgr.storage.auditing import (
    checked_audit,
    checked_audit_cursor,
    checked_audit_filter,
    entry,
)
from taskmgr.storage.inputs import checked_limit, utc
from taskmgr.storage.records import AuditFilter, AuditRecord
from taskmgr.storage.sqlalchemy.database import Database, retried_once_if_timed_out
from taskmgr.storage.sqlalchemy.rows import trusted_model

__all__ = ["AuditOperations", "insert_entry"]

_ACTION = {member.value: member for member in AuditAction}
_SOURCE = {member.value: member for member in AuditSource}


def insert_entry(
    conn: Connection,
    table: sa.Table,
    record: AuditRecord | None,
    *,
    job_key: str | None = None,
    execution_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry | None:
    """Insert the entry of ``record`` (checked already) in the transaction of ``conn``;
    None when there is no record."""
    if record is None:
        return None
    made = entry(record, entry_id=0, job_key=job_key, execution_id=execution_id, details=details)
    values = made.model_dump()
    del values["id"]
    values["action"] = made.action.value
    values["source"] = made.source.value
    inserted = conn.execute(sa.insert(table).values(values)).inserted_primary_key
    assert inserted is not None
    return made.model_copy(update={"id": int(inserted[0])})


def _entry_from_row(row: Mapping[Any, Any]) -> AuditEntry:
    return trusted_model(
        AuditEntry,
        {
            "id": int(row["id"]),
            "at": row["at"],
            "actor": row["actor"],
            "source": _SOURCE[row["source"]],
            "action": _ACTION[row["action"]],
            "job_key": row["job_key"],
            "execution_id": row["execution_id"],
            "details": dict(row["details"]),
        },
    )


class AuditOperations(Database):
    """The audit half of the storage contract (see :class:`~taskmgr.storage.base.Storage`)."""

    @retried_once_if_timed_out
    def record_audit(self, record: AuditRecord) -> AuditEntry:
        checked = checked_audit(record)
        with self._tx("record_audit") as conn:
            made = insert_entry(conn, self.tables.audit, checked)
        assert made is not None
        return made

    def list_audit(
        self, filters: AuditFilter, *, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        filters = checked_audit_filter(filters)
        checked_limit(limit)
        before = checked_audit_cursor(before)
        audit = self.tables.audit
        c = audit.c
        query = sa.select(audit).order_by(c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(c.id < before)
        if filters.job_key is not None:
            query = query.where(c.job_key == filters.job_key)
        if filters.actions:
            query = query.where(c.action.in_([a.value for a in filters.actions]))
        if filters.since is not None:
            query = query.where(c.at >= filters.since)
        if filters.until is not None:
            query = query.where(c.at <= filters.until)
        with self._tx("list_audit", write=False) as conn:
            return [_entry_from_row(row) for row in conn.execute(query).mappings()]

    def delete_audit(self, *, before: datetime, limit: int) -> int:
        before = utc(before, "before")
        checked_limit(limit)
        audit = self.tables.audit
        c = audit.c
        oldest = sa.select(c.id).where(c.at < before).order_by(c.at, c.id).limit(limit)
        with self._tx("delete_audit") as conn:
            ids = list(conn.execute(oldest).scalars())
            if ids:
                conn.execute(sa.delete(audit).where(c.id.in_(ids)))
        return len(ids)
