"""Deferring tasks: runs of a job asked for with arguments, now or later, at most once
per idempotency key. Every job can be deferred; a ``@task`` is a job that has no
schedule. Each call checks its input completely, then writes in one storage call, so
a refused call leaves nothing behind."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core import tracing as _tracing
from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.decorators import get_definition
from taskmgr.core.models import (
    Execution,
    ExecutionTrigger,
    OverlapPolicy,
)
from taskmgr.core.validation import ensure_aware, validate_actor
from taskmgr.exceptions import InvalidInputError
from taskmgr.execution.events import ExecutionEvent
from taskmgr.service.arguments import positive
from taskmgr.service.base import ServiceBase, Source, requested_run, retried_while_changed
from taskmgr.storage.base import NewExecution

__all__ = ["DEFER_OPTIONS", "MAX_IDEMPOTENCY_KEY", "TaskCommands"]

#: The longest idempotency key accepted (the column's width).
MAX_IDEMPOTENCY_KEY = 255
#: Most runs one :meth:`TaskCommands.defer_many` call writes (one transaction).
MAX_BATCH = 10_000
#: The keyword options of :meth:`TaskCommands.defer`: no task argument can have these
#: names (pass such arguments through ``defer_many``).
DEFER_OPTIONS = frozenset({"run_at", "delay", "idempotency_key", "actor", "session"})
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
        session: object | None = None,
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

        With ``session`` (your SQLAlchemy ``Session`` or ``Connection``, in its
        transaction, on taskmgr's database), the run is written in your transaction:
        it exists if and only if you commit, and the scheduler is woken after the
        commit (the outbox pattern). Nothing is committed by taskmgr.

        :raises JobNotFoundError: no such task.
        :raises JobPausedError: the task is paused (nothing is written).
        :raises JobOrphanedError: its function is not registered in this process.
        :raises InvalidInputError: bad arguments, ``run_at``, ``delay``, key, actor, or a
            ``session`` on another database (an :class:`InvalidKwargsError` names the
            path of a bad argument).
        """
        calls: list[tuple[Mapping[str, Any], str | None]] = [(kwargs, idempotency_key)]
        return self._defer(task, calls, run_at, delay, actor, session)[0]

    def defer_many(
        self,
        task: Task,
        kwargs_list: Iterable[Mapping[str, Any]],
        /,
        *,
        run_at: datetime | None = None,
        delay: timedelta | float | None = None,
        actor: str | None = None,
        session: object | None = None,
    ) -> list[Execution]:
        """Ask for one run of ``task`` per mapping of arguments, all written in one
        transaction (all of them, or none if one is refused; yours with ``session``),
        in order. As :meth:`defer` otherwise; at most 10,000 per call."""
        return self._defer(task, self._checked_calls(kwargs_list), run_at, delay, actor, session)

    def wait(self, execution_id: str, /, timeout: float = 30.0) -> Execution:
        """The execution once it has ended (any final status), for a caller that wants
        the result of a run it asked for. A failed attempt is ended: its retry is
        another execution of the same ``chain_id``.

        :raises ExecutionNotFoundError: no such execution.
        :raises TimeoutError: it has not ended within ``timeout`` seconds.
        """
        timeout = positive("timeout", timeout)
        ended = threading.Event()

        def listener(event: ExecutionEvent) -> None:
            if event.execution_id == execution_id:
                ended.set()

        deadline = time.monotonic() + timeout
        self.events.add(listener, None)
        try:
            while True:
                execution = self.get_execution(execution_id)
                if execution.status.is_final:
                    return execution
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"execution {execution_id!r} is still {execution.status.value} "
                        f"after {timeout:g}s"
                    )
                # this process's events end the wait at once; other processes' runs
                # are seen at the next look, within the poll interval
                ended.wait(min(remaining, self.poll_interval))
                ended.clear()
        finally:
            self.events.remove(listener)

    def cancel_execution(
        self,
        execution_id: str,
        /,
        *,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
    ) -> Execution:
        """Cancel a ``pending`` execution (a deferred run not started yet, a run
        waiting for its time or for a free run): it ends ``cancelled``, the reason and
        ``actor`` in its ``error_message``, and the audit log records who cancelled it.
        A run that started meanwhile is not cancelled.

        :raises ExecutionNotFoundError: no such execution.
        :raises ConflictError: it is no longer pending.
        """
        audit = self._audit(AuditAction.CANCEL, actor, source)
        self.open()
        message = "cancelled" + (f" by {actor}" if actor else "")
        return self.storage.cancel_pending(execution_id, now=audit.at, message=message, audit=audit)

    @staticmethod
    def _checked_calls(
        kwargs_list: Iterable[Mapping[str, Any]],
    ) -> list[tuple[Mapping[str, Any], str | None]]:
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
        return calls

    def _defer(
        self,
        task: Task,
        calls: list[tuple[Mapping[str, Any], str | None]],
        run_at: datetime | None,
        delay: timedelta | float | None,
        actor: str | None,
        session: object | None,
    ) -> list[Execution]:
        if _tracing.enabled():  # a span the runs keep the context of (their parent)
            with _tracing.defer_span(_task_key(task), len(calls)) as span:
                executions = self._defer_untraced(task, calls, run_at, delay, actor, session)
                _tracing.deferred(span, [e.id for e in executions])
                return executions
        return self._defer_untraced(task, calls, run_at, delay, actor, session)

    def _defer_untraced(
        self,
        task: Task,
        calls: list[tuple[Mapping[str, Any], str | None]],
        run_at: datetime | None,
        delay: timedelta | float | None,
        actor: str | None,
        session: object | None,
    ) -> list[Execution]:

        def write(fresh: bool) -> list[Execution]:
            news, versions = self._prepare(task, calls, run_at, delay, actor, fresh=fresh)
            return self.storage.defer_executions(
                news, transaction=session, on_commit=self._wake, job_versions=versions
            )

        return retried_while_changed(write)

    def _prepare(
        self,
        task: Task,
        calls: list[tuple[Mapping[str, Any], str | None]],
        run_at: datetime | None,
        delay: timedelta | float | None,
        actor: str | None,
        *,
        fresh: bool,
    ) -> tuple[list[NewExecution], dict[int, int]]:
        """The runs ``calls`` ask for, every input checked, and the version of the job
        they were prepared from: nothing is written yet.

        The job is the one last read for a defer unless ``fresh``: the storage refuses
        the write (``VersionConflictError``) if it changed since, so a defer costs one
        transaction, and a paused or changed task is never deferred from a stale copy.
        """
        validate_actor(actor)
        for _, key in calls:
            _check_idempotency_key(key)
        job = self._known_job(_task_key(task), fresh=fresh)
        now = self.clock.now()
        due = _due(now, run_at, delay)
        queued = job.overlap_policy is not OverlapPolicy.ALLOW
        runs = []
        for kwargs, key in calls:
            arguments = self._arguments(job, kwargs)
            runs.append(
                requested_run(
                    job,
                    ExecutionTrigger.DEFERRED,
                    arguments,
                    due=due,
                    now=now,
                    queued=queued,
                    actor=actor,
                    idempotency_key=key,
                    concurrency_value=self._group(job, arguments),
                )
            )
        return runs, {job.id: job.version}


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
