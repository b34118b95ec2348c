"""The memory backend's reads: each query the SQL backend runs, over the dicts of
:class:`~taskmgr.storage.memory.state.State`, with the same filters and the same
order (the tie-breaks the contract in :mod:`taskmgr.storage.base` states)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from taskmgr.core.enums import PauseScope
from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    InstanceStatus,
    Job,
    JobQueue,
    JobSource,
    JobState,
)
from taskmgr.core.pauses import Pause
from taskmgr.core.rules import is_active_run
from taskmgr.core.triggers import Date
from taskmgr.core.windows import Deferral, MaintenanceWindow, due_after_holds, is_deferred
from taskmgr.storage.base import ExecutionFilter, HistorySummary
from taskmgr.storage.inputs import fold_ascii
from taskmgr.storage.memory.state import State

__all__ = [
    "NO_HOLD",
    "Hold",
    "active_counts",
    "active_group_counts",
    "due_jobs",
    "due_pending",
    "finished_before",
    "full_groups",
    "full_jobs",
    "gone_instances",
    "held",
    "history_summary",
    "hold_of",
    "job_queues",
    "jobs_matching",
    "matching",
    "next_claim_at",
    "next_due_at",
]

#: What pauses hold: the whole service, and these queues.
Hold = tuple[bool, frozenset[str]]
NO_HOLD: Hold = (False, frozenset())


def jobs_matching(
    state: State,
    states: Collection[JobState],
    source: JobSource | None,
    after_key: str | None,
    text: str | None = None,
) -> list[Job]:
    """Jobs by key (code point order), as ``list_jobs`` filters them."""
    return [
        job
        for job in sorted(state.jobs.values(), key=lambda job: job.key)
        if (not states or job.state in states)
        and (source is None or job.source is source)
        and (after_key is None or job.key > after_key)
        and (text is None or _mentions(job, fold_ascii(text)))
    ]


def _mentions(job: Job, folded: str) -> bool:
    """Whether the job's key, description or a display name contains ``folded``."""
    haystack = (job.key, job.description or "", *job.names.values())
    return any(folded in fold_ascii(value) for value in haystack)


def held(job: Job | None, hold: Hold) -> bool:
    """Whether ``job`` is held by a pause of its queue or of the service."""
    service, queues = hold
    return job is not None and (service or (job.queue is not None and job.queue in queues))


def due_jobs(
    state: State,
    now: datetime,
    limit: int,
    hold: Hold = NO_HOLD,
    deferrals: Sequence[Deferral] = (),
) -> list[Job]:
    """Active jobs due at ``now`` (a claim's horizon): earliest ``next_run_at`` first,
    ties by lowest id (ids only grow, so: in the order the jobs were added, as SQLite's
    index reads them).
    One-shot jobs that ``hold`` holds are left out: they keep their slot; so are the
    jobs an open ``defer`` window holds (``deferrals``)."""
    due = [
        job
        for job in state.jobs.values()
        if job.state is JobState.ACTIVE
        and job.next_run_at is not None
        and job.next_run_at <= now
        and not (isinstance(job.trigger, Date) and held(job, hold))
        and not (deferrals and is_deferred(job.key, job.next_run_at, deferrals))
    ]
    due.sort(key=lambda job: (job.next_run_at, job.id))
    return due[:limit]


def due_pending(state: State, now: datetime, limit: int, hold: Hold = NO_HOLD) -> list[Execution]:
    """Pending executions due at ``now``: earliest ``due_at`` first, ties in the order
    they were inserted (as SQLite's index reads them; the sort is stable and the dict
    keeps insertion order, also when a row is replaced). Queued runs of a full job or
    group (:func:`full_jobs`, :func:`full_groups`) are left out, as the SQL backend's
    statement leaves them, and so are the runs of the jobs ``hold`` holds."""
    if hold[0]:
        return []
    due = [
        execution
        for execution in state.executions.values()
        if execution.status is ExecutionStatus.PENDING
        and execution.due_at <= now
        and not (hold[1] and held(state.jobs.get(execution.job_id), hold))
    ]
    if any(e.queued for e in due):
        jobs = full_jobs(state)
        due = [e for e in due if not (e.queued and e.job_id in jobs)]
    if any(e.queued and e.concurrency_value is not None for e in due):
        full = full_groups(state)
        due = [e for e in due if not (e.queued and (e.job_id, e.concurrency_value) in full)]
    due.sort(key=lambda execution: execution.due_at)
    return due[:limit]


def active_counts(state: State, job_ids: Iterable[int]) -> dict[int, int]:
    """Executions counted against ``max_instances``
    (:func:`~taskmgr.core.rules.is_active_run`), per job id in ``job_ids``."""
    counts = dict.fromkeys(job_ids, 0)
    for execution in state.executions.values():
        if execution.job_id in counts and is_active_run(execution.status, execution.queued):
            counts[execution.job_id] += 1
    return counts


def active_group_counts(state: State, jobs: Mapping[int, Job]) -> dict[tuple[int, str | None], int]:
    """Executions counted against ``max_instances`` per ``(job id, concurrency_value)``,
    for the jobs of ``jobs`` that have a ``concurrency_key`` (groups with none absent)."""
    keyed = {job_id for job_id, job in jobs.items() if job.concurrency_key is not None}
    counts: dict[tuple[int, str | None], int] = {}
    for e in state.executions.values():
        if e.job_id in keyed and is_active_run(e.status, e.queued):
            group = (e.job_id, e.concurrency_value)
            counts[group] = counts.get(group, 0) + 1
    return counts


def full_groups(state: State) -> set[tuple[int, str]]:
    """The ``(job id, concurrency_value)`` groups of the jobs that have a
    ``concurrency_key`` whose active runs number ``max_instances`` or more."""
    counts: dict[tuple[int, str], int] = {}
    for e in state.executions.values():
        job = state.jobs.get(e.job_id)
        if (
            job is not None
            and job.concurrency_key is not None
            and e.concurrency_value is not None
            and is_active_run(e.status, e.queued)
        ):
            group = (e.job_id, e.concurrency_value)
            counts[group] = counts.get(group, 0) + 1
    return {group for group, n in counts.items() if n >= state.jobs[group[0]].max_instances}


def full_jobs(state: State) -> set[int]:
    """The jobs without a ``concurrency_key`` whose active runs number
    ``max_instances`` or more."""
    counts: dict[int, int] = {}
    for e in state.executions.values():
        job = state.jobs.get(e.job_id)
        if job is not None and job.concurrency_key is None and is_active_run(e.status, e.queued):
            counts[e.job_id] = counts.get(e.job_id, 0) + 1
    return {job_id for job_id, n in counts.items() if n >= state.jobs[job_id].max_instances}


def next_due_at(
    state: State, pauses: Sequence[Pause] = (), windows: Sequence[MaintenanceWindow] = ()
) -> datetime | None:
    """As the SQL backend reads it: the earliest slot of an active job and due time of
    a pending run that are not held by ``pauses``, ``until`` of a paused job, and the
    ``until`` of each of ``pauses``; a job's slot held by a ``defer`` window of
    ``windows`` counts when the window closes."""
    hold = hold_of(pauses)
    times = [
        due_after_holds(job.key, job.next_run_at, windows) if windows else job.next_run_at
        for job in state.jobs.values()
        if job.state is JobState.ACTIVE and job.next_run_at is not None and not held(job, hold)
    ]
    times += [
        execution.due_at
        for execution in state.executions.values()
        if execution.status is ExecutionStatus.PENDING
        and not execution.queued
        and not held(state.jobs.get(execution.job_id), hold)
    ]
    times += [job.paused_until for job in state.jobs.values() if job.paused_until is not None]
    times += [pause.until for pause in pauses if pause.until is not None]
    return min(times, default=None)


def next_claim_at(state: State, now: datetime) -> datetime | None:
    """As the SQL backend reads it: :func:`next_due_at` with every stored pause and
    window (a job a ``defer`` window holds counts when it closes), or ``now`` while a
    queued run due by ``now`` waits (it may start as soon as the run ahead of it ends)."""
    due = next_due_at(state, list(state.pauses.values()), list(state.windows.values()))
    if due is not None and due <= now:
        return due
    queued = any(
        e.status is ExecutionStatus.PENDING and e.queued and e.due_at <= now
        for e in state.executions.values()
    )
    return now if queued else due


def hold_of(pauses: Sequence[Pause]) -> Hold:
    """Whether ``pauses`` hold the whole service, and the queues they hold."""
    service = any(p.scope is PauseScope.SERVICE for p in pauses)
    return service, frozenset(p.name for p in pauses if p.scope is PauseScope.QUEUE and p.name)


def matching(
    state: State, filters: ExecutionFilter, before: tuple[datetime, str] | None
) -> list[Execution]:
    """Executions as ``list_executions`` filters them, newest ``(created_at, id)`` first."""
    statuses = set(filters.statuses)
    triggers = set(filters.triggers)
    found = [
        e
        for e in state.executions.values()
        if (filters.job_key is None or e.job_key == filters.job_key)
        and (not statuses or e.status in statuses)
        and (not triggers or e.trigger in triggers)
        and (filters.chain_id is None or e.chain_id == filters.chain_id)
        and (filters.since is None or e.scheduled_for >= filters.since)
        and (filters.until is None or e.scheduled_for <= filters.until)
        and (filters.owner is None or e.owner == filters.owner)
        and (before is None or (e.created_at, e.id) < before)
    ]
    found.sort(key=lambda e: (e.created_at, e.id), reverse=True)
    return found


def finished_before(
    state: State, completed_before: datetime, statuses: Collection[ExecutionStatus] | None
) -> list[Execution]:
    """Final executions completed before the cutoff, oldest ``(completed_at, id)`` first."""
    old = [
        e
        for e in state.executions.values()
        if e.status.is_final
        and (statuses is None or e.status in statuses)
        and e.completed_at is not None
        and e.completed_at < completed_before
    ]
    old.sort(key=lambda e: (e.completed_at, e.id))
    return old


def history_summary(state: State) -> HistorySummary:
    counts: dict[tuple[str, ExecutionStatus], int] = {}
    last_success: dict[str, datetime] = {}
    for e in state.executions.values():
        pair = (e.job_key, e.status)
        counts[pair] = counts.get(pair, 0) + 1
        if e.status is ExecutionStatus.SUCCESS and e.completed_at is not None:
            seen = last_success.get(e.job_key)
            if seen is None or e.completed_at > seen:
                last_success[e.job_key] = e.completed_at
    return HistorySummary(counts=counts, last_success=last_success)


@dataclass
class _Tally:
    pending: int = 0
    due: int = 0
    running: int = 0
    oldest_due_at: datetime | None = None


def job_queues(state: State, now: datetime) -> list[JobQueue]:
    """Pending and running executions per job, as ``Storage.job_queues`` counts them."""
    found: dict[tuple[str, int], _Tally] = {}
    for e in state.executions.values():
        if e.status is ExecutionStatus.RUNNING:
            found.setdefault((e.job_key, e.job_id), _Tally()).running += 1
        elif e.status is ExecutionStatus.PENDING:
            tally = found.setdefault((e.job_key, e.job_id), _Tally())
            tally.pending += 1
            if e.due_at <= now:
                tally.due += 1
                if tally.oldest_due_at is None or e.due_at < tally.oldest_due_at:
                    tally.oldest_due_at = e.due_at
    return [
        JobQueue(
            job_id=job_id,
            job_key=key,
            pending=tally.pending,
            due=tally.due,
            running=tally.running,
            oldest_due_at=tally.oldest_due_at,
        )
        for (key, job_id), tally in sorted(found.items())  # str order is code point order
    ]


def gone_instances(state: State) -> dict[str, InstanceStatus]:
    """Instances that are not running (dead or stopped), with their status."""
    return {
        instance.id: instance.status
        for instance in state.instances.values()
        if instance.status is not InstanceStatus.RUNNING
    }
