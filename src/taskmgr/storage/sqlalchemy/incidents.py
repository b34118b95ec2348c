"""The SQL backend's alert evaluation, incidents and webhook deliveries.

An evaluation first reads, without a lock, what breaks each rule and which incidents
are open; most rounds find nothing to change and end there, writing nothing. One that
finds a change reads again and applies it in one transaction under the alert lock
(PostgreSQL: a transaction-level advisory lock taken without waiting, so a second
evaluator skips at once; SQLite: ``BEGIN IMMEDIATE``, the database's write lock), as
the reaper does. The partial unique index on open incidents backs the lock up: an
insert that would open a second incident for a job and rule fails inside its savepoint
and is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.alerts import (
    AlertDefaults,
    AlertRule,
    Breach,
    Incident,
    IncidentChanges,
    NotifyState,
    incident_changes,
)
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.alerting import (
    breach_incident,
    checked_incident_reads,
    delivered,
    new_delivery,
    retried,
)
from taskmgr.storage.inputs import checked_limit, utc
from taskmgr.storage.sqlalchemy import migrate
from taskmgr.storage.sqlalchemy.breaches import read_breaches
from taskmgr.storage.sqlalchemy.database import Database
from taskmgr.storage.sqlalchemy.pauses import pause_from_row
from taskmgr.storage.sqlalchemy.rows import trusted_model

__all__ = ["IncidentOperations", "incident_from_row"]

#: Added to the migration lock's key: the alert lock (the reaper's is + 1).
_ALERT_LOCK = 2
_PENDING = NotifyState.PENDING.value
_RULES = {rule.value: rule for rule in AlertRule}
_STATES = {state.value: state for state in NotifyState}


def incident_from_row(row: Mapping[Any, Any]) -> Incident:
    state = row["notify_state"]
    return trusted_model(
        Incident,
        {
            "id": int(row["id"]),
            "job_key": row["job_key"] or None,
            "rule": _RULES[row["rule"]],
            "since": row["since"],
            "opened_at": row["opened_at"],
            "resolved_at": row["resolved_at"],
            "message": row["message"],
            "details": dict(row["details"]),
            "notify_state": None if state is None else _STATES[state],
            "notify_attempts": row["notify_attempts"],
            "notify_next_at": row["notify_next_at"],
            "notified_at": row["notified_at"],
            "notify_error": row["notify_error"],
        },
    )


def _values(incident: Incident) -> dict[str, Any]:
    values = incident.model_dump()
    values["job_key"] = incident.job_key or ""
    values["rule"] = incident.rule.value
    state = incident.notify_state
    values["notify_state"] = None if state is None else state.value
    return values


def _stored(changes: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(changes)
    state = values.get("notify_state")
    if isinstance(state, NotifyState):
        values["notify_state"] = state.value
    return values


class IncidentOperations(Database):
    """Alert evaluation, incidents and deliveries (see
    :class:`~taskmgr.storage.incident_store.IncidentStore`)."""

    def evaluate_alerts(
        self, *, now: datetime, defaults: AlertDefaults, notify: bool = False
    ) -> IncidentChanges | None:
        now = utc(now, "now")
        if not isinstance(defaults, AlertDefaults):
            raise InvalidInputError(
                f"must be AlertDefaults, got {type(defaults).__name__}", field="defaults"
            )
        table = self.tables.incidents
        c = table.c
        # First a read (no lock, nothing written): most rounds change nothing, and an
        # instance that finds nothing to change takes no lock and writes nothing.
        with self._tx("evaluate_alerts", write=False) as conn:
            to_open, to_resolve = self._judge(conn, now, defaults)
        if not to_open and not to_resolve:
            return IncidentChanges()
        with self._tx("evaluate_alerts") as conn:
            if not self._sqlite:  # SQLite: BEGIN IMMEDIATE already excludes other writers
                key = migrate.lock_key(self._prefix, self._schema) + _ALERT_LOCK
                if not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar():
                    return None
            to_open, to_resolve = self._judge(conn, now, defaults)  # again, under the lock
            opened: list[Incident] = []
            for breach in to_open:
                draft = breach_incident(breach, incident_id=0, now=now, notify=notify)
                values = _values(draft)
                del values["id"]
                try:
                    with conn.begin_nested():
                        inserted = conn.execute(sa.insert(table).values(values))
                except sa.exc.IntegrityError:
                    continue  # another writer opened it meanwhile: one incident it is
                assert inserted.inserted_primary_key is not None
                new_id = int(inserted.inserted_primary_key[0])
                opened.append(draft.model_copy(update={"id": new_id}))
            changes = {"resolved_at": now, **(new_delivery(now) if notify else {})}
            resolved: list[Incident] = []
            for incident in to_resolve:
                result = conn.execute(
                    sa.update(table)
                    .where(c.id == incident.id, c.resolved_at.is_(None))
                    .values(_stored(changes))
                )
                if result.rowcount == 1:
                    resolved.append(incident.model_copy(update=changes))
        return IncidentChanges(opened=opened, resolved=resolved)

    def _judge(
        self, conn: Connection, now: datetime, defaults: AlertDefaults
    ) -> tuple[list[Breach], list[Incident]]:
        """What breaks the rules at ``now``, and which incidents to open and resolve."""
        c = self.tables.incidents.c
        stored = conn.execute(sa.select(self.tables.pauses)).mappings()
        pauses = [pause_from_row(row) for row in stored]
        found = read_breaches(conn, self.tables, now=now, defaults=defaults, pauses=pauses)
        query = sa.select(self.tables.incidents).where(c.resolved_at.is_(None))
        rows = conn.execute(query).mappings()
        return incident_changes(found, map(incident_from_row, rows))

    def list_incidents(
        self,
        *,
        open_only: bool = False,
        job_key: str | None = None,
        limit: int,
        before: int | None = None,
    ) -> list[Incident]:
        limit, before, job_key = checked_incident_reads(limit, before, job_key)
        table = self.tables.incidents
        c = table.c
        query = sa.select(table).order_by(c.id.desc()).limit(limit)
        if open_only:
            query = query.where(c.resolved_at.is_(None))
        if job_key is not None:
            query = query.where(c.job_key == job_key)
        if before is not None:
            query = query.where(c.id < before)
        with self._tx("list_incidents", write=False) as conn:
            return [incident_from_row(row) for row in conn.execute(query).mappings()]

    def delete_incidents(self, *, resolved_before: datetime, limit: int) -> int:
        resolved_before = utc(resolved_before, "resolved_before")
        checked_limit(limit)
        table = self.tables.incidents
        c = table.c
        # by id: the oldest incidents were resolved long ago, so the primary key's order
        # finds them first (no index on resolved_at needed)
        oldest = (
            sa.select(c.id)
            .where(
                c.resolved_at < resolved_before,
                sa.or_(c.notify_state.is_(None), c.notify_state != _PENDING),
            )
            .order_by(c.id)
            .limit(limit)
        )
        with self._tx("delete_incidents") as conn:
            ids = list(conn.execute(oldest).scalars())
            if ids:
                conn.execute(sa.delete(table).where(c.id.in_(ids)))
        return len(ids)

    def due_notifications(self, *, now: datetime, limit: int) -> list[Incident]:
        now = utc(now, "now")
        checked_limit(limit)
        table = self.tables.incidents
        c = table.c
        query = (
            sa.select(table)
            .where(c.notify_state == _PENDING, c.notify_next_at <= now)
            .order_by(c.notify_next_at, c.id)
            .limit(limit)
        )
        with self._tx("due_notifications", write=False) as conn:
            return [incident_from_row(row) for row in conn.execute(query).mappings()]

    def claim_notification(
        self, incident_id: int, *, attempts: int, now: datetime, until: datetime
    ) -> Incident | None:
        now, until = utc(now, "now"), utc(until, "until")
        table = self.tables.incidents
        c = table.c
        with self._tx("claim_notification") as conn:
            result = conn.execute(
                sa.update(table)
                .where(
                    c.id == incident_id,
                    c.notify_state == _PENDING,
                    c.notify_attempts == attempts,
                    c.notify_next_at <= now,
                )
                .values(notify_attempts=attempts + 1, notify_next_at=until)
            )
            if result.rowcount != 1:
                return None
            row = conn.execute(sa.select(table).where(c.id == incident_id)).mappings().one()
        return incident_from_row(row)

    def finish_notification(
        self,
        incident_id: int,
        *,
        attempt: int,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        now = utc(now, "now")
        retry_at = None if retry_at is None else utc(retry_at, "retry_at")
        changes = delivered(now) if error is None else retried(error, retry_at)
        table = self.tables.incidents
        c = table.c
        with self._tx("finish_notification") as conn:
            result = conn.execute(
                sa.update(table)
                .where(
                    c.id == incident_id,
                    c.notify_state == _PENDING,
                    c.notify_attempts == attempt,
                )
                .values(_stored(changes))
            )
        return bool(result.rowcount == 1)
