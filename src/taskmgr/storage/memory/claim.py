"""A claim on the memory backend: read the due work, ask the planner, apply its plan,
as the SQL backend's claim transaction does (:mod:`taskmgr.storage.sqlalchemy.claim`).
The caller holds the storage's lock and an :meth:`~.state.State.atomic` block."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from taskmgr.core.audit import AuditAction
from taskmgr.core.models import ExecutionStatus, JobState
from taskmgr.core.windows import deferral
from taskmgr.storage.auditing import by_code, job_changes
from taskmgr.storage.base import ClaimBatch, Claimed, JobAdvance, PendingDecision, Planner
from taskmgr.storage.common import apply_job_changes, execution_from_new, for_owner
from taskmgr.storage.inputs import checked_plan, validated
from taskmgr.storage.memory import queries
from taskmgr.storage.memory.audit import write_entry
from taskmgr.storage.memory.pauses import honour_pauses
from taskmgr.storage.memory.state import State, unique_keys

__all__ = ["claim"]


def claim(
    state: State,
    *,
    now: datetime,
    owner: str,
    limit: int,
    planner: Planner,
    horizon: datetime | None = None,
) -> list[Claimed]:
    pauses = honour_pauses(state, now)
    hold = queries.hold_of(pauses)
    horizon = now if horizon is None else horizon
    windows = [state.windows[name] for name in sorted(state.windows)]
    deferrals = deferral(windows, now) if windows else []
    due_jobs = queries.due_jobs(state, horizon, limit, hold, deferrals)
    due_pending = queries.due_pending(state, now, limit, hold)
    referenced = {job.id for job in due_jobs} | {e.job_id for e in due_pending}
    jobs = {job_id: state.jobs[job_id] for job_id in sorted(referenced) if job_id in state.jobs}
    batch = ClaimBatch(
        now=now,
        due_jobs=due_jobs,
        due_pending=due_pending,
        jobs=jobs,
        active=queries.active_counts(state, jobs),
        active_groups=queries.active_group_counts(state, jobs),
        pauses=pauses,
        horizon=horizon,
        windows=windows,
    )
    plan = checked_plan(planner(batch))
    claimed = _advance(state, plan.advances, owner, now)
    claimed += _decide(state, plan.pending, owner, now)
    _orphan(state, plan.orphan_job_ids, now)
    return claimed


def _advance(
    state: State, advances: Sequence[JobAdvance], owner: str, now: datetime
) -> list[Claimed]:
    """Each advance is a compare-and-set on ``next_run_at``; it loses as a whole when
    one of its executions has an id or a unique key already stored (or twice in itself)."""
    claimed: list[Claimed] = []
    for advance in advances:
        job = state.jobs.get(advance.job_id)
        if job is None or job.next_run_at != advance.expected_next_run_at:
            continue
        ids = {new.id for new in advance.executions}
        keys = [key for new in advance.executions for key in unique_keys(new)]
        if (
            len(ids) != len(advance.executions)
            or len(set(keys)) != len(keys)
            or any(state.taken(new) for new in advance.executions)
        ):
            continue
        changes: dict[str, Any] = {"next_run_at": advance.next_run_at}
        if advance.last_run_at is not None:
            changes["last_run_at"] = advance.last_run_at
        job = validated(job, changes)
        state.put_job(job)
        for new in advance.executions:
            execution = execution_from_new(new, **for_owner(new, owner, now))
            state.put_execution(execution)
            if execution.status is ExecutionStatus.RUNNING:
                claimed.append(Claimed(execution, job))
    return claimed


def _decide(
    state: State, decisions: Sequence[PendingDecision], owner: str, now: datetime
) -> list[Claimed]:
    """Each decision applies only to an execution still pending."""
    claimed: list[Claimed] = []
    for decision in decisions:
        found = state.executions.get(decision.execution_id)
        if found is None or found.status is not ExecutionStatus.PENDING:
            continue
        if decision.status is ExecutionStatus.RUNNING:
            job = state.jobs.get(found.job_id)
            if job is None:
                continue  # nothing could run it; the next claim cancels it
            found = validated(
                found, {"status": ExecutionStatus.RUNNING, "owner": owner, "dispatched_at": now}
            )
            claimed.append(Claimed(found, job))
        else:
            changes: dict[str, Any] = {"status": decision.status, "completed_at": now}
            if decision.error_message is not None:  # None keeps the message it had
                changes["error_message"] = decision.error_message
            found = validated(found, changes)
        state.put_execution(found)
    return claimed


def _orphan(state: State, job_ids: Sequence[int], now: datetime) -> None:
    for job_id in job_ids:
        job = state.jobs.get(job_id)
        if job is not None and job.state is not JobState.ORPHANED:
            orphaned = apply_job_changes(job, {"state": JobState.ORPHANED}, now=now)
            state.put_job(orphaned)
            changes = {"changes": job_changes(job, orphaned)}
            write_entry(state, by_code(AuditAction.UPDATE, now), job_key=job.key, details=changes)
