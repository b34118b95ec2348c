"""The maintenance-window half of the storage port (see
:class:`~taskmgr.storage.base.Storage`, which extends :class:`WindowStore`).

A window is a row of its own, known by its name. What windows do to the slots of a
schedule is decided by the planner (:mod:`taskmgr.core.windows`); a claim reads the
windows only when one is stored, hands them to the planner (``ClaimBatch.windows``)
and leaves the jobs a ``defer`` window holds out of its reads until it closes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from taskmgr.core.windows import MaintenanceWindow
from taskmgr.storage.records import AuditRecord

__all__ = ["WindowStore"]


class WindowStore(ABC):
    """Maintenance windows."""

    @abstractmethod
    def add_window(
        self, window: MaintenanceWindow, *, now: datetime, audit: AuditRecord | None = None
    ) -> MaintenanceWindow:
        """Store ``window`` (its ``created_at`` set), in one transaction that no other
        ``add_window`` runs beside (so two overlapping windows cannot both pass).
        ``audit``: its entry names the window's job (None: service-wide) and has
        ``details["window"]``, the window as stored (JSON).

        :raises InvalidInputError: ``window`` is not a :class:`MaintenanceWindow`, or it
            has no ``created_at``.
        :raises WindowInPastError: a one-off window whose ``end`` is not after ``now``.
        :raises WindowExistsError: a window with this name exists (nothing is written).
        :raises WindowJobNotFoundError: ``job_key`` names no job.
        :raises WindowOverlapError: it is open at the same time as a stored window of
            the same scope within the year after ``now``
            (:func:`~taskmgr.core.windows.check_no_overlap`).
        """

    @abstractmethod
    def delete_window(self, name: str, *, audit: AuditRecord | None = None) -> MaintenanceWindow:
        """Remove the window ``name``, in one transaction, and return it. ``audit``: its
        entry names the window's job and has ``details["window"]``, the window removed.

        :raises WindowNotFoundError: no window has this name (nothing is recorded).
        """

    @abstractmethod
    def list_windows(self) -> list[MaintenanceWindow]:
        """Every stored window, by name (code point order)."""
