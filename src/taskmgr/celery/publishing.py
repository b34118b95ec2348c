"""Publishing one message per execution, and backing off while the broker refuses.

:class:`Publishing` is the part of :class:`~taskmgr.celery.CeleryDispatcher` that
talks to the broker: the task id recorded on an execution before its message is
published (the nonce a worker's take-over checks), the message itself (taskmgr's task,
JSON, the job's queue and time limits), and the backoff after a publish fails.

A claim's messages go out through one producer, in one batch where the transport
batches (kombu's ``Producer.batch()``: on Redis, one pipeline, one round trip for the
lot, instead of one ``LPUSH`` round trip each); a batch that fails counts as a failed
publish for each of its messages (they may have reached the broker, as with any
publish that raised).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from taskmgr.celery.receipts import Unreceived
from taskmgr.core import tracing as _tracing
from taskmgr.core.models import Execution, Job
from taskmgr.dispatch.base import DispatchContext
from taskmgr.exceptions import ServiceStateError
from taskmgr.storage.base import Claimed, Storage

__all__ = ["Prepared", "Publishing"]

logger = logging.getLogger("taskmgr.dispatch")

#: How many broker commands a batch holds before it is sent: more than a claim's
#: messages ever need (a claim is at most a few thousand executions).
_BATCH_COMMANDS = 1_000_000


class Prepared:
    """Task ids recorded on executions claimed ahead of their slot (``prepare``), by
    execution id, until their dispatch takes them: the dispatch at the slot then
    publishes without a transaction of its own. An id not taken within ``keep``
    seconds is forgotten (its run ended missed, or was released or given up)."""

    def __init__(self, keep: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep = keep
        self._clock = clock
        self._ids: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def add(self, task_ids: Mapping[str, str]) -> None:
        now = self._clock()
        with self._lock:
            stale = [key for key, (_, at) in self._ids.items() if now - at > self.keep]
            for key in stale:
                del self._ids[key]
            self._ids.update((key, (task_id, now)) for key, task_id in task_ids.items())

    def take(self, execution_ids: Sequence[str]) -> dict[str, str]:
        """The recorded ids of those of ``execution_ids`` that have one (forgotten here)."""
        with self._lock:
            taken = {key: self._ids.pop(key, None) for key in execution_ids}
        return {key: found[0] for key, found in taken.items() if found is not None}


class Publishing:
    """Publishes executions' messages; the state it uses is set by
    :class:`~taskmgr.celery.CeleryDispatcher`'s constructor."""

    queue: str | None
    hard_limit_grace: float
    publish_backoff_max: float
    #: The host's Celery app.
    app: Any
    #: taskmgr's task on the host's app (set when the dispatcher is bound).
    task: Any
    _context: DispatchContext | None
    _lock: threading.Lock
    _unreceived: Unreceived
    _prepared: Prepared
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

    def _publish_claimed(
        self, publish: Sequence[Claimed], task_ids: Mapping[str, str], deferred: list[Claimed]
    ) -> list[Claimed]:
        """Publish the message of each claimed execution that holds its task id, in one
        batch; returns those whose publish failed (their message may be in the broker).
        Those left unpublished because the broker failed meanwhile go to ``deferred``."""
        failed: list[Claimed] = []
        sent: list[tuple[Claimed, str]] = []
        try:
            with self._batch() as producer:
                for item in publish:
                    task_id = task_ids.get(item.execution.id)
                    if task_id is None:
                        continue  # no longer waiting under this instance (reaped, released)
                    if self._backing_off():
                        deferred.append(item)
                        continue
                    try:
                        self._publish_one(item, task_id, producer)
                    except Exception as exc:
                        self._publish_failed(exc)
                        failed.append(item)
                    else:
                        sent.append((item, task_id))
        except Exception as exc:
            # the batch failed as a whole (sending it, or getting a producer): none of
            # its messages is sure to be in the broker, or not to be
            self._publish_failed(exc)
            settled = {id(item) for item in (*failed, *deferred)}
            failed.extend(
                item
                for item in publish
                if id(item) not in settled and item.execution.id in task_ids
            )
            return failed
        if sent:
            if not failed:
                self._publish_succeeded()  # first: a broker back looks at earlier messages
            now = time.monotonic()
            for item, task_id in sent:
                self._unreceived.published(
                    item.execution.id, task_id, self._queue_of(item.job), now
                )
        return failed

    @contextlib.contextmanager
    def _batch(self) -> Iterator[Any]:
        """A producer of the app's pool, publishing in one batch where the transport
        can (sent when the block ends; kombu before 5.7 publishes each at once)."""
        with self.app.producer_or_acquire() as producer:
            batch = getattr(producer, "batch", None)
            if batch is None:
                yield producer
                return
            # room for every message: the batch is sent once, at the end
            with batch(max_size=_BATCH_COMMANDS):
                yield producer

    def _publish_one(self, item: Claimed, task_id: str, producer: Any) -> None:
        if _tracing.enabled():
            with _tracing.dispatch_span(
                _span_attributes(item),
                producer=True,
                stored=item.execution.trace_context,  # the caller that asked for it
            ):
                self._publish(item.execution, item.job, task_id, producer)
        else:
            self._publish(item.execution, item.job, task_id, producer)

    def _publish(
        self, execution: Execution, job: Job | None, task_id: str, producer: Any = None
    ) -> None:
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
            producer=producer,
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


def _span_attributes(item: Claimed) -> dict[str, Any]:
    execution = item.execution
    return _tracing.execution_attributes(
        execution_id=execution.id,
        job_key=execution.job_key,
        scheduled_for=execution.scheduled_for,
        attempt=execution.attempt,
        dispatch="celery",
    )
