"""The memory backend's maintenance windows, as the SQL backend keeps them
(:mod:`taskmgr.storage.sqlalchemy.windows`)."""

from __future__ import annotations

import threading
from datetime import datetime

from taskmgr.core.windows import MaintenanceWindow
from taskmgr.exceptions import WindowNotFoundError
from taskmgr.storage.auditing import checked_audit
from taskmgr.storage.inputs import utc
from taskmgr.storage.memory.audit import write_entry
from taskmgr.storage.memory.state import State
from taskmgr.storage.records import AuditRecord
from taskmgr.storage.windowing import check_against_stored, checked_window, window_details

__all__ = ["MemoryWindowOperations"]


class MemoryWindowOperations:
    """The window half of :class:`~taskmgr.storage.MemoryStorage` (see
    :class:`~taskmgr.storage.window_store.WindowStore` for the contract)."""

    _lock: threading.RLock
    _state: State

    def _notify(self) -> None:
        raise NotImplementedError

    def add_window(
        self, window: MaintenanceWindow, *, now: datetime, audit: AuditRecord | None = None
    ) -> MaintenanceWindow:
        now = utc(now, "now")
        window = checked_window(window, now)
        audit = checked_audit(audit)
        with self._lock, self._state.atomic():
            st = self._state
            exists = window.job_key is not None and st.job_by_key(window.job_key) is not None
            check_against_stored(window, st.windows.values(), job_exists=exists, now=now)
            st.put(st.windows, window.name, window)
            write_entry(
                st, audit, job_key=window.job_key, details={"window": window_details(window)}
            )
        self._notify()
        return window

    def delete_window(self, name: str, *, audit: AuditRecord | None = None) -> MaintenanceWindow:
        audit = checked_audit(audit)
        with self._lock, self._state.atomic():
            st = self._state
            removed = st.windows.get(name) if isinstance(name, str) else None
            if removed is None:
                raise WindowNotFoundError(str(name))
            st.drop(st.windows, name)
            write_entry(
                st, audit, job_key=removed.job_key, details={"window": window_details(removed)}
            )
        self._notify()
        return removed

    def list_windows(self) -> list[MaintenanceWindow]:
        with self._lock:
            return [self._state.windows[name] for name in sorted(self._state.windows)]
