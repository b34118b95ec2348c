"""The incident half of the storage port: evaluating the alert rules once for the
cluster, the incidents they open and resolve, and the webhook deliveries of their
changes (see :class:`~taskmgr.storage.base.Storage`, which extends
:class:`IncidentStore`).

What each rule means is :mod:`taskmgr.core.alerts`; a backend reads what breaks a
rule in one statement per rule (never one per job) and decides with the shared
builders of :mod:`taskmgr.storage.alerting`, so every backend opens the same incidents
with the same messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from taskmgr.core.alerts import AlertDefaults, Incident, IncidentChanges

__all__ = ["IncidentStore"]


class IncidentStore(ABC):
    """Alert evaluation, incidents, webhook deliveries."""

    @abstractmethod
    def evaluate_alerts(
        self, *, now: datetime, defaults: AlertDefaults, notify: bool = False
    ) -> IncidentChanges | None:
        """Evaluate every alert rule at ``now`` for every job (each job's own thresholds,
        else ``defaults``; :func:`taskmgr.core.alerts.threshold`; with the stored pauses,
        maintenance windows, exclusion dates and the ends of pauses the audit log records
        as :mod:`taskmgr.core.alert_holds` says), and apply the result in one
        transaction: an incident is opened (``opened_at = now``) for each breach whose
        job and rule have none open, and each open incident whose rule holds again (or
        whose job is gone) is resolved (``resolved_at = now``).

        With ``notify``, each incident opened or resolved gets a webhook delivery to
        make: ``notify_state`` pending, ``notify_attempts`` 0, ``notify_next_at = now``
        (a delivery of its opening not yet made is replaced by that of its resolution);
        without, an opened incident has no ``notify_state`` and a resolved one keeps its
        own.

        At most one evaluation changes incidents at a time across every process on the
        database: when another holds the alert lock, this returns None at once and
        changes nothing (an evaluation that finds nothing to change may take no lock
        and write nothing). Whatever the callers do, a job has at most one open
        incident per rule (a unique index of the database): a breach whose incident
        another writer opened meanwhile is left out. Returns what was opened and
        resolved, each in id order.
        """

    @abstractmethod
    def list_incidents(
        self,
        *,
        open_only: bool = False,
        job_key: str | None = None,
        limit: int,
        before: int | None = None,
    ) -> list[Incident]:
        """Incidents newest first (by id, descending), only the open ones with
        ``open_only``, only those of ``job_key`` when given, with an id below
        ``before`` (keyset pagination).

        :raises InvalidInputError: a negative ``limit``, a ``before`` that is not a
            positive integer, a ``job_key`` that is no job key."""

    @abstractmethod
    def delete_incidents(self, *, resolved_before: datetime, limit: int) -> int:
        """Delete at most ``limit`` incidents resolved before the cutoff, oldest first
        (by id), in one short transaction (the history retention's). An open incident
        is never deleted, nor one whose webhook delivery is still pending (its change
        is not told yet). Returns how many were deleted.

        :raises InvalidInputError: a negative ``limit``, a naive ``resolved_before``."""

    @abstractmethod
    def due_notifications(self, *, now: datetime, limit: int) -> list[Incident]:
        """At most ``limit`` incidents whose delivery is pending and due
        (``notify_next_at <= now``), the longest waiting first (then by id)."""

    @abstractmethod
    def claim_notification(
        self, incident_id: int, *, attempts: int, now: datetime, until: datetime
    ) -> Incident | None:
        """Take the next delivery attempt of an incident, as a compare-and-set: only
        while its delivery is pending and due at ``now`` and it has made ``attempts``
        attempts (what the caller read), ``notify_attempts`` becomes ``attempts + 1``
        and ``notify_next_at`` becomes ``until`` (no other process tries before then:
        a sender that dies mid-attempt is retried once it passes). Returns the incident
        as claimed, or None when another process took it or it changed."""

    @abstractmethod
    def finish_notification(
        self,
        incident_id: int,
        *,
        attempt: int,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Record the end of delivery attempt ``attempt`` (the value
        :meth:`claim_notification` set), fenced: only while the delivery is still
        pending at that attempt (an incident resolved meanwhile has a new delivery to
        make, which this does not touch). Without ``error`` it was delivered
        (``notified_at = now``); with one it failed (``notify_error``, at most 1000
        characters kept), and is tried again at ``retry_at``, or, without it, given up
        (``failed``). Returns whether it applied."""
