"""``MemoryStorage``: the storage contract in dicts, for tests and ephemeral use.

It keeps the same promises as the SQL backend within one process (one lock makes
every method atomic, an undo journal makes a failed one write nothing) and loses
everything when the process ends. Stored values are frozen pydantic models, so
handing them out needs no copies; every change builds a validated model, so bad
input is refused with the same error as on SQL.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    Instance,
    InstanceStatus,
    JobQueue,
)
from taskmgr.exceptions import (
    ExecutionNotFoundError,
    InvalidInputError,
    JobBusyError,
    JobNotFoundError,
)
from taskmgr.storage.auditing import checked_audit
from taskmgr.storage.base import (
    AuditRecord,
    Claimed,
    ExecutionFilter,
    HistorySummary,
    NewExecution,
    Outcome,
    Planner,
    Storage,
)
from taskmgr.storage.common import (
    JOB_DELETED_BEFORE_START,
    check_deferrals,
    check_job_versions,
    execution_conflict,
    execution_from_new,
    not_pending,
)
from taskmgr.storage.inputs import (
    checked_cursor,
    checked_filter,
    checked_instance,
    checked_job_id,
    checked_limit,
    checked_lookahead,
    checked_outcome,
    checked_task_id_changes,
    checked_task_ids,
    member,
    members,
    utc,
    validated,
)
from taskmgr.storage.memory import liveness, queries
from taskmgr.storage.memory.audit import MemoryAuditLog, write_entry
from taskmgr.storage.memory.claim import claim as apply_claim
from taskmgr.storage.memory.failures import MemoryFailureReads
from taskmgr.storage.memory.incidents import MemoryIncidentOperations
from taskmgr.storage.memory.jobs import MemoryJobOperations
from taskmgr.storage.memory.pauses import MemoryPauseOperations
from taskmgr.storage.memory.state import State
from taskmgr.storage.memory.windows import MemoryWindowOperations

__all__ = ["MemoryStorage"]


class MemoryStorage(
    MemoryJobOperations,
    MemoryFailureReads,
    MemoryPauseOperations,
    MemoryAuditLog,
    MemoryIncidentOperations,
    MemoryWindowOperations,
    Storage,
):
    """Everything in dicts behind one re-entrant lock. ``open``/``close`` keep the data,
    so a service can be restarted on the same storage in a test."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._state = State()
        self._subscribers: list[Callable[[], None]] = []

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"storage": "memory"}

    def after_fork(self) -> None:
        # the data stays (a copy, private to the child); a lock held by another
        # thread of the parent at fork time would never be released here
        self._lock = threading.RLock()

    # -- scheduling ------------------------------------------------------------

    def claim(
        self,
        *,
        now: datetime,
        owner: str,
        limit: int,
        planner: Planner,
        cap_at_database_now: bool = False,
        lookahead: float = 0.0,
    ) -> list[Claimed]:
        now = utc(now, "now")
        checked_limit(limit)
        ahead = timedelta(seconds=checked_lookahead(lookahead))
        with self._lock:
            if cap_at_database_now:
                now = min(now, self.database_now())
            me = self._state.instances.get(owner)
            if me is not None and me.status is not InstanceStatus.RUNNING:
                return []
            with self._state.atomic():
                return apply_claim(
                    self._state,
                    now=now,
                    owner=owner,
                    limit=limit,
                    planner=planner,
                    horizon=now + ahead,
                )

    def next_due_at(self) -> datetime | None:
        with self._lock:
            # every stored pause holds its jobs here; one that ran out is due itself
            st = self._state
            return queries.next_due_at(st, list(st.pauses.values()), list(st.windows.values()))

    def next_claim_at(self, *, now: datetime) -> datetime | None:
        now = utc(now, "now")
        with self._lock:
            return queries.next_claim_at(self._state, now)

    # -- executions ----------------------------------------------------------------

    def add_execution(
        self,
        new: NewExecution,
        *,
        max_active: int | None = None,
        audit: AuditRecord | None = None,
        job_version: int | None = None,
    ) -> Execution:
        execution = execution_from_new(new)  # validated first, as on SQL
        audit = checked_audit(audit)
        with self._lock, self._state.atomic():
            st = self._state
            if job_version is not None:
                check_job_versions(st.job_version, {new.job_id: job_version})
            elif new.job_id not in st.jobs:
                raise JobNotFoundError(new.job_key)
            if max_active is not None:
                active = queries.active_counts(st, [new.job_id])[new.job_id]
                if active >= max_active:
                    raise JobBusyError(
                        f"job {new.job_key!r} has {active} active run(s) (limit {max_active})"
                    )
            if st.taken(execution):
                raise execution_conflict(execution)
            st.put_execution(execution)
            write_entry(st, audit, job_key=execution.job_key, execution_id=execution.id)
        self._notify()
        return execution

    def defer_executions(
        self,
        news: Sequence[NewExecution],
        *,
        transaction: object | None = None,
        on_commit: Callable[[], None] | None = None,
        job_versions: Mapping[int, int] | None = None,
    ) -> list[Execution]:
        if transaction is not None:
            raise InvalidInputError(
                "MemoryStorage has no host transaction to write in: use SQL storage",
                field="session",
            )
        executions = [execution_from_new(new) for new in news]
        check_deferrals(executions)
        with self._lock, self._state.atomic():
            st = self._state
            stored: list[Execution] = []
            check_job_versions(st.job_version, job_versions)
            for execution in executions:
                if execution.job_id not in st.jobs:
                    raise JobNotFoundError(execution.job_key)
            for execution in executions:
                held = (
                    None
                    if execution.idempotency_key is None
                    else st.holder(("idempotency", execution.job_id, execution.idempotency_key))
                )
                if held is not None:
                    stored.append(held)
                    continue
                if st.taken(execution):
                    raise execution_conflict(execution)
                st.put_execution(execution)
                stored.append(execution)
        self._notify()
        if on_commit is not None:
            on_commit()
        return stored

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        outcomes = [checked_outcome(outcome) for outcome in outcomes]
        with self._lock, self._state.atomic():
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
                ended = {
                    "status": outcome.status,
                    "started_at": outcome.started_at,
                    "completed_at": outcome.completed_at,
                    "duration_ms": outcome.duration_ms,
                    "error_type": outcome.error_type,
                    "error_message": outcome.error_message,
                    "traceback": outcome.traceback,
                    "result_summary": copy.deepcopy(outcome.result_summary),
                }
                st.put_execution(validated(execution, ended))
                if outcome.retry is not None:
                    retry = execution_from_new(outcome.retry)
                    if not st.taken(retry):
                        st.put_execution(retry)
                applied.append(True)
            return applied

    def assign_task_ids(self, task_ids: Mapping[str, str], *, owner: str) -> set[str]:
        given = checked_task_ids(task_ids)
        assigned: set[str] = set()
        with self._lock:
            st = self._state
            for execution_id, task_id in given.items():
                execution = st.executions.get(execution_id)
                if (
                    execution is None
                    or execution.status is not ExecutionStatus.RUNNING
                    or execution.owner != owner
                    or execution.started_at is not None
                    or execution.celery_task_id not in (None, task_id)
                ):
                    continue
                if execution.celery_task_id is None:
                    st.put_execution(validated(execution, {"celery_task_id": task_id}))
                assigned.add(execution_id)
        return assigned

    def replace_task_ids(self, task_ids: Mapping[str, tuple[str, str]], *, owner: str) -> set[str]:
        given = checked_task_id_changes(task_ids)
        replaced: set[str] = set()
        with self._lock:
            st = self._state
            for execution_id, (old, new) in given.items():
                execution = st.executions.get(execution_id)
                if (
                    execution is None
                    or execution.status is not ExecutionStatus.RUNNING
                    or execution.owner != owner
                    or execution.started_at is not None
                    or execution.celery_task_id not in (old, new)
                ):
                    continue
                if execution.celery_task_id != new:
                    st.put_execution(validated(execution, {"celery_task_id": new}))
                replaced.add(execution_id)
        return replaced

    def take_over(
        self,
        execution_id: str,
        *,
        from_owner: str,
        to_owner: str,
        attempt: int,
        now: datetime,
        celery_task_id: str,
    ) -> Claimed | None:
        now = utc(now, "now")
        with self._lock:
            st = self._state
            taker = st.instances.get(to_owner)
            if taker is not None and taker.status is not InstanceStatus.RUNNING:
                return None
            execution = st.executions.get(execution_id)
            if (
                execution is None
                or execution.status is not ExecutionStatus.RUNNING
                or execution.owner != from_owner
                or execution.attempt != attempt
                # not started, and this message is the one published for it
                or execution.started_at is not None
                or execution.celery_task_id is None
                or execution.celery_task_id != celery_task_id
            ):
                return None
            job = st.jobs.get(execution.job_id)
            if job is None:
                cancelled = {
                    "status": ExecutionStatus.CANCELLED,
                    "completed_at": now,
                    "error_message": JOB_DELETED_BEFORE_START,
                }
                st.put_execution(validated(execution, cancelled))
                return None
            execution = validated(execution, {"owner": to_owner, "started_at": now})
            st.put_execution(execution)
            return Claimed(execution, job)

    def release(self, execution_id: str, *, owner: str, due_at: datetime) -> bool:
        due_at = utc(due_at, "due_at")
        with self._lock:
            execution = self._state.executions.get(execution_id)
            if (
                execution is None
                or execution.status is not ExecutionStatus.RUNNING
                or execution.owner != owner
            ):
                return False
            pending = {
                "status": ExecutionStatus.PENDING,
                "owner": None,
                "dispatched_at": None,
                "started_at": None,
                "celery_task_id": None,
                "due_at": due_at,
            }
            self._state.put_execution(validated(execution, pending))
        self._notify()
        return True

    def cancel_pending(
        self,
        execution_id: str,
        *,
        now: datetime,
        message: str,
        audit: AuditRecord | None = None,
    ) -> Execution:
        now = utc(now, "now")
        audit = checked_audit(audit)
        with self._lock, self._state.atomic():
            execution = self._state.executions.get(execution_id)
            if execution is None:
                raise ExecutionNotFoundError(execution_id)
            if execution.status is not ExecutionStatus.PENDING:
                raise not_pending(execution)
            cancelled = validated(
                execution,
                {
                    "status": ExecutionStatus.CANCELLED,
                    "completed_at": now,
                    "error_message": message,
                },
            )
            self._state.put_execution(cancelled)
            write_entry(self._state, audit, job_key=execution.job_key, execution_id=execution_id)
        return cancelled

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
        filters = checked_filter(filters)
        checked_limit(limit)
        before = checked_cursor(before)
        with self._lock:
            return queries.matching(self._state, filters, before)[:limit]

    def delete_finished_executions(
        self,
        *,
        completed_before: datetime,
        limit: int,
        statuses: Sequence[ExecutionStatus] | None = None,
        job_id: int | None = None,
        default_retention: bool = False,
    ) -> int:
        completed_before = utc(completed_before, "completed_before")
        checked_limit(limit)
        checked_job_id(job_id)
        wanted = None if statuses is None else set(members(ExecutionStatus, statuses, "statuses"))
        with self._lock, self._state.atomic():
            st = self._state
            old = queries.finished_before(st, completed_before, wanted)
            if job_id is not None:
                old = [e for e in old if e.job_id == job_id]
            if default_retention:
                own = {job.id for job in st.jobs.values() if job.retention is not None}
                old = [e for e in old if e.job_id not in own]
            old = old[:limit]
            for execution in old:
                st.drop_execution(execution)
            return len(old)

    def history_summary(self) -> HistorySummary:
        with self._lock:
            return queries.history_summary(self._state)

    def job_queues(self, *, now: datetime) -> list[JobQueue]:
        now = utc(now, "now")
        with self._lock:
            return queries.job_queues(self._state, now)

    # -- instances -----------------------------------------------------------------

    def register_instance(self, instance: Instance) -> None:
        instance = checked_instance(instance)
        with self._lock:
            self._state.put(self._state.instances, instance.id, instance)

    def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        now = utc(now, "now")
        with self._lock:
            instance = self._state.instances.get(instance_id)
            if instance is None or instance.status is not InstanceStatus.RUNNING:
                return False
            beat = validated(instance, {"last_heartbeat": now})
            self._state.put(self._state.instances, instance_id, beat)
            return True

    def set_instance_status(self, instance_id: str, status: InstanceStatus) -> None:
        status = member(InstanceStatus, status, "status")
        with self._lock:
            instance = self._state.instances.get(instance_id)
            if instance is not None:
                changed = validated(instance, {"status": status})
                self._state.put(self._state.instances, instance_id, changed)

    def list_instances(self) -> list[Instance]:
        with self._lock:
            instances = list(self._state.instances.values())
        return sorted(instances, key=lambda i: (i.started_at, i.id), reverse=True)

    def reap(
        self,
        *,
        heartbeat_before: datetime,
        now: datetime,
        retry: Callable[[Claimed], NewExecution | None] | None = None,
    ) -> list[Claimed]:
        heartbeat_before, now = utc(heartbeat_before, "heartbeat_before"), utc(now, "now")
        with self._lock, self._state.atomic():
            return liveness.reap(
                self._state, heartbeat_before=heartbeat_before, now=now, retry=retry
            )

    def delete_instances(self, *, last_heartbeat_before: datetime) -> int:
        last_heartbeat_before = utc(last_heartbeat_before, "last_heartbeat_before")
        with self._lock:
            st = self._state
            old = liveness.deletable_instances(st, last_heartbeat_before)
            for instance_id in old:
                st.drop(st.instances, instance_id)
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
