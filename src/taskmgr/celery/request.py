"""Celery's side of taskmgr's task in the worker's main process: the message handler
that refuses anything but JSON before decoding, and the request that notices pool
processes ending without finishing their run (killed, at the hard time limit, or
with anything that escaped the recording of its outcome).

Both are named on the task (``Strategy=``, ``Request=``) by
:func:`taskmgr.celery.worker.install`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Protocol

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.worker.request import Request

from taskmgr.celery.states import ExecutionFailedError
from taskmgr.core.models import ExecutionStatus, Job
from taskmgr.dispatch.base import Runtime
from taskmgr.exceptions import JobNotFoundError
from taskmgr.execution.run import ExecutionRun
from taskmgr.storage.base import Claimed, Outcome


class WorkerSide(Protocol):
    """What a request needs of the worker's taskmgr runtime (``WorkerRuntime``)."""

    @property
    def instance_id(self) -> str | None: ...

    @property
    def runtime(self) -> Runtime: ...

    def record(self, outcome: Outcome) -> bool: ...


__all__ = [
    "JSON",
    "RUNTIME",
    "TASK_NAME",
    "ExecutionRequest",
    "child_ended",
    "json_only_strategy",
    "parse_fence",
]

logger = logging.getLogger("taskmgr.celery")

#: The name of taskmgr's task on the host's app (as ``taskmgr.celery.TASK_NAME``).
TASK_NAME = "taskmgr.execute"
JSON = "application/json"
#: The attribute of the host's Celery app that holds its ``WorkerRuntime``.
RUNTIME = "_taskmgr_runtime"
#: The longest execution id a message may name.
MAX_ID = 64


def parse_fence(args: Any, kwargs: Any) -> tuple[str, str, int] | None:
    """The fence a message carries, or None when it is not a message taskmgr sent."""
    if args or not isinstance(kwargs, dict) or set(kwargs) != {"execution_id", "owner", "attempt"}:
        return None
    execution_id, owner, attempt = kwargs["execution_id"], kwargs["owner"], kwargs["attempt"]
    if not (
        isinstance(execution_id, str)
        and 0 < len(execution_id) <= MAX_ID
        and isinstance(owner, str)
        and 0 < len(owner) <= 255
        and isinstance(attempt, int)
        and not isinstance(attempt, bool)
        and attempt >= 1
    ):
        return None
    return execution_id, owner, attempt


def json_only_strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Any:
    """Celery's message handler for taskmgr's task, refusing anything but JSON before
    the body is decoded: even where the host's ``accept_content`` allows pickle for its
    own tasks, a message to taskmgr's task is never unpickled."""
    from celery.worker.strategy import default
    from kombu.exceptions import ContentDisallowed

    handle = default(task, app, consumer, **options)

    def task_message_handler(message: Any, body: Any, *args: Any, **kwargs: Any) -> Any:
        if message.content_type != JSON:
            logger.error(
                "refused a %s message with content type %r: taskmgr accepts JSON only",
                TASK_NAME,
                message.content_type,
            )
            # the consumer logs it and discards the message
            raise ContentDisallowed(f"taskmgr accepts JSON only, not {message.content_type!r}")
        return handle(message, body, *args, **kwargs)

    return task_message_handler


class ExecutionRequest(Request):  # type: ignore[misc]
    """Celery's request for taskmgr's task, in the worker's main process: notices pool
    processes that end without finishing (killed, or at their hard time limit)."""

    def _runtime(self) -> WorkerSide | None:
        return getattr(self._app, RUNTIME, None)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        runtime = self._runtime()
        if not soft and runtime is not None:
            child_ended(
                runtime,
                self.id,
                self.kwargs,
                ExecutionStatus.TIMEOUT,
                f"killed at its hard time limit of {timeout}s",
            )

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        result = super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )
        exc = getattr(exc_info, "exception", None)
        exc = getattr(exc, "exc", exc)  # ExceptionWithTraceback
        runtime = self._runtime()
        if runtime is None:
            return result
        ended = _ended_by(exc)
        if ended is not None:
            child_ended(runtime, self.id, self.kwargs, *ended)
        return result


def _ended_by(exc: object) -> tuple[ExecutionStatus, str] | None:
    """What a task that ended with ``exc`` leaves its execution as, if its run could
    not record that itself; None when it did (the task fails *after* recording, with
    :class:`ExecutionFailedError`). Anything else escaped the run's own recording:
    the pool process died, the hard limit killed it, or the soft limit (or another
    error) struck while the outcome was being written; the execution must not stay
    ``running`` under a worker that is alive."""
    if isinstance(exc, ExecutionFailedError):
        return None
    if isinstance(exc, TimeLimitExceeded):
        return ExecutionStatus.TIMEOUT, f"killed at its hard time limit: {exc}"
    if isinstance(exc, SoftTimeLimitExceeded):
        return ExecutionStatus.TIMEOUT, "its soft time limit struck before its end was recorded"
    name = type(exc).__name__
    if isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt) or name == "Terminated":
        return ExecutionStatus.LOST, f"the worker process running it ended: {name}: {exc}"
    # how the job itself ended is unknown: lost, as for a dead process (its retries apply)
    return ExecutionStatus.LOST, f"its task ended with {name} before its end was recorded: {exc}"


def child_ended(
    worker: WorkerSide, task_id: str, kwargs: Any, status: ExecutionStatus, reason: str
) -> None:
    """The pool process running ``task_id`` died or hit its hard time limit. If it
    had taken the execution over, nobody else will finish it: record it now."""
    fence = parse_fence((), kwargs)
    if fence is None or worker.instance_id is None:
        return
    storage = worker.runtime.storage
    try:
        execution = storage.get_execution(fence[0])
        if not (
            execution.status is ExecutionStatus.RUNNING
            and execution.owner == worker.instance_id
            and execution.celery_task_id == task_id
        ):
            return  # never taken over by this delivery: the message is redelivered
        job: Job | None
        try:
            job = storage.get_job(execution.job_key)
        except JobNotFoundError:
            job = None
        if job is None or job.id != execution.job_id:
            outcome = Outcome(
                execution_id=execution.id,
                owner=worker.instance_id,
                status=status,
                started_at=execution.started_at,
                completed_at=worker.runtime.clock.now(),
                error_message=reason,
            )
        else:
            run = ExecutionRun(Claimed(execution, job), worker.instance_id, worker.runtime.clock)
            if status is ExecutionStatus.TIMEOUT:
                ended = run.timed_out()
                ended = replace(ended, error_message=f"{ended.error_message}; {reason}")
            else:
                ended = run.lost(reason)
            duration = None
            if execution.started_at is not None:
                elapsed = ended.completed_at - execution.started_at
                duration = max(0, int(elapsed.total_seconds() * 1000))
            outcome = replace(ended, started_at=execution.started_at, duration_ms=duration)
        worker.record(outcome)
    except Exception:
        logger.exception("could not record the end of execution %s", fence[0])
