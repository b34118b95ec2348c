"""Publishing one message per execution, and backing off while the broker refuses.

:class:`Publishing` is the part of :class:`~taskmgr.celery.CeleryDispatcher` that
talks to the broker: the task id recorded on an execution before its message is
published (the nonce a worker's take-over checks), the message itself (taskmgr's task,
JSON, the job's queue and time limits), and the backoff after a publish fails.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from taskmgr.celery.receipts import Unreceived
from taskmgr.core import tracing as _tracing
from taskmgr.core.models import Execution, Job
from taskmgr.dispatch.base import DispatchContext
from taskmgr.exceptions import ServiceStateError
from taskmgr.storage.base import Storage

__all__ = ["Publishing"]

logger = logging.getLogger("taskmgr.dispatch")


class Publishing:
    """Publishes executions' messages; the state it uses is set by
    :class:`~taskmgr.celery.CeleryDispatcher`'s constructor."""

    queue: str | None
    hard_limit_grace: float
    publish_backoff_max: float
    #: taskmgr's task on the host's app (set when the dispatcher is bound).
    task: Any
    _context: DispatchContext | None
    _lock: threading.Lock
    _unreceived: Unreceived
    _failures: int
    _retry_at: float
    _wake: threading.Event

    def _task_ids(self, executions: Sequence[Execution]) -> dict[str, str]:
        """The task id of each execution's message, recorded on it before publishing
        (the nonce a worker's take-over checks). An execution published before keeps
        its id. Those no longer waiting under this instance are left out."""
        context = self._require_context()
        known = {e.id: e.celery_task_id for e in executions if e.celery_task_id is not None}
        # a fresh random id per dispatch: a forged message cannot guess it
        wanted = {e.id: known.get(e.id) or str(uuid.uuid4()) for e in executions}
        assigned = self._storage().assign_task_ids(wanted, owner=context.owner)
        return {execution_id: wanted[execution_id] for execution_id in assigned}

    def _queue_of(self, job: Job | None) -> str | None:
        """The ``queue`` option of the job's messages (None: the app's routing)."""
        return (job.queue if job is not None else None) or self.queue

    def _publish(self, execution: Execution, job: Job | None, task_id: str) -> None:
        context = self._require_context()
        options: dict[str, Any] = {}
        queue = self._queue_of(job)
        if queue is not None:
            options["queue"] = queue
        if job is not None and job.timeout is not None:
            options["soft_time_limit"] = job.timeout
            options["time_limit"] = job.timeout + self.hard_limit_grace
        headers = _tracing.message_headers()  # the dispatch span's context, if any
        if headers:
            options["headers"] = headers
        self.task.apply_async(
            kwargs={
                "execution_id": execution.id,
                "owner": context.owner,
                "attempt": execution.attempt,
            },
            # the id recorded on the execution: the only message a worker takes it for
            task_id=task_id,
            # the name Flower, `celery events` and the worker's log show: the job's key
            shadow=execution.job_key,
            serializer="json",
            # one quick reconnect, then our own backoff: never block the scheduler
            retry=True,
            retry_policy={
                "max_retries": 1,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.2,
            },
            **options,
        )

    def _backing_off(self) -> bool:
        with self._lock:
            return self._failures > 0 and time.monotonic() < self._retry_at

    def _publish_failed(self, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            delay = min(self.publish_backoff_max, 0.5 * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + delay
            failures = self._failures
        logger.error(
            "cannot publish to the Celery broker (%s: %s); executions wait as pending, "
            "next try in %.1fs (failure %d in a row)",
            type(exc).__name__,
            exc,
            delay,
            failures,
        )

    def _publish_succeeded(self) -> None:
        with self._lock:
            failures, self._failures = self._failures, 0
        if failures:
            logger.warning("the Celery broker is reachable again after %d failure(s)", failures)
            self._broker_back()

    def _broker_back(self) -> None:
        """The broker answers after failing: what was published before may have died
        with it (a restart without persistence), so the reconciler looks at it now."""
        suspects = self._unreceived.broker_back(time.monotonic())
        if suspects:
            logger.info(
                "the Celery broker answers again: checking at once whether workers "
                "received the %d message(s) published before",
                suspects,
            )
            self._wake.set()

    def _require_context(self) -> DispatchContext:
        if self._context is None:
            raise ServiceStateError("CeleryDispatcher.start() was not called")
        return self._context

    def _storage(self) -> Storage:
        storage = self._require_context().storage
        assert storage is not None  # checked in start()
        return storage
