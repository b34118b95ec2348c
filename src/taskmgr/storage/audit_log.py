"""The audit half of the storage port: what every backend must do with the audit log
besides writing an entry with each change (see :class:`~taskmgr.storage.base.Storage`,
which extends :class:`AuditLog`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from taskmgr.core.audit import AuditEntry
from taskmgr.storage.records import AuditFilter, AuditRecord

__all__ = ["AuditLog"]


class AuditLog(ABC):
    """Reading and pruning the audit log, and entries of their own."""

    @abstractmethod
    def record_audit(self, record: AuditRecord) -> AuditEntry:
        """Write one audit entry of its own (no job key, no execution id), for a change
        that is not one storage call (a retention run's batches): its ``details`` are
        the record's. Returns the entry.

        :raises InvalidInputError: the record is refused (nothing is written).
        """

    @abstractmethod
    def list_audit(
        self, filters: AuditFilter, *, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        """Audit entries newest first (by id, descending) matching ``filters`` (``since``
        and ``until`` bound ``at``, inclusive; ``job_key`` matches exactly), with an id
        below ``before`` (the id of the last entry seen: keyset pagination).

        :raises InvalidDatetimeError: ``since`` or ``until`` is outside what the database
            stores (years 1970-9998, UTC).
        :raises InvalidInputError: an action is unknown, ``before`` is not a positive
            integer."""

    @abstractmethod
    def delete_audit(self, *, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` audit entries whose ``at`` is before the cutoff,
        oldest first (by ``at``, then id), in one short transaction. Returns how many
        were deleted."""
