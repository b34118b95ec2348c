"""Deferring tasks: runs of a job asked for with arguments, now or later, at most once
per idempotency key. Every job can be deferred; a ``@task`` is a job that has no
schedule. Each call checks its input completely, then writes in one storage call, so
a refused call leaves nothing behind."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.decorators import get_definition
from taskmgr.core.models import (
    Execution,
    ExecutionTrigger,
    OverlapPolicy,
)
from taskmgr.core.validation import ensure_aware, validate_actor
from taskmgr.exceptions import InvalidInputError
from taskmgr.service.base import ServiceBase, requested_run

__all__ = ["MAX_IDEMPOTENCY_KEY", "TaskCommands"]

#: The longest idempotency key accepted (the column's width).
MAX_IDEMPOTENCY_KEY = 255
#: Most runs one :meth:`TaskCommands.defer_many` call writes (one transaction).
MAX_BATCH = 10_000
#: Latest delay accepted: one year.
MAX_DELAY = timedelta(days=366)

Task = Callable[..., Any] | str


class TaskCommands(ServiceBase):
    """The task commands of :class:`~taskmgr.service.SchedulerService`."""

    def defer(
        self,
        task: Task,
        /,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        actor: str | None = None,
        **kwargs: Any,
    ) -> Execution:
        """Ask for one run of ``task`` (its key, or the function declared with
        ``@task``/``@scheduled_job``) with ``kwargs``, now, at ``run_at`` or after
        ``delay`` seconds. Returns the ``pending`` execution; it runs like any other:
        taken by one instance of the cluster, retried, timed out, recorded.

        The arguments are JSON, checked against the function's signature now. A second
        call with the same ``idempotency_key`` for the same task returns the first
        execution (whatever its status) instead of a new one, across processes.
        Under the task's ``concurrency`` (a job's ``max_instances`` with ``queue`` or
        ``skip``), the run waits ``pending`` for a free run; it is never skipped.

        :raises JobNotFoundError: no such task.
        :raises JobPausedError: the task is paused (nothing is written).
        :raises JobOrphanedError: its function is not registered in this process.
        :raises InvalidInputError: bad arguments, ``run_at``, ``delay``, key or actor
            (an :class:`InvalidKwargsError` names the path of a bad argument).
        """
        return self._defer(task, [(kwargs, idempotency_key)], run_at, delay, actor)[0]

    def defer_many(
        self,
        task: Task,
        kwargs_list: Iterable[Mapping[str, Any]],
        /,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        actor: str | None = None,
    ) -> list[Execution]:
        """Ask for one run of ``task`` per mapping of arguments, all written in one
        transaction (all of them, or none if one is refused), in order. As
        :meth:`defer` otherwise; at most 10,000 per call."""
        if isinstance(kwargs_list, Mapping | str | bytes):
            raise InvalidInputError("must be a list of argument mappings", field="kwargs_list")
        calls: list[tuple[Mapping[str, Any], str | None]] = [(k, None) for k in kwargs_list]
        if len(calls) > MAX_BATCH:
            raise InvalidInputError(
                f"at most {MAX_BATCH} runs per call, got {len(calls)}", field="kwargs_list"
            )
        for index, (kwargs, _) in enumerate(calls):
            if not isinstance(kwargs, Mapping):
                raise InvalidInputError(
                    f"must be a mapping of arguments, got {type(kwargs).__name__}",
                    field=f"kwargs_list[{index}]",
                )
        return self._defer(task, calls, run_at, delay, actor)

    def _defer(
        self,
        task: Task,
        calls: list[tuple[Mapping[str, Any], str | None]],
        run_at: datetime | None,
        delay: timedelta | float | None,
        actor: str | None,
    ) -> list[Execution]:
        validate_actor(actor)
        for _, key in calls:
            _check_idempotency_key(key)
        job = self._runnable(_task_key(task))
        now = self.clock.now()
        due = _due(now, run_at, delay)
        queued = job.overlap_policy is not OverlapPolicy.ALLOW
        news = [
            requested_run(
                job,
                ExecutionTrigger.DEFERRED,
                self._arguments(job, kwargs),
                due=due,
                now=now,
                queued=queued,
                actor=actor,
                idempotency_key=key,
            )
            for kwargs, key in calls
        ]
        if not news:
            return []
        executions = self.storage.defer_executions(news)
        self._wake()
        return executions


def _task_key(task: Task) -> str:
    if isinstance(task, str):
        return task
    definition = get_definition(task)
    if definition is None:
        raise InvalidInputError(
            f"{task!r} is neither a task key nor a function declared with @task or @scheduled_job",
            field="task",
        )
    return definition.key


def _check_idempotency_key(key: object) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or "\x00" in key:
        raise InvalidInputError(
            f"must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY} characters without NUL",
            field="idempotency_key",
        )


def _due(now: datetime, run_at: datetime | None, delay: timedelta | float | None) -> datetime:
    """When a deferred run may start: ``run_at``, ``now + delay``, or now."""
    if run_at is not None and delay is not None:
        raise InvalidInputError("give run_at= or delay=, not both", field="run_at")
    if run_at is not None:
        return max(now, ensure_aware(run_at, "run_at"))
    if delay is None:
        return now
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise InvalidInputError(
            f"must be a number of seconds or a timedelta, got {type(delay).__name__}",
            field="delay",
        )
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_DELAY.total_seconds()):
        raise InvalidInputError(
            f"must be 0 to {MAX_DELAY.days} days, got {seconds!r} seconds", field="delay"
        )
    return now + timedelta(seconds=seconds)
