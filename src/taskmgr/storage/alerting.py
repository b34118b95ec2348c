"""What every backend shares to evaluate the alert rules: the builders that turn what a
backend read into :class:`~taskmgr.core.alerts.Breach` values (so the memory and SQL
backends open the same incidents with the same words), the checks of the incident
reads' arguments, and the changes an incident's delivery goes through.

The backends read; these decide. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from taskmgr.core.alerts import AlertRule, Breach, Incident, NotifyState
from taskmgr.core.enums import PauseScope
from taskmgr.core.failures import FAILURE_STATUSES
from taskmgr.core.models import ExecutionStatus
from taskmgr.core.validation import validate_job_key
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.inputs import checked_limit

__all__ = [
    "LATE_KINDS",
    "MAX_NOTIFY_ERROR",
    "RUN_ENDS",
    "PauseEnd",
    "RunEnd",
    "checked_incident_reads",
    "delivered",
    "failing_breach",
    "late_breach",
    "new_delivery",
    "no_success_breach",
    "overrunning_breach",
    "pause_end",
    "retried",
]

#: What makes a job late, in the order that breaks a tie between two equally late
#: things: its slot not taken, a run still pending, a run dispatched but not started by
#: a worker, a slot recorded missed with no slot run since.
LATE_KINDS = ("slot", "pending", "dispatched", "missed")
#: The statuses that end a run (the last attempt of a chain): what ``failing`` counts.
RUN_ENDS = (
    ExecutionStatus.SUCCESS,
    ExecutionStatus.FAILED,
    ExecutionStatus.TIMEOUT,
    ExecutionStatus.LOST,
)
#: The end of a queue's (named) or the service's pause: ``(scope, queue, when)``.
PauseEnd = tuple[PauseScope, str | None, datetime]
#: Longest reason of a failed delivery kept on the incident.
MAX_NOTIFY_ERROR = 1000
#: Longest error of a failed run repeated in a ``failing`` incident.
_MAX_ERROR = 200


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _seconds(value: float) -> str:
    return f"{value:g} s"


def late_breach(
    job_key: str, threshold: float, candidates: Iterable[tuple[str, datetime, datetime]]
) -> Breach | None:
    """The ``late`` breach of a job, from what is late: ``(kind, due time, counted
    from)`` triples of :data:`LATE_KINDS`, each already ``threshold`` seconds past the
    time its lateness counts from (its due time, or the end of the window or pause that
    held it: :func:`taskmgr.core.alert_holds.late_from`); the earliest."""
    best = min(candidates, key=lambda c: (c[2], LATE_KINDS.index(c[0])), default=None)
    if best is None:
        return None
    kind, due, start = best
    after = _seconds(threshold)
    message = {
        "slot": f"the slot of {_iso(due)} was not taken {after} after its time",
        "pending": f"a run due at {_iso(due)} is still pending {after} after its time",
        "dispatched": f"a run due at {_iso(due)} was dispatched but no worker started it "
        f"within {after}",
        "missed": f"the slot of {_iso(due)} was missed and no later slot has run",
    }[kind]
    details: dict[str, Any] = {"threshold": threshold, "kind": kind, "due": _iso(due)}
    if start != due:
        message += f" (held until {_iso(start)} by a maintenance window or a pause)"
        details["held_until"] = _iso(start)
    return Breach(
        job_key,
        AlertRule.LATE,
        since=start + timedelta(seconds=threshold),
        message=message,
        details=details,
    )


@dataclass(frozen=True, slots=True)
class RunEnd:
    """The end of one run (the last attempt of its chain), as ``failing`` reads it."""

    execution_id: str
    status: ExecutionStatus
    completed_at: datetime
    error_type: str | None = None
    error_message: str | None = None


def failing_breach(job_key: str, threshold: int, runs: Sequence[RunEnd]) -> Breach | None:
    """The ``failing`` breach of a job from its latest run ends, newest first: when the
    ``threshold`` newest all failed."""
    recent = runs[:threshold]
    if len(recent) < threshold or any(run.status not in FAILURE_STATUSES for run in recent):
        return None
    latest = recent[0]
    kind = latest.error_type
    if kind is not None:
        kind = kind.removeprefix("builtins.")
    error = ": ".join(part for part in (kind, latest.error_message) if part)
    error = (error or latest.status.value)[:_MAX_ERROR]
    runs_word = "run" if threshold == 1 else f"{threshold} runs"
    return Breach(
        job_key,
        AlertRule.FAILING,
        since=latest.completed_at,
        message=f"the last {runs_word} failed (latest: {error})",
        details={"threshold": threshold, "execution_id": latest.execution_id, "error": error},
    )


def overrunning_breach(
    job_key: str, threshold: float, runs: Iterable[tuple[datetime, str]]
) -> Breach | None:
    """The ``overrunning`` breach of a job from its runs going on for ``threshold``
    seconds or more (``(started, execution id)`` pairs): the longest."""
    found = min(runs, default=None)
    if found is None:
        return None
    started, execution_id = found
    return Breach(
        job_key,
        AlertRule.OVERRUNNING,
        since=started + timedelta(seconds=threshold),
        message=f"a run started at {_iso(started)} has been running for over "
        f"{_seconds(threshold)} (execution {execution_id})",
        details={
            "threshold": threshold,
            "execution_id": execution_id,
            "started_at": _iso(started),
        },
    )


def no_success_breach(
    job_key: str,
    threshold: float,
    last_success: datetime | None,
    changed_at: datetime,
    *,
    released_at: datetime | None = None,
    since: datetime | None = None,
) -> Breach:
    """The ``no_success`` breach of a job whose window of no success, from its last
    success, or its last change or the end of a pause that held it when later, is over:
    at ``start + threshold``, or at ``since`` when maintenance windows and exclusion
    dates stretched it (:func:`taskmgr.core.alert_holds.no_success_deadline`)."""
    if last_success is not None and last_success >= changed_at:
        start, what = last_success, "no successful run since"
    else:
        start, what = changed_at, "no successful run since it was created or changed at"
    if released_at is not None and released_at > start:
        start, what = released_at, "no successful run since a pause that held it ended at"
    plain = start + timedelta(seconds=threshold)
    since = plain if since is None else since
    details: dict[str, Any] = {
        "threshold": threshold,
        "last_success_at": None if last_success is None else _iso(last_success),
    }
    message = f"{what} {_iso(start)} (within {_seconds(threshold)}"
    if since > plain:
        held = (since - plain).total_seconds()
        message += (
            f", not counting {_seconds(held)} inside maintenance windows or on excluded dates"
        )
        details["held_seconds"] = held
    return Breach(
        job_key, AlertRule.NO_SUCCESS, since=since, message=message + ")", details=details
    )


def pause_end(at: datetime, details: Mapping[str, Any]) -> PauseEnd | None:
    """The end of a queue's or the service's pause as the ``resume`` entry of the audit
    log records it (``details["pause"]``, the pause that ended): the entry's time, or
    the pause's ``until`` when earlier (it ended by itself, and a claim noticed).
    None for anything else (a job's resume is a change of the job instead)."""
    pause = details.get("pause")
    if not isinstance(pause, Mapping):
        return None
    try:
        scope = PauseScope(str(pause.get("scope")))
    except ValueError:
        return None
    name = pause.get("name")
    if scope is PauseScope.JOB or not (name is None or isinstance(name, str)):
        return None
    until = pause.get("until")
    if isinstance(until, str):
        try:
            moment = datetime.fromisoformat(until)
        except ValueError:
            moment = at
        if moment.tzinfo is not None and moment < at:
            at = moment
    return scope, name, at


def checked_incident_reads(
    limit: object, before: object, job_key: object
) -> tuple[int, int | None, str | None]:
    """The arguments of ``list_incidents``, checked."""
    checked_limit(limit)
    if before is not None and (
        isinstance(before, bool) or not isinstance(before, int) or before < 1
    ):
        raise InvalidInputError(f"must be a positive integer, got {before!r}", field="before")
    key = None if job_key is None else validate_job_key(job_key)
    assert isinstance(limit, int)
    return limit, before, key


# -- deliveries ----------------------------------------------------------------------


def new_delivery(now: datetime) -> dict[str, Any]:
    """The delivery fields of an incident just opened or resolved, with a webhook."""
    return {
        "notify_state": NotifyState.PENDING,
        "notify_attempts": 0,
        "notify_next_at": now,
        "notify_error": None,
    }


def delivered(now: datetime) -> dict[str, Any]:
    return {
        "notify_state": NotifyState.DELIVERED,
        "notify_next_at": None,
        "notified_at": now,
        "notify_error": None,
    }


def retried(error: str, retry_at: datetime | None) -> dict[str, Any]:
    """A failed attempt: tried again at ``retry_at``, or given up without it."""
    return {
        "notify_state": NotifyState.PENDING if retry_at is not None else NotifyState.FAILED,
        "notify_next_at": retry_at,
        "notify_error": error[:MAX_NOTIFY_ERROR],
    }


def breach_incident(breach: Breach, *, incident_id: int, now: datetime, notify: bool) -> Incident:
    """The incident a breach opens."""
    data: dict[str, Any] = {
        "id": incident_id,
        "job_key": breach.job_key,
        "rule": breach.rule,
        "since": breach.since,
        "opened_at": now,
        "message": breach.message,
        "details": dict(breach.details),
    }
    if notify:
        data.update(new_delivery(now))
    return Incident(**data)
