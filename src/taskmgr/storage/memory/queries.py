"""The memory backend's reads: each query the SQL backend runs, over the dicts of
:class:`~taskmgr.storage.memory.state.State`, with the same filters and the same
order (the tie-breaks the contract in :mod:`taskmgr.storage.base` states)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    InstanceStatus,
    Job,
    JobSource,
    JobState,
)
from taskmgr.core.rules import is_active_run
from taskmgr.storage.base import ExecutionFilter, HistorySummary
from taskmgr.storage.memory.state import State

__all__ = [
    "active_counts",
    "due_jobs",
    "due_pending",
    "finished_before",
    "gone_instances",
    "history_summary",
    "jobs_matching",
    "matching",
    "next_due_at",
]


def jobs_matching(
    state: State,
    states: Collection[JobState],
    source: JobSource | None,
    after_key: str | None,
) -> list[Job]:
    """Jobs by key (code point order), as ``list_jobs`` filters them."""
    return [
        job
        for job in sorted(state.jobs.values(), key=lambda job: job.key)
        if (not states or job.state in states)
        and (source is None or job.source is source)
        and (after_key is None or job.key > after_key)
    ]


def due_jobs(state: State, now: datetime, limit: int) -> list[Job]:
    """Active jobs due at ``now``: earliest ``next_run_at`` first, ties by lowest id
    (ids only grow, so: in the order the jobs were added, as SQLite's index reads them)."""
    due = [
        job
        for job in state.jobs.values()
        if job.state is JobState.ACTIVE and job.next_run_at is not None and job.next_run_at <= now
    ]
    due.sort(key=lambda job: (job.next_run_at, job.id))
    return due[:limit]


def due_pending(state: State, now: datetime, limit: int) -> list[Execution]:
    """Pending executions due at ``now``: earliest ``due_at`` first, ties in the order
    they were inserted (as SQLite's index reads them; the sort is stable and the dict
    keeps insertion order, also when a row is replaced)."""
    due = [
        execution
        for execution in state.executions.values()
        if execution.status is ExecutionStatus.PENDING and execution.due_at <= now
    ]
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


def next_due_at(state: State) -> datetime | None:
    times = [
        job.next_run_at
        for job in state.jobs.values()
        if job.state is JobState.ACTIVE and job.next_run_at is not None
    ]
    times += [
        execution.due_at
        for execution in state.executions.values()
        if execution.status is ExecutionStatus.PENDING and not execution.queued
    ]
    return min(times, default=None)


def matching(
    state: State, filters: ExecutionFilter, before: tuple[datetime, str] | None
) -> list[Execution]:
    """Executions as ``list_executions`` filters them, newest ``(created_at, id)`` first."""
    statuses = set(filters.statuses)
    found = [
        e
        for e in state.executions.values()
        if (filters.job_key is None or e.job_key == filters.job_key)
        and (not statuses or e.status in statuses)
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


def gone_instances(state: State) -> dict[str, InstanceStatus]:
    """Instances that are not running (dead or stopped), with their status."""
    return {
        instance.id: instance.status
        for instance in state.instances.values()
        if instance.status is not InstanceStatus.RUNNING
    }
