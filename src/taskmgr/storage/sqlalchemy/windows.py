"""The SQL backend's maintenance windows: their rows, and what a claim and the next
due time read of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.enums import JobState
from taskmgr.core.windows import (
    Deferral,
    MaintenanceWindow,
    WindowAction,
    due_after_holds,
)
from taskmgr.exceptions import WindowExistsError, WindowNotFoundError
from taskmgr.storage.auditing import checked_audit
from taskmgr.storage.inputs import utc
from taskmgr.storage.records import AuditRecord
from taskmgr.storage.sqlalchemy.audit import insert_entry
from taskmgr.storage.sqlalchemy.database import Database, retried_once_if_timed_out
from taskmgr.storage.sqlalchemy.rows import trusted_model
from taskmgr.storage.sqlalchemy.tables import Tables
from taskmgr.storage.windowing import check_against_stored, checked_window, window_details

__all__ = [
    "WindowOperations",
    "deferred_condition",
    "next_job_after_holds",
    "read_windows",
    "window_from_row",
]

_ACTION = {action.value: action for action in WindowAction}


def window_from_row(row: Mapping[Any, Any]) -> MaintenanceWindow:
    """A stored window (validated when it was written)."""
    duration = row["duration"]
    return trusted_model(
        MaintenanceWindow,
        {
            "name": row["name"],
            "job_key": row["job_key"],
            "action": _ACTION[row["action"]],
            "start": row["starts_at"],
            "end": row["ends_at"],
            "cron": row["cron"],
            "duration": None if duration is None else float(duration),
            "timezone": row["timezone"],
            "reason": row["reason"],
            "created_by": row["created_by"],
            "created_at": row["created_at"],
        },
    )


def _window_values(window: MaintenanceWindow) -> dict[str, Any]:
    return {
        "name": window.name,
        "job_key": window.job_key,
        "action": window.action.value,
        "starts_at": window.start,
        "ends_at": window.end,
        "cron": window.cron,
        "duration": window.duration,
        "timezone": window.timezone,
        "reason": window.reason,
        "created_by": window.created_by,
        "created_at": window.created_at,
    }


def read_windows(conn: Connection, tables: Tables) -> list[MaintenanceWindow]:
    """Every stored window, by name (code point order)."""
    rows = conn.execute(sa.select(tables.windows)).mappings().all()
    return sorted(map(window_from_row, rows), key=lambda window: window.name)


def deferred_condition(tables: Tables, deferrals: Sequence[Deferral]) -> sa.ColumnElement[bool]:
    """True for the jobs one of ``deferrals`` holds (their next slot inside it)."""
    j = tables.jobs.c
    held = [
        sa.and_(
            sa.true() if key is None else j.job_key == key,
            j.next_run_at >= start,
            j.next_run_at < end,
        )
        for key, start, end in deferrals
    ]
    return sa.or_(*held) if held else sa.false()


def next_job_after_holds(
    conn: Connection,
    tables: Tables,
    first_job: datetime | None,
    windows: Sequence[MaintenanceWindow],
    *,
    queues: Sequence[str] = (),
) -> datetime | None:
    """The earliest time a claim may find a job's slot, given the earliest
    ``next_run_at`` of the jobs no pause holds (``first_job``), with the ``defer``
    windows among ``windows`` holding theirs until they close
    (:func:`~taskmgr.core.windows.due_after_holds`).

    The jobs of windows on one job are read one by one (they are few); the earliest of
    the others is held by a service-wide window open at it, so then every other job due
    before that window closes waits for it, and its end is their time."""
    deferring = [w for w in windows if w.action is WindowAction.DEFER]
    if not deferring or first_job is None:
        return first_job
    j = tables.jobs.c
    active = [j.state == JobState.ACTIVE.value]
    if queues:
        active.append(sa.or_(j.queue.is_(None), j.queue.not_in(list(queues))))
    keys = sorted({w.job_key for w in deferring if w.job_key is not None})
    times: list[datetime] = []
    if keys:
        rows = conn.execute(
            sa.select(j.job_key, j.next_run_at).where(*active, j.job_key.in_(keys))
        ).all()
        times += [due_after_holds(key, when, deferring) for key, when in rows if when is not None]
        first_job = conn.execute(
            sa.select(sa.func.min(j.next_run_at)).where(*active, j.job_key.not_in(keys))
        ).scalar_one_or_none()
    if first_job is not None:
        service = [w for w in deferring if w.job_key is None]
        times.append(due_after_holds("", first_job, service) if service else first_job)
    return min(times, default=None)


class WindowOperations(Database):
    """Maintenance windows (see :class:`~taskmgr.storage.window_store.WindowStore`)."""

    @retried_once_if_timed_out
    def add_window(
        self, window: MaintenanceWindow, *, now: datetime, audit: AuditRecord | None = None
    ) -> MaintenanceWindow:
        now = utc(now, "now")
        window = checked_window(window, now)
        audit = checked_audit(audit)
        windows, jobs = self.tables.windows, self.tables.jobs
        with self._tx("add_window") as conn:
            if not self._sqlite:  # SQLite's BEGIN IMMEDIATE already serialises writers
                # one add at a time (two overlapping windows cannot both pass their
                # check); plain reads, the claims', go on
                table = conn.dialect.identifier_preparer.format_table(windows)
                conn.exec_driver_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            stored = read_windows(conn, self.tables)
            exists = window.job_key is not None and (
                conn.execute(sa.select(jobs.c.id).where(jobs.c.job_key == window.job_key)).first()
                is not None
            )
            check_against_stored(window, stored, job_exists=exists, now=now)
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(windows).values(_window_values(window)))
            except sa.exc.IntegrityError as exc:  # added by another process just now
                raise WindowExistsError(window.name) from exc
            details = {"window": window_details(window)}
            insert_entry(conn, self.tables.audit, audit, job_key=window.job_key, details=details)
            self._changed(conn)
        return window

    @retried_once_if_timed_out
    def delete_window(self, name: str, *, audit: AuditRecord | None = None) -> MaintenanceWindow:
        audit = checked_audit(audit)
        if not isinstance(name, str):
            raise WindowNotFoundError(str(name))
        windows = self.tables.windows
        key = windows.c.name == name
        with self._tx("delete_window") as conn:
            row = conn.execute(self._lock(sa.select(windows).where(key))).mappings().first()
            if row is None:
                raise WindowNotFoundError(name)
            removed = window_from_row(row)
            conn.execute(sa.delete(windows).where(key))
            details = {"window": window_details(removed)}
            insert_entry(conn, self.tables.audit, audit, job_key=removed.job_key, details=details)
            self._changed(conn)
        return removed

    def list_windows(self) -> list[MaintenanceWindow]:
        with self._tx("list_windows", write=False) as conn:
            return read_windows(conn, self.tables)
