"""The service's pauses of queues and of the whole service, the list of everything
paused, and backfills. Like every command, each checks its input completely before it
writes, writes in one storage call with its audit entry, and names who asks
(``actor``) and through which door (``source``). A job's own pause is
:meth:`~taskmgr.service.commands.JobCommands.pause_job`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.enums import JobState, PauseScope
from taskmgr.core.pauses import (
    MAX_BACKFILL_RUNS,
    BackfillResult,
    Pause,
    check_queue_name,
    check_reason,
    check_until,
)
from taskmgr.core.rules import in_effect
from taskmgr.core.triggers import Manual
from taskmgr.core.validation import ensure_aware
from taskmgr.exceptions import (
    InvalidBackfillError,
    InvalidDatetimeError,
    InvalidInputError,
    JobOrphanedError,
    VersionConflictError,
)
from taskmgr.scheduling.backfill import backfill_runs, slots_between
from taskmgr.service.base import ServiceBase, Source
from taskmgr.storage.pausing import job_pause

__all__ = ["DEFAULT_MAX_RUNS", "PauseCommands"]

#: How many slots a backfill may create unless told otherwise.
DEFAULT_MAX_RUNS = 1000
#: Tries of a backfill whose job changes while its slots are computed.
_BACKFILL_TRIES = 3
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class PauseCommands(ServiceBase):
    """Pauses of queues and of the service, and backfills, of
    :class:`~taskmgr.service.SchedulerService`."""

    def pause_queue(
        self,
        queue: str,
        *,
        reason: str | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
    ) -> Pause:
        """Pause every job whose ``queue`` is ``queue``, those created later included,
        cluster-wide: from the next claim on, the slots of their schedules pass (neither
        run nor recorded, as while a job is paused) and their pending runs (manual,
        deferred, retries, backfilled) wait. ``until`` (an aware datetime in the
        future) ends the pause by itself then. Pausing a paused queue replaces its
        reason and until (and who paused it); if neither differs, nothing is recorded.

        :raises PauseUntilPastError: ``until`` is not in the future (nothing is stored).
        :raises InvalidInputError: a bad queue name, reason or ``until``.
        """
        return self._pause(PauseScope.QUEUE, check_queue_name(queue), reason, until, actor, source)

    def resume_queue(
        self, queue: str, *, actor: str | None = None, source: Source = AuditSource.PYTHON
    ) -> Pause | None:
        """End the pause of ``queue``: its jobs go on from their next slot after now
        (the slots that passed while it was paused are not run) and their waiting runs
        start. Returns the pause that ended, or None if the queue was not paused (then
        nothing is recorded)."""
        return self._resume(PauseScope.QUEUE, check_queue_name(queue), actor, source)

    def pause_service(
        self,
        *,
        reason: str | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
    ) -> Pause:
        """Pause the whole service, cluster-wide: nothing starts on any instance (no slot,
        no pending run) until it is resumed, or until ``until``. Tasks can still be
        deferred and runs asked for: they wait. Replacing a pause works as for
        :meth:`pause_queue`.

        :raises PauseUntilPastError: ``until`` is not in the future (nothing is stored).
        """
        return self._pause(PauseScope.SERVICE, None, reason, until, actor, source)

    def resume_service(
        self, *, actor: str | None = None, source: Source = AuditSource.PYTHON
    ) -> Pause | None:
        """End the pause of the whole service (see :meth:`resume_queue`). Returns the
        pause that ended, or None if the service was not paused."""
        return self._resume(PauseScope.SERVICE, None, actor, source)

    def list_pauses(self) -> list[Pause]:
        """Everything paused now, with who, why, since when and until when: the whole
        service's pause first, then the queues' by name, then the paused jobs by key."""
        self.open()
        now = self.clock.now()
        stored = self.storage.list_pauses(now=now)
        jobs = self.storage.list_jobs(states=[JobState.PAUSED])
        return stored + [p for p in map(job_pause, jobs) if in_effect(p, now)]

    def _pause(
        self,
        scope: PauseScope,
        name: str | None,
        reason: str | None,
        until: datetime | None,
        actor: str | None,
        source: Source,
    ) -> Pause:
        audit = self._audit(AuditAction.PAUSE, actor, source)
        pause = Pause(
            scope=scope,
            name=name,
            paused_by=audit.actor,
            reason=check_reason(reason),
            paused_at=audit.at,
            until=check_until(until, audit.at),
        )
        self.open()
        stored = self.storage.set_pause(pause, audit=audit)
        self._wake()
        return stored

    def _resume(
        self, scope: PauseScope, name: str | None, actor: str | None, source: Source
    ) -> Pause | None:
        audit = self._audit(AuditAction.RESUME, actor, source)
        self.open()
        ended = self.storage.delete_pause(scope, name, audit=audit)
        self._wake()
        return ended

    # -- backfill ---------------------------------------------------------------------

    def backfill(
        self,
        key: str,
        start: datetime,
        end: datetime,
        *,
        max_runs: int = DEFAULT_MAX_RUNS,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
    ) -> BackfillResult:
        """Create the slots of the job's schedule in ``[start, end]`` (aware datetimes,
        both included) as pending runs (trigger ``backfill``), all in one transaction,
        and return what was done. Any instance claims each once, as any pending run;
        they start oldest first, at most ``max_instances`` at a time, whatever the
        overlap policy. A slot that already has a row of the job (run, missed, skipped,
        backfilled before) is not created again, and slots from the job's next slot on
        are left to its schedule. Runs of a paused job still start (as manual runs do);
        those of a paused queue or service wait. The audit log records the range and
        the counts.

        :raises JobNotFoundError: no such job.
        :raises JobOrphanedError: its function is not registered in this process.
        :raises InvalidBackfillError: ``start`` is not before ``end``, ``end`` is in the
            future, or the job has no schedule (a task).
        :raises BackfillTooLargeError: the range holds more than ``max_runs`` slots
            (1-100,000); nothing is stored.
        """
        audit = self._audit(AuditAction.BACKFILL, actor, source)
        now = audit.at
        first, last = _instant(start, "start"), _instant(end, "end")
        if first >= last:
            raise InvalidBackfillError(
                f"start {first.isoformat()} must be before end {last.isoformat()}", field="start"
            )
        if last > now:
            raise InvalidBackfillError(
                f"end {last.isoformat()} is in the future (now is {now.isoformat()}): a "
                "backfill fills past slots; the schedule runs the coming ones",
                field="end",
            )
        if (
            isinstance(max_runs, bool)
            or not isinstance(max_runs, int)
            or not 1 <= max_runs <= MAX_BACKFILL_RUNS
        ):
            raise InvalidInputError(
                f"must be an integer in 1-{MAX_BACKFILL_RUNS}, got {max_runs!r}", field="max_runs"
            )
        details = {"start": first.isoformat(), "end": last.isoformat(), "max_runs": max_runs}
        audit = dataclasses.replace(audit, details=details)
        self.open()
        for attempt in range(_BACKFILL_TRIES):
            job = self.storage.get_job(key)
            if job.state is JobState.ORPHANED or job.func not in self.registry:
                raise JobOrphanedError(
                    f"job {key!r} cannot run: function {job.func!r} is not registered"
                )
            if isinstance(job.trigger, Manual):
                raise InvalidBackfillError(
                    f"job {key!r} is a task: it has no schedule to backfill", field="key"
                )
            slots = slots_between(job.trigger, first, last, max_runs)
            news = backfill_runs(job, slots, now=now, actor=audit.actor)
            try:
                written = self.storage.add_backfill(news, job=job, now=now, audit=audit)
            except VersionConflictError:  # the job changed while its slots were computed
                if attempt == _BACKFILL_TRIES - 1:
                    raise
                continue
            if written.created:
                self._wake()
            created = [e.scheduled_for for e in written.created]
            return BackfillResult(
                job_key=job.key,
                start=first,
                end=last,
                slots=len(slots),
                created=len(created),
                existing=written.existing,
                scheduled=written.scheduled,
                first_created=min(created, default=None),
                last_created=max(created, default=None),
            )
        raise AssertionError("unreachable")


def _instant(value: object, field: str) -> datetime:
    """An aware datetime in UTC, within what the database stores (1970-9998)."""
    moment = ensure_aware(value, field)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        moment = _LATEST
    if not _EARLIEST <= moment < _LATEST:
        raise InvalidDatetimeError(
            f"{value} out of range: the year must be 1970-9998 (UTC)", field=field
        )
    return moment
