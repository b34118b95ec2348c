"""The memory backend's tables: dicts of frozen models, and an undo journal that makes
each storage call all-or-nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from taskmgr.core.models import Execution, Instance, Job
from taskmgr.storage.base import NewExecution

__all__ = ["Slot", "State", "slot_of"]

#: The unique key of an execution: ``(job_id, scheduled_for, attempt)``.
Slot = tuple[int, datetime, int]

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


def slot_of(execution: Execution | NewExecution) -> Slot:
    return (execution.job_id, execution.scheduled_for, execution.attempt)


@dataclass
class State:
    """Every row, by its key. Write through :meth:`put` and :meth:`drop` (or the row
    helpers), so that :meth:`atomic` can undo what a failed call wrote."""

    jobs: dict[int, Job] = field(default_factory=dict)
    job_ids: dict[str, int] = field(default_factory=dict)
    executions: dict[str, Execution] = field(default_factory=dict)
    #: Execution id by slot: the unique key the SQL backend's constraint enforces.
    slots: dict[Slot, str] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    next_job_id: int = 1
    _undo: list[tuple[dict[Any, Any], Any, Any]] | None = None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """What the block writes stays only if it ends without an exception."""
        undo: list[tuple[dict[Any, Any], Any, Any]] = []
        self._undo, next_job_id = undo, self.next_job_id
        try:
            yield
        except BaseException:
            for table, key, old in reversed(undo):
                if old is _MISSING:
                    table.pop(key, None)
                else:
                    table[key] = old
            self.next_job_id = next_job_id
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

    def put_job(self, job: Job) -> None:
        self.put(self.jobs, job.id, job)
        self.put(self.job_ids, job.key, job.id)

    def drop_job(self, job: Job) -> None:
        self.drop(self.jobs, job.id)
        self.drop(self.job_ids, job.key)

    def taken(self, new: Execution | NewExecution) -> bool:
        """Whether an execution with this id or this slot is stored."""
        return new.id in self.executions or slot_of(new) in self.slots

    def put_execution(self, execution: Execution) -> None:
        """Insert or replace an execution (its slot never changes)."""
        self.put(self.executions, execution.id, execution)
        self.put(self.slots, slot_of(execution), execution.id)

    def drop_execution(self, execution: Execution) -> None:
        self.drop(self.executions, execution.id)
        self.drop(self.slots, slot_of(execution))
