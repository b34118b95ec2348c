"""An in-memory :class:`~taskmgr.storage.base.Storage`, for tests and ephemeral use.

It keeps the same promises as the SQL backend within one process (one lock makes
every method atomic) and loses everything when the process ends. Stored values are
frozen pydantic models, so handing them out needs no copies.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    Instance,
    InstanceStatus,
    Job,
    JobDefinition,
    JobSource,
    JobState,
)
from taskmgr.exceptions import (
    ConflictError,
    ExecutionNotFoundError,
    JobBusyError,
    JobExistsError,
    JobNotFoundError,
    VersionConflictError,
)
from taskmgr.storage.base import (
    ClaimBatch,
    Claimed,
    ExecutionFilter,
    HistorySummary,
    NewExecution,
    Outcome,
    Planner,
    Storage,
)
from taskmgr.storage.common import (
    apply_job_changes,
    execution_from_new,
    for_owner,
    job_from_definition,
    lost_message,
)

__all__ = ["MemoryStorage"]

_Slot = tuple[int, datetime, int]


def _slot(execution: Execution | NewExecution) -> _Slot:
    return (execution.job_id, execution.scheduled_for, execution.attempt)


def _is_active(execution: Execution) -> bool:
    return execution.status is ExecutionStatus.RUNNING or (
        execution.status is ExecutionStatus.PENDING and not execution.queued
    )


@dataclass
class _State:
    jobs: dict[int, Job] = field(default_factory=dict)
    job_ids: dict[str, int] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    slots: set[_Slot] = field(default_factory=set)
    instances: dict[str, Instance] = field(default_factory=dict)
    next_job_id: int = 1


class MemoryStorage(Storage):
    """Everything in dicts behind one re-entrant lock. ``open``/``close`` keep the data,
    so a service can be restarted on the same storage in a test."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = _State()
        self._subscribers: list[Callable[[], None]] = []

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def after_fork(self) -> None:
        # the data stays (a copy, private to the child); a lock held by another
        # thread of the parent at fork time would never be released here
        self._lock = threading.RLock()

    # -- jobs ----------------------------------------------------------------

    def add_job(
        self,
        definition: JobDefinition,
        *,
        source: JobSource,
        state: JobState,
        next_run_at: datetime | None,
        fingerprint: str | None,
        now: datetime,
    ) -> Job:
        with self._lock:
            st = self._state
            if definition.key in st.job_ids:
                raise JobExistsError(definition.key)
            job = job_from_definition(
                definition,
                job_id=st.next_job_id,
                source=source,
                state=state,
                next_run_at=next_run_at,
                fingerprint=fingerprint,
                now=now,
            )
            st.next_job_id += 1
            st.jobs[job.id] = job
            st.job_ids[job.key] = job.id
        self._notify()
        return job

    def _job_by_key(self, key: str) -> Job:
        job_id = self._state.job_ids.get(key)
        if job_id is None:
            raise JobNotFoundError(key)
        return self._state.jobs[job_id]

    def get_job(self, key: str) -> Job:
        with self._lock:
            return self._job_by_key(key)

    def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        source: JobSource | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        with self._lock:
            jobs = sorted(self._state.jobs.values(), key=lambda job: job.key)
        wanted = set(states)
        found = [
            job
            for job in jobs
            if (not wanted or job.state in wanted)
            and (source is None or job.source is source)
            and (after_key is None or job.key > after_key)
        ]
        return found if limit is None else found[:limit]

    def update_job(
        self,
        key: str,
        changes: Mapping[str, Any],
        *,
        now: datetime,
        expected_version: int | None = None,
    ) -> Job:
        with self._lock:
            job = self._job_by_key(key)
            if expected_version is not None and job.version != expected_version:
                raise VersionConflictError(
                    f"job {key!r} is at version {job.version}, not {expected_version}"
                )
            updated = apply_job_changes(job, changes, now=now)
            self._state.jobs[job.id] = updated
        self._notify()
        return updated

    def delete_job(self, key: str, *, now: datetime) -> None:
        with self._lock:
            st = self._state
            job = self._job_by_key(key)
            del st.jobs[job.id]
            del st.job_ids[key]
            for execution in list(st.executions.values()):
                if execution.job_id == job.id and execution.status is ExecutionStatus.PENDING:
                    st.executions[execution.id] = execution.model_copy(
                        update={"status": ExecutionStatus.CANCELLED, "completed_at": now}
                    )
        self._notify()

    # -- scheduling ------------------------------------------------------------

    def claim(self, *, now: datetime, owner: str, limit: int, planner: Planner) -> list[Claimed]:
        with self._lock:
            st = self._state
            me = st.instances.get(owner)
            if me is not None and me.status is not InstanceStatus.RUNNING:
                return []
            due_jobs = sorted(
                (
                    job
                    for job in st.jobs.values()
                    if job.state is JobState.ACTIVE
                    and job.next_run_at is not None
                    and job.next_run_at <= now
                ),
                key=lambda job: (job.next_run_at, job.id),
            )[:limit]
            due_pending = sorted(
                (
                    execution
                    for execution in st.executions.values()
                    if execution.status is ExecutionStatus.PENDING and execution.due_at <= now
                ),
                key=lambda execution: (execution.due_at, execution.id),
            )[:limit]
            referenced = {job.id for job in due_jobs} | {e.job_id for e in due_pending}
            jobs = {job_id: st.jobs[job_id] for job_id in referenced if job_id in st.jobs}
            active: dict[int, int] = dict.fromkeys(jobs, 0)
            for execution in st.executions.values():
                if execution.job_id in active and _is_active(execution):
                    active[execution.job_id] += 1
            plan = planner(
                ClaimBatch(
                    now=now, due_jobs=due_jobs, due_pending=due_pending, jobs=jobs, active=active
                )
            )

            claimed: list[Claimed] = []
            for advance in plan.advances:
                job = st.jobs.get(advance.job_id)
                if job is None or job.next_run_at != advance.expected_next_run_at:
                    continue
                slots = [_slot(new) for new in advance.executions]
                if len(set(slots)) != len(slots) or any(s in st.slots for s in slots):
                    continue
                job = job.model_copy(
                    update={
                        "next_run_at": advance.next_run_at,
                        "last_run_at": advance.last_run_at or job.last_run_at,
                    }
                )
                st.jobs[job.id] = job
                for new in advance.executions:
                    execution = execution_from_new(new, **for_owner(new, owner, now))
                    self._insert(execution)
                    if execution.status is ExecutionStatus.RUNNING:
                        claimed.append(Claimed(execution, job))

            for decision in plan.pending:
                found = st.executions.get(decision.execution_id)
                if found is None or found.status is not ExecutionStatus.PENDING:
                    continue
                if decision.status is ExecutionStatus.RUNNING:
                    job = st.jobs.get(found.job_id)
                    if job is None:
                        continue  # nothing could run it; the next claim cancels it
                    found = found.model_copy(
                        update={"status": decision.status, "owner": owner, "dispatched_at": now}
                    )
                    claimed.append(Claimed(found, job))
                else:
                    found = found.model_copy(
                        update={
                            "status": decision.status,
                            "completed_at": now,
                            "error_message": decision.error_message or found.error_message,
                        }
                    )
                st.executions[found.id] = found

            for job_id in plan.orphan_job_ids:
                job = st.jobs.get(job_id)
                if job is not None and job.state is not JobState.ORPHANED:
                    st.jobs[job_id] = job.model_copy(
                        update={
                            "state": JobState.ORPHANED,
                            "version": job.version + 1,
                            "updated_at": now,
                        }
                    )
            return claimed

    def _insert(self, execution: Execution) -> None:
        self._state.executions[execution.id] = execution
        self._state.slots.add(_slot(execution))

    def next_due_at(self) -> datetime | None:
        with self._lock:
            st = self._state
            times = [
                job.next_run_at
                for job in st.jobs.values()
                if job.state is JobState.ACTIVE and job.next_run_at is not None
            ]
            times += [
                execution.due_at
                for execution in st.executions.values()
                if execution.status is ExecutionStatus.PENDING and not execution.queued
            ]
            return min(times, default=None)

    # -- executions ----------------------------------------------------------------

    def add_execution(self, new: NewExecution, *, max_active: int | None = None) -> Execution:
        with self._lock:
            st = self._state
            if new.job_id not in st.jobs:
                raise JobNotFoundError(new.job_key)
            if max_active is not None:
                active = sum(
                    1
                    for execution in st.executions.values()
                    if execution.job_id == new.job_id and _is_active(execution)
                )
                if active >= max_active:
                    raise JobBusyError(
                        f"job {new.job_key!r} has {active} active run(s) (limit {max_active})"
                    )
            if new.id in st.executions or _slot(new) in st.slots:
                raise ConflictError(
                    f"an execution of job {new.job_key!r} for "
                    f"{new.scheduled_for.isoformat()} attempt {new.attempt} already exists"
                )
            execution = execution_from_new(new)
            self._insert(execution)
        self._notify()
        return execution

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        with self._lock:
            st = self._state
            applied: list[bool] = []
            for outcome in outcomes:
                execution = st.executions.get(outcome.execution_id)
                if (
                    execution is None
                    or execution.status is not ExecutionStatus.RUNNING
                    or execution.owner != outcome.owner
                ):
                    applied.append(False)
                    continue
                st.executions[execution.id] = execution.model_copy(
                    update={
                        "status": outcome.status,
                        "started_at": outcome.started_at,
                        "completed_at": outcome.completed_at,
                        "duration_ms": outcome.duration_ms,
                        "error_type": outcome.error_type,
                        "error_message": outcome.error_message,
                        "traceback": outcome.traceback,
                        "result_summary": copy.deepcopy(outcome.result_summary),
                    }
                )
                retry = outcome.retry
                if retry is not None and not (
                    retry.id in st.executions or _slot(retry) in st.slots
                ):
                    self._insert(execution_from_new(retry))
                applied.append(True)
            return applied

    def take_over(
        self,
        execution_id: str,
        *,
        from_owner: str,
        to_owner: str,
        attempt: int,
        now: datetime,
        celery_task_id: str | None = None,
    ) -> Claimed | None:
        with self._lock:
            st = self._state
            execution = st.executions.get(execution_id)
            if (
                execution is None
                or execution.status is not ExecutionStatus.RUNNING
                or execution.owner != from_owner
                or execution.attempt != attempt
            ):
                return None
            taker = st.instances.get(to_owner)
            if taker is not None and taker.status is not InstanceStatus.RUNNING:
                return None
            job = st.jobs.get(execution.job_id)
            if job is None:
                st.executions[execution_id] = execution.model_copy(
                    update={
                        "status": ExecutionStatus.CANCELLED,
                        "completed_at": now,
                        "error_message": "the job was deleted before a worker started it",
                    }
                )
                return None
            execution = execution.model_copy(
                update={"owner": to_owner, "started_at": now, "celery_task_id": celery_task_id}
            )
            st.executions[execution_id] = execution
            return Claimed(execution, job)

    def release(self, execution_id: str, *, owner: str, due_at: datetime) -> bool:
        with self._lock:
            execution = self._state.executions.get(execution_id)
            if (
                execution is None
                or execution.status is not ExecutionStatus.RUNNING
                or execution.owner != owner
            ):
                return False
            self._state.executions[execution_id] = execution.model_copy(
                update={
                    "status": ExecutionStatus.PENDING,
                    "owner": None,
                    "dispatched_at": None,
                    "started_at": None,
                    "due_at": due_at,
                }
            )
        self._notify()
        return True

    def get_execution(self, execution_id: str) -> Execution:
        with self._lock:
            execution = self._state.executions.get(execution_id)
        if execution is None:
            raise ExecutionNotFoundError(execution_id)
        return execution

    def list_executions(
        self,
        filters: ExecutionFilter,
        *,
        limit: int,
        before: tuple[datetime, str] | None = None,
    ) -> list[Execution]:
        with self._lock:
            executions = list(self._state.executions.values())
        statuses = set(filters.statuses)
        found = [
            e
            for e in executions
            if (filters.job_key is None or e.job_key == filters.job_key)
            and (not statuses or e.status in statuses)
            and (filters.since is None or e.scheduled_for >= filters.since)
            and (filters.until is None or e.scheduled_for <= filters.until)
            and (filters.owner is None or e.owner == filters.owner)
            and (before is None or (e.created_at, e.id) < before)
        ]
        found.sort(key=lambda e: (e.created_at, e.id), reverse=True)
        return found[:limit]

    def delete_finished_executions(
        self,
        *,
        completed_before: datetime,
        limit: int,
        statuses: Sequence[ExecutionStatus] | None = None,
    ) -> int:
        wanted = set(statuses) if statuses is not None else None
        with self._lock:
            st = self._state
            old = sorted(
                (
                    e
                    for e in st.executions.values()
                    if e.status.is_final
                    and (wanted is None or e.status in wanted)
                    and e.completed_at is not None
                    and e.completed_at < completed_before
                ),
                key=lambda e: (e.completed_at, e.id),
            )[: max(limit, 0)]
            for execution in old:
                del st.executions[execution.id]
                st.slots.discard(_slot(execution))
            return len(old)

    def history_summary(self) -> HistorySummary:
        counts: dict[tuple[str, ExecutionStatus], int] = {}
        last_success: dict[str, datetime] = {}
        with self._lock:
            for e in self._state.executions.values():
                pair = (e.job_key, e.status)
                counts[pair] = counts.get(pair, 0) + 1
                if e.status is ExecutionStatus.SUCCESS and e.completed_at is not None:
                    seen = last_success.get(e.job_key)
                    if seen is None or e.completed_at > seen:
                        last_success[e.job_key] = e.completed_at
        return HistorySummary(counts=counts, last_success=last_success)

    # -- instances -----------------------------------------------------------------

    def register_instance(self, instance: Instance) -> None:
        with self._lock:
            self._state.instances[instance.id] = instance

    def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        with self._lock:
            instance = self._state.instances.get(instance_id)
            if instance is None or instance.status is not InstanceStatus.RUNNING:
                return False
            self._state.instances[instance_id] = instance.model_copy(update={"last_heartbeat": now})
            return True

    def set_instance_status(self, instance_id: str, status: InstanceStatus) -> None:
        with self._lock:
            instance = self._state.instances.get(instance_id)
            if instance is not None:
                self._state.instances[instance_id] = instance.model_copy(update={"status": status})

    def list_instances(self) -> list[Instance]:
        with self._lock:
            instances = list(self._state.instances.values())
        return sorted(instances, key=lambda i: (i.started_at, i.id), reverse=True)

    def reap(self, *, heartbeat_before: datetime, now: datetime) -> list[Claimed]:
        with self._lock:
            st = self._state
            for instance in list(st.instances.values()):
                if (
                    instance.status is InstanceStatus.RUNNING
                    and instance.last_heartbeat < heartbeat_before
                ):
                    st.instances[instance.id] = instance.model_copy(
                        update={"status": InstanceStatus.DEAD}
                    )
            gone = {
                instance.id: instance.status
                for instance in st.instances.values()
                if instance.status is not InstanceStatus.RUNNING
            }
            reaped: list[Claimed] = []
            for execution in sorted(st.executions.values(), key=lambda e: e.id):
                if execution.status is not ExecutionStatus.RUNNING or execution.owner not in gone:
                    continue
                lost = execution.model_copy(
                    update={
                        "status": ExecutionStatus.LOST,
                        "completed_at": now,
                        "error_message": lost_message(execution.owner, gone[execution.owner]),
                    }
                )
                st.executions[lost.id] = lost
                job = st.jobs.get(lost.job_id)
                if job is not None:
                    reaped.append(Claimed(lost, job))
            return reaped

    def delete_instances(self, *, last_heartbeat_before: datetime) -> int:
        with self._lock:
            st = self._state
            busy = {
                execution.owner
                for execution in st.executions.values()
                if execution.status is ExecutionStatus.RUNNING
            }
            old = [
                instance.id
                for instance in st.instances.values()
                if instance.status is not InstanceStatus.RUNNING
                and instance.last_heartbeat < last_heartbeat_before
                and instance.id not in busy
            ]
            for instance_id in old:
                del st.instances[instance_id]
            return len(old)

    # -- change notifications (in-process) -------------------------------------------

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _notify(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback()
