"""``CeleryDispatcher``: publish one JSON message per claimed execution.

The scheduler has already claimed the execution (``running``, owned by its instance)
when :meth:`CeleryDispatcher.dispatch` runs; the message carries only the execution id
and the fence a worker needs to take it over (owner and attempt). Its Celery task id is
chosen here and recorded on the execution before publishing (``Storage.assign_task_ids``,
one transaction per batch): a worker takes the execution over only for a message with
that id, so a forged message starts nothing, and a replayed one finds it started.
Nothing is lost between the claim and a worker:

* the broker refuses the message: the execution goes back to ``pending`` (due after
  a short, growing backoff) and is claimed and published again when the broker is
  back; or, with ``fallback="inline"``, it runs in this process;
* the message vanishes in the broker (a Redis restart without persistence): an
  execution not taken over within ``dispatch_timeout`` is published again (same
  execution id, so a late original is ignored by the worker);
* the scheduler stops: executions not yet taken over are put back to ``pending``
  for the next instance.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

from taskmgr.celery.worker import install
from taskmgr.core import tracing as _tracing
from taskmgr.core.models import Execution, ExecutionStatus, Job
from taskmgr.dispatch.base import DispatchContext, Dispatcher, Runtime
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.exceptions import JobNotFoundError, ServiceStateError
from taskmgr.storage.base import Claimed, ExecutionFilter, Storage

__all__ = ["INLINE_QUEUE", "CeleryDispatcher"]

logger = logging.getLogger("taskmgr.dispatch")

#: A job whose ``queue`` is this runs in the scheduler's process, never on Celery.
INLINE_QUEUE = "inline"
_PAGE = 500


class CeleryDispatcher(Dispatcher):
    """Send executions to Celery workers through the host's Celery app.

    :param celery_app: the host's ``Celery`` instance. taskmgr registers its task on
        it when the service is built (``SchedulerService(dispatcher=...)``), so a
        worker started on that app runs executions with no further code.
    :param queue: queue for jobs that name none (default: the app's default queue).
        A job's own ``queue`` wins; ``queue="inline"`` runs the job in this process.
    :param fallback: ``None`` (default): when the broker is unreachable, executions
        wait as ``pending`` and are published once it is back. ``"inline"``: they run
        in this process instead.
    :param inline: the dispatcher for inline jobs and the fallback (default
        ``InlineDispatcher()``).
    :param hard_limit_grace: seconds between a job's soft time limit (its
        ``timeout``) and the hard limit at which Celery kills the worker process.
    :param dispatch_timeout: seconds after which an execution that no worker took
        over is published again (its message was lost in the broker).
    :param publish_backoff_max: longest wait before trying an unreachable broker again.
    :param handover_timeout: how long ``shutdown(wait=True)`` waits for workers to
        take over what was published before putting the rest back to ``pending``.
    :param allow_pickle_app: the host's app accepts pickle for its own tasks on
        purpose (``accept_content``): a worker then says so in an info line instead of
        warning at its start (taskmgr's task accepts JSON only either way).
    """

    def __init__(
        self,
        celery_app: Any,
        *,
        queue: str | None = None,
        fallback: Literal["inline"] | None = None,
        inline: InlineDispatcher | None = None,
        hard_limit_grace: float = 5.0,
        dispatch_timeout: float = 300.0,
        publish_backoff_max: float = 10.0,
        handover_timeout: float = 5.0,
        batch: int = 500,
        allow_pickle_app: bool = False,
    ) -> None:
        if fallback not in (None, "inline"):
            raise ValueError(f"fallback must be None or 'inline', got {fallback!r}")
        if queue == INLINE_QUEUE:
            raise ValueError(f"queue {INLINE_QUEUE!r} is reserved for jobs that run inline")
        for name, value in (
            ("hard_limit_grace", hard_limit_grace),
            ("dispatch_timeout", dispatch_timeout),
            ("publish_backoff_max", publish_backoff_max),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.app = celery_app
        self.queue = queue
        self.fallback = fallback
        self.inline = inline if inline is not None else InlineDispatcher()
        self.hard_limit_grace = float(hard_limit_grace)
        self.dispatch_timeout = float(dispatch_timeout)
        self.publish_backoff_max = float(publish_backoff_max)
        self.handover_timeout = float(handover_timeout)
        self.batch = batch
        self.allow_pickle_app = allow_pickle_app
        self.task: Any = None
        self._context: DispatchContext | None = None
        self._lock = threading.Lock()
        #: executions published and not yet seen taken over -> when (monotonic)
        self._published: dict[str, float] = {}
        self._failures = 0
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- wiring ----------------------------------------------------------------------

    def bind(self, runtime: Runtime) -> None:
        self.task = install(self.app, runtime, allow_pickle_app=self.allow_pickle_app)

    def start(self, context: DispatchContext) -> None:
        if self.task is None:
            raise ServiceStateError(
                "CeleryDispatcher is not bound to a service: pass it to SchedulerService"
            )
        if context.storage is None:
            raise ServiceStateError("CeleryDispatcher needs the service's storage")
        self._context = context
        self.inline.start(context)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._reconcile_loop, name="taskmgr-celery-reconcile", daemon=True
        )
        self._thread.start()

    def capacity(self) -> int:
        if self._backing_off():
            # the broker is down: claim only what can run here, if anything
            return self.inline.capacity() if self.fallback == "inline" else 0
        return self.batch

    # -- publishing --------------------------------------------------------------------

    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        context = self._require_context()
        inline: list[Claimed] = []
        deferred: list[Claimed] = []  # not published
        publish: list[Claimed] = []
        for item in claimed:
            if item.job.queue == INLINE_QUEUE:
                inline.append(item)
            elif self._backing_off():
                deferred.append(item)
            else:
                publish.append(item)
        task_ids: dict[str, str] = {}
        if publish:
            try:
                task_ids = self._task_ids([item.execution for item in publish])
            except Exception:
                # nothing was published for them: they wait, or run here, like the rest
                logger.exception(
                    "could not record the task ids of %d execution(s) before publishing them",
                    len(publish),
                )
                deferred.extend(publish)
                publish = []
        failed: list[Claimed] = []  # a publish raised: its message may be in the broker
        for item in publish:
            task_id = task_ids.get(item.execution.id)
            if task_id is None:
                continue  # no longer waiting under this instance (reaped, released)
            if self._backing_off():
                deferred.append(item)
                continue
            try:
                if _tracing.enabled():
                    with _tracing.dispatch_span(_span_attributes(item), producer=True):
                        self._publish(item.execution, item.job, task_id)
                else:
                    self._publish(item.execution, item.job, task_id)
            except Exception as exc:
                self._publish_failed(exc)
                failed.append(item)
            else:
                self._publish_succeeded()
        if inline:
            self.inline.dispatch(inline)
        if not deferred and not failed:
            return
        if self.fallback == "inline":
            logger.warning(
                "running %d execution(s) inline: the broker is unreachable",
                len(deferred) + len(failed),
            )
            self.inline.dispatch([*deferred, *self._take_back(failed, task_ids)])
            return
        due = context.clock.now() + timedelta(seconds=max(0.0, self._retry_at - time.monotonic()))
        storage = self._storage()
        for item in [*deferred, *failed]:
            try:
                # clears its task id too: a message that reached the broker takes nothing over
                storage.release(item.execution.id, owner=context.owner, due_at=due)
            except Exception:
                # still running under this instance: the reconciler publishes it later
                logger.exception("could not put execution %s back to pending", item.execution.id)

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

    def _take_back(self, failed: Sequence[Claimed], task_ids: Mapping[str, str]) -> list[Claimed]:
        """Executions whose publish raised, to run here: the message may have reached
        the broker all the same, so each is first taken over by this instance (the
        worker's compare-and-set) and a late message finds it started."""
        context = self._require_context()
        storage = self._storage()
        taken: list[Claimed] = []
        for item in failed:
            execution = item.execution
            try:
                claimed = storage.take_over(
                    execution.id,
                    from_owner=context.owner,
                    to_owner=context.owner,
                    attempt=execution.attempt,
                    now=context.clock.now(),
                    celery_task_id=task_ids[execution.id],
                )
            except Exception:
                logger.exception("could not take execution %s back to run it here", execution.id)
                with self._lock:  # the reconciler publishes it again
                    self._published[execution.id] = -self.dispatch_timeout
                continue
            if claimed is not None:
                taken.append(claimed)
        return taken

    def _publish(self, execution: Execution, job: Job | None, task_id: str) -> None:
        context = self._require_context()
        options: dict[str, Any] = {}
        queue = (job.queue if job is not None else None) or self.queue
        if queue is not None:
            options["queue"] = queue
        if job is not None and job.timeout is not None:
            options["soft_time_limit"] = job.timeout
            options["time_limit"] = job.timeout + self.hard_limit_grace
        self.task.apply_async(
            kwargs={
                "execution_id": execution.id,
                "owner": context.owner,
                "attempt": execution.attempt,
            },
            # the id recorded on the execution: the only message a worker takes it for
            task_id=task_id,
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
        with self._lock:
            self._published[execution.id] = time.monotonic()

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

    # -- reconciliation ------------------------------------------------------------------

    def _running_here(self) -> list[Execution]:
        """Executions it published, still waiting under this instance (``running``,
        not started)."""
        context = self._require_context()
        storage = self._storage()
        found: list[Execution] = []
        before = None
        while True:
            page = storage.list_executions(
                ExecutionFilter(statuses=(ExecutionStatus.RUNNING,), owner=context.owner),
                limit=_PAGE,
                before=before,
            )
            found.extend(page)
            if len(page) < _PAGE:
                break
            before = (page[-1].created_at, page[-1].id)
        with self._lock:
            return [e for e in found if e.id in self._published and e.started_at is None]

    def reconcile(self) -> int:
        """Publish again what no worker took over within ``dispatch_timeout``; forget
        what was taken over. Returns how many were published again."""
        waiting = self._running_here()
        now = time.monotonic()
        with self._lock:
            ids = {e.id for e in waiting}
            self._published = {k: v for k, v in self._published.items() if k in ids}
            stale = [e for e in waiting if now - self._published[e.id] > self.dispatch_timeout]
        if not stale or self._backing_off():
            return 0
        storage = self._storage()
        # the same task id as before (a late original and this copy: the first to reach
        # a worker runs it, the other finds it started)
        task_ids = self._task_ids(stale)
        republished = 0
        for execution in stale:
            task_id = task_ids.get(execution.id)
            if task_id is None:
                continue  # taken over or ended meanwhile
            try:
                job: Job | None = storage.get_job(execution.job_key)
            except JobNotFoundError:
                job = None  # the worker cancels it
            if job is not None and job.id != execution.job_id:
                job = None
            try:
                self._publish(execution, job, task_id)
            except Exception as exc:
                self._publish_failed(exc)
                break
            self._publish_succeeded()
            republished += 1
        logger.warning(
            "published %d execution(s) again: no worker took them over within %ss "
            "(lost in the broker, or workers are behind)",
            republished,
            self.dispatch_timeout,
        )
        return republished

    def _reconcile_loop(self) -> None:
        interval = min(5.0, self.dispatch_timeout / 2)
        while not self._stop.wait(interval):
            try:
                self.reconcile()
            except Exception:
                logger.exception("checking published executions failed; retrying")

    # -- lifecycle -----------------------------------------------------------------

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop publishing. Inline runs end as with :class:`InlineDispatcher`; published
        executions that no worker took over within ``handover_timeout`` (at once
        without ``wait``) go back to ``pending``, for the next instance to publish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.inline.shutdown(wait=wait)
        if self._context is None:
            return
        deadline = time.monotonic() + (self.handover_timeout if wait else 0.0)
        while True:
            try:
                waiting = self._running_here()
            except Exception:
                logger.exception("could not check executions still waiting for a worker")
                return
            if not waiting:
                break
            if time.monotonic() >= deadline:
                self._release_all(waiting)
                break
            time.sleep(0.1)
        with self._lock:
            self._published.clear()

    def _release_all(self, waiting: Sequence[Execution]) -> None:
        context = self._require_context()
        storage = self._storage()
        released = 0
        for execution in waiting:
            try:
                released += storage.release(
                    execution.id, owner=context.owner, due_at=context.clock.now()
                )
            except Exception:
                logger.exception("could not put execution %s back to pending", execution.id)
        logger.info(
            "%d published execution(s) not yet taken over by a worker were put back to "
            "pending for another instance",
            released,
        )

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
