"""The pause and backfill half of the storage port: pauses of queues and of the whole
service (a row each), and the past slots a backfill creates (see
:class:`~taskmgr.storage.base.Storage`, which extends :class:`PauseStore`).

A job's own pause is on its row, written with ``update_job`` (``state`` and the
``paused_*`` fields). How pauses are honoured, and how one whose ``until`` has come
ends, is part of ``Storage.claim``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from taskmgr.core.enums import PauseScope
from taskmgr.core.models import Execution, Job
from taskmgr.core.pauses import Pause
from taskmgr.storage.records import AuditRecord, NewExecution

__all__ = ["AUTO_RESUME_ACTOR", "BackfillWrite", "PauseStore"]

#: Who ends a pause whose ``until`` has come (the actor of its audit entry).
AUTO_RESUME_ACTOR = "taskmgr"


@dataclass(frozen=True, slots=True)
class BackfillWrite:
    """What ``add_backfill`` wrote: the runs it created, and how many of the slots it
    was given it left out."""

    created: Sequence[Execution] = field(default_factory=tuple)
    #: Slots that already had a row of the job (a slot of a schedule or a backfill).
    existing: int = 0
    #: Slots at or after the job's backfill frontier (the schedule's own).
    scheduled: int = 0


class PauseStore(ABC):
    """Pauses of queues and of the service; backfills."""

    @abstractmethod
    def set_pause(self, pause: Pause, *, audit: AuditRecord | None = None) -> Pause:
        """Store ``pause`` (scope ``queue`` with the queue's name, or ``service`` with no
        name), in one transaction. A pause already stored for the same scope and name
        is replaced, keeping its ``paused_at``; if nothing differs (who, why, until),
        nothing is written. Returns the pause as stored.

        ``audit``: its entry (no job key) has ``details["pause"]``, the pause as stored
        (JSON), and, for a replacement, ``details["before"]``, the one it replaced.

        :raises InvalidInputError: the scope is ``job``, a queue pause has no name or a
            service pause has one, a datetime is naive, or ``reason`` is longer than
            500 characters.
        :raises ConflictError: another process stored the same pause at the same moment
            (nothing is written; trying again replaces it).
        """

    @abstractmethod
    def delete_pause(
        self, scope: PauseScope, name: str | None, *, audit: AuditRecord | None = None
    ) -> Pause | None:
        """Remove the pause of ``scope`` and ``name`` (a queue's name; None for the
        service), in one transaction. Returns it, or None when there was none (then
        nothing is recorded). ``audit``: its entry has ``details["pause"]``, the pause
        removed."""

    @abstractmethod
    def list_pauses(self, *, now: datetime) -> list[Pause]:
        """The pauses of queues and of the service in effect at ``now`` (no ``until``,
        or a later one), the service's first, then the queues' by name (code point
        order)."""

    @abstractmethod
    def add_backfill(
        self,
        news: Sequence[NewExecution],
        *,
        job: Job,
        now: datetime,
        audit: AuditRecord | None = None,
    ) -> BackfillWrite:
        """Insert the runs of past slots of one job (``news``, its slots, each
        ``pending``, trigger ``backfill``), all in one transaction, with the job's row
        locked (a claim skips it until this commits).

        Nothing is written unless ``job`` (by id) still exists at ``job.version``, the
        version whose schedule gave the slots. Of ``news``, those
        whose slot the job already holds (a row of a schedule, a catch-up or a backfill
        at that instant) are left out, and so are those at or after the job's backfill
        frontier (:func:`taskmgr.core.rules.backfill_frontier` at ``now``, decided on
        the locked row: those slots are the schedule's own). The others are inserted.
        ``audit``: its entry names the job and adds ``details["created"]``,
        ``["existing"]`` and ``["scheduled"]`` (the counts); a call that creates nothing
        records nothing.

        :raises InvalidInputError: the model refuses one of ``news``, or one is not a
            pending ``backfill`` run of ``job``.
        :raises JobNotFoundError: the job does not exist.
        :raises VersionConflictError: the job is not at ``job.version`` (nothing is
            written).
        :raises ConflictError: an execution id is taken, or two of ``news`` share a slot.
        """
