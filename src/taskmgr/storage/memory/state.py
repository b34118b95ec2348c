"""The memory backend's tables: dicts of frozen models, and an undo journal that makes
each storage call all-or-nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from taskmgr.core.alerts import Incident
from taskmgr.core.audit import AuditEntry
from taskmgr.core.models import SLOT_TRIGGERS, Execution, ExecutionTrigger, Instance, Job
from taskmgr.core.pauses import Pause
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.storage.base import NewExecution

__all__ = ["State", "UniqueKey", "unique_keys"]

#: One of the unique keys the SQL backend's indexes enforce, tagged by index.
UniqueKey = tuple[str, object, object]

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


def unique_keys(execution: Execution | NewExecution) -> list[UniqueKey]:
    """The keys no two executions share: the attempt of a chain, the slot of a
    schedule, the idempotency key of a deferred run (as the SQL indexes say)."""
    keys: list[UniqueKey] = [("chain", execution.chain_id or execution.id, execution.attempt)]
    if ExecutionTrigger(execution.trigger) in SLOT_TRIGGERS:
        keys.append(("slot", execution.job_id, execution.scheduled_for))
    if execution.idempotency_key is not None:
        keys.append(("idempotency", execution.job_id, execution.idempotency_key))
    return keys


@dataclass
class State:
    """Every row, by its key. Write through :meth:`put` and :meth:`drop` (or the row
    helpers), so that :meth:`atomic` can undo what a failed call wrote."""

    jobs: dict[int, Job] = field(default_factory=dict)
    job_ids: dict[str, int] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    #: Execution id by each of its unique keys (:func:`unique_keys`).
    keys: dict[UniqueKey, str] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    #: The audit log, by entry id (ids only grow).
    audit: dict[int, AuditEntry] = field(default_factory=dict)
    #: The pauses of queues and of the service, by ``(scope, name)`` (the service's
    #: name: '').
    pauses: dict[tuple[str, str], Pause] = field(default_factory=dict)
    #: The maintenance windows, by name.
    windows: dict[str, MaintenanceWindow] = field(default_factory=dict)
    #: The incidents of the alert rules, by id (ids only grow).
    incidents: dict[int, Incident] = field(default_factory=dict)
    next_job_id: int = 1
    next_audit_id: int = 1
    next_incident_id: int = 1
    _undo: list[tuple[dict[Any, Any], Any, Any]] | None = None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """What the block writes stays only if it ends without an exception."""
        undo: list[tuple[dict[Any, Any], Any, Any]] = []
        self._undo, next_job_id, next_audit_id = undo, self.next_job_id, self.next_audit_id
        next_incident_id = self.next_incident_id
        try:
            yield
        except BaseException:
            for table, key, old in reversed(undo):
                if old is _MISSING:
                    table.pop(key, None)
                else:
                    table[key] = old
            self.next_job_id = next_job_id
            self.next_audit_id = next_audit_id
            self.next_incident_id = next_incident_id
            raise
        finally:
            self._undo = None

    def put(self, table: dict[K, V], key: K, value: V) -> None:
        if self._undo is not None:
            self._undo.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def drop(self, table: dict[K, V], key: K) -> None:
        if self._undo is not None:
            self._undo.append((table, key, table.get(key, _MISSING)))
        table.pop(key, None)

    # -- rows ------------------------------------------------------------------------

    def job_by_key(self, key: str) -> Job | None:
        job_id = self.job_ids.get(key)
        return None if job_id is None else self.jobs[job_id]

    def job_version(self, job_id: int) -> int | None:
        """The stored version of job ``job_id``, None if it is gone."""
        job = self.jobs.get(job_id)
        return None if job is None else job.version

    def put_job(self, job: Job) -> None:
        self.put(self.jobs, job.id, job)
        self.put(self.job_ids, job.key, job.id)

    def drop_job(self, job: Job) -> None:
        self.drop(self.jobs, job.id)
        self.drop(self.job_ids, job.key)

    def taken(self, new: Execution | NewExecution) -> bool:
        """Whether an execution with this id or one of its unique keys is stored."""
        return new.id in self.executions or any(key in self.keys for key in unique_keys(new))

    def holder(self, key: UniqueKey) -> Execution | None:
        """The stored execution that holds ``key``, if any."""
        execution_id = self.keys.get(key)
        return None if execution_id is None else self.executions[execution_id]

    def put_execution(self, execution: Execution) -> None:
        """Insert or replace an execution (its unique keys never change)."""
        self.put(self.executions, execution.id, execution)
        for key in unique_keys(execution):
            self.put(self.keys, key, execution.id)

    def drop_execution(self, execution: Execution) -> None:
        self.drop(self.executions, execution.id)
        for key in unique_keys(execution):
            self.drop(self.keys, key)
