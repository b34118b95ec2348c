"""The memory backend's alert evaluation, incidents and webhook deliveries, as the SQL
backend keeps them (:mod:`taskmgr.storage.sqlalchemy.incidents`): what breaks each
rule is read from the dicts, decided by the shared builders, applied under the lock."""

from __future__ import annotations

import functools
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta

from taskmgr.core.alert_holds import Releases, late_from, no_success_deadline, releases
from taskmgr.core.alerts import (
    AlertDefaults,
    AlertRule,
    Breach,
    Incident,
    IncidentChanges,
    NotifyState,
    incident_changes,
    judged,
    threshold,
)
from taskmgr.core.audit import AuditAction
from taskmgr.core.enums import SLOT_TRIGGERS, ExecutionStatus, PauseScope
from taskmgr.core.models import Execution, Job
from taskmgr.core.rules import in_effect
from taskmgr.core.triggers import Cron
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.alerting import (
    RUN_ENDS,
    PauseEnd,
    RunEnd,
    breach_incident,
    checked_incident_reads,
    delivered,
    failing_breach,
    late_breach,
    new_delivery,
    no_success_breach,
    overrunning_breach,
    pause_end,
    retried,
)
from taskmgr.storage.inputs import checked_limit, utc
from taskmgr.storage.memory.state import State

__all__ = ["MemoryIncidentOperations", "breaches"]


def _older(moment: datetime, now: datetime, seconds: float) -> bool:
    return now - moment >= timedelta(seconds=seconds)


def breaches(state: State, now: datetime, defaults: AlertDefaults) -> Iterator[Breach]:
    """What breaks each rule at ``now``, job by job."""
    by_job: dict[int, list[Execution]] = defaultdict(list)
    last_attempt: dict[str, int] = {}
    for execution in state.executions.values():
        by_job[execution.job_id].append(execution)
        chain = execution.chain_id
        last_attempt[chain] = max(last_attempt.get(chain, 0), execution.attempt)
    holds = _Holds(state, now)
    for job in state.jobs.values():
        runs = by_job.get(job.id, [])
        for rule in AlertRule:
            limit = threshold(job, rule, defaults)
            if limit is None or not judged(job, rule):
                continue
            if rule is AlertRule.LATE:
                if holds.paused(job):
                    continue  # held by a pause: not expected to run
                found = late_breach(job.key, limit, _late(job, runs, now, limit, holds))
            elif rule is AlertRule.FAILING:
                ends = sorted(
                    (
                        e
                        for e in runs
                        if e.status in RUN_ENDS and last_attempt[e.chain_id] == e.attempt
                    ),
                    key=lambda e: (e.completed_at, e.id),
                    reverse=True,
                )
                found = failing_breach(
                    job.key, int(limit), [_run_end(e) for e in ends[: int(limit)]]
                )
            elif rule is AlertRule.OVERRUNNING:
                going = (
                    (_started(e), e.id)
                    for e in runs
                    if e.status is ExecutionStatus.RUNNING and _older(_started(e), now, limit)
                )
                found = overrunning_breach(job.key, limit, going)
            else:
                found = None if holds.paused(job) else _no_success(job, runs, now, limit, holds)
            if found is not None:
                yield found


class _Holds:
    """What held the jobs back, as the SQL backend reads it
    (:mod:`taskmgr.storage.sqlalchemy.breaches`): the pauses in effect, the stored
    windows, and when each pause of a queue or of the service last ended (the ``resume``
    entries of the audit log, and stored pauses whose ``until`` has come)."""

    def __init__(self, state: State, now: datetime) -> None:
        stored = list(state.pauses.values())
        held = [pause for pause in stored if in_effect(pause, now)]
        self.service = any(pause.scope is PauseScope.SERVICE for pause in held)
        self.queues = {pause.name for pause in held if pause.scope is PauseScope.QUEUE}
        self.windows = [state.windows[name] for name in sorted(state.windows)]
        self._state, self._stored, self._now = state, stored, now

    @functools.cached_property
    def releases(self) -> Releases:
        """Read only once a rule found a candidate, as on SQL."""
        ends: list[PauseEnd] = [
            (p.scope, p.name, p.until)
            for p in self._stored
            if p.until is not None and p.until <= self._now
        ]
        for entry in self._state.audit.values():
            if entry.job_key is None and entry.action is AuditAction.RESUME:
                end = pause_end(entry.at, entry.details)
                if end is not None:
                    ends.append(end)
        return releases(ends)

    def paused(self, job: Job) -> bool:
        return self.service or (job.queue is not None and job.queue in self.queues)


def _late(
    job: Job, runs: list[Execution], now: datetime, limit: float, holds: _Holds
) -> Iterator[tuple[str, datetime, datetime]]:
    def late(kind: str, due: datetime) -> Iterator[tuple[str, datetime, datetime]]:
        if not _older(due, now, limit):
            return  # what held it only makes it later
        start = late_from(
            job.key,
            due,
            slot=kind in ("slot", "missed"),
            windows=holds.windows,
            released=holds.releases.of(job.queue),
        )
        if _older(start, now, limit):
            yield kind, due, start

    if job.next_run_at is not None:
        yield from late("slot", job.next_run_at)
    for e in runs:
        if e.status is ExecutionStatus.PENDING:
            yield from late("pending", e.due_at)
        elif e.status is ExecutionStatus.RUNNING:
            if e.started_at is None and e.celery_task_id is not None:
                yield from late("dispatched", e.due_at)
        elif (
            e.status is ExecutionStatus.MISSED
            and e.trigger in SLOT_TRIGGERS
            and (job.last_run_at is None or e.scheduled_for > job.last_run_at)
        ):
            yield from late("missed", e.scheduled_for)


def _started(execution: Execution) -> datetime:
    return execution.started_at or execution.dispatched_at or execution.created_at


def _run_end(execution: Execution) -> RunEnd:
    assert execution.completed_at is not None
    return RunEnd(
        execution.id,
        execution.status,
        execution.completed_at,
        execution.error_type,
        execution.error_message,
    )


def _no_success(
    job: Job, runs: list[Execution], now: datetime, limit: float, holds: _Holds
) -> Breach | None:
    successes = [
        e.completed_at
        for e in runs
        if e.status is ExecutionStatus.SUCCESS and e.completed_at is not None
    ]
    last = max(successes, default=None)
    start = job.updated_at if last is None or last < job.updated_at else last
    if not _older(start, now, limit):
        return None  # what held it only makes it later
    released = holds.releases.of(job.queue)
    if released is not None and released > start:
        start = released
    deadline = no_success_deadline(
        job.key,
        start,
        limit,
        windows=holds.windows,
        exclude_dates=job.exclude_dates,
        timezone=job.trigger.timezone if isinstance(job.trigger, Cron) else "UTC",
    )
    if deadline is None or deadline > now:
        return None
    return no_success_breach(
        job.key, limit, last, job.updated_at, released_at=released, since=deadline
    )


class MemoryIncidentOperations:
    """The incident half of :class:`~taskmgr.storage.MemoryStorage` (see
    :class:`~taskmgr.storage.incident_store.IncidentStore` for the contract)."""

    _lock: threading.RLock
    _state: State

    def evaluate_alerts(
        self, *, now: datetime, defaults: AlertDefaults, notify: bool = False
    ) -> IncidentChanges | None:
        now = utc(now, "now")
        if not isinstance(defaults, AlertDefaults):
            raise InvalidInputError(
                f"must be AlertDefaults, got {type(defaults).__name__}", field="defaults"
            )
        with self._lock, self._state.atomic():
            st = self._state
            found = list(breaches(st, now, defaults))
            still_open = [incident for incident in st.incidents.values() if incident.is_open]
            to_open, to_resolve = incident_changes(found, still_open)
            opened = []
            for breach in to_open:
                incident = breach_incident(
                    breach, incident_id=st.next_incident_id, now=now, notify=notify
                )
                st.next_incident_id += 1
                st.put(st.incidents, incident.id, incident)
                opened.append(incident)
            resolved = []
            for incident in to_resolve:
                changes = {"resolved_at": now, **(new_delivery(now) if notify else {})}
                ended = incident.model_copy(update=changes)
                st.put(st.incidents, incident.id, ended)
                resolved.append(ended)
        return IncidentChanges(opened=opened, resolved=resolved)

    def list_incidents(
        self,
        *,
        open_only: bool = False,
        job_key: str | None = None,
        limit: int,
        before: int | None = None,
    ) -> list[Incident]:
        limit, before, job_key = checked_incident_reads(limit, before, job_key)
        with self._lock:
            found = [
                incident
                for incident in self._state.incidents.values()
                if (not open_only or incident.is_open)
                and (job_key is None or incident.job_key == job_key)
                and (before is None or incident.id < before)
            ]
        return sorted(found, key=lambda incident: incident.id, reverse=True)[:limit]

    def delete_incidents(self, *, resolved_before: datetime, limit: int) -> int:
        resolved_before = utc(resolved_before, "resolved_before")
        checked_limit(limit)
        with self._lock, self._state.atomic():
            st = self._state
            old = sorted(
                incident.id
                for incident in st.incidents.values()
                if incident.resolved_at is not None
                and incident.resolved_at < resolved_before
                and incident.notify_state is not NotifyState.PENDING
            )[:limit]
            for incident_id in old:
                st.drop(st.incidents, incident_id)
        return len(old)

    def due_notifications(self, *, now: datetime, limit: int) -> list[Incident]:
        now = utc(now, "now")
        checked_limit(limit)
        with self._lock:
            due = [
                incident
                for incident in self._state.incidents.values()
                if incident.notify_state is NotifyState.PENDING
                and incident.notify_next_at is not None
                and incident.notify_next_at <= now
            ]
        due.sort(key=lambda incident: (incident.notify_next_at, incident.id))
        return due[:limit]

    def claim_notification(
        self, incident_id: int, *, attempts: int, now: datetime, until: datetime
    ) -> Incident | None:
        now, until = utc(now, "now"), utc(until, "until")
        with self._lock:
            incident = self._state.incidents.get(incident_id)
            if (
                incident is None
                or incident.notify_state is not NotifyState.PENDING
                or incident.notify_attempts != attempts
                or incident.notify_next_at is None
                or incident.notify_next_at > now
            ):
                return None
            claimed = incident.model_copy(
                update={"notify_attempts": attempts + 1, "notify_next_at": until}
            )
            self._state.put(self._state.incidents, incident_id, claimed)
        return claimed

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
        with self._lock:
            incident = self._state.incidents.get(incident_id)
            if (
                incident is None
                or incident.notify_state is not NotifyState.PENDING
                or incident.notify_attempts != attempt
            ):
                return False
            changes = delivered(now) if error is None else retried(error, retry_at)
            self._state.put(self._state.incidents, incident_id, incident.model_copy(update=changes))
        return True
