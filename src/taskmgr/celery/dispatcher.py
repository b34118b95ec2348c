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
  execution no worker took over is published again under a new task id, recorded
  first (``Storage.replace_task_ids``), so the old message, should it still arrive,
  starts nothing. It is judged lost ``receive_timeout`` after it was published if its
  queue holds no message ready for a worker, at once when the broker answers again
  after being unreachable (same rule about the queue), and after ``dispatch_timeout``
  in any case (``taskmgr.celery.receipts``);
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

from taskmgr.celery.receipts import BrokerUnreachableError, QueueProbe, Sent, Unreceived
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
    :param receive_timeout: seconds after which an execution that no worker took over
        is published again, under a new task id, if nothing is waiting in its queue
        (its message was lost in the broker); each further copy waits twice as long.
        Default 10: a worker with a free process takes a message over within
        milliseconds, so 10 s is far from a false alarm, and a message lost without
        the dispatcher seeing the broker fail costs seconds, not minutes.
    :param dispatch_timeout: seconds after which an execution that no worker took
        over is published again whatever its queue holds (a busy queue could hide a
        lost message); keep it above the longest backlog you expect.
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
        receive_timeout: float = 10.0,
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
            ("receive_timeout", receive_timeout),
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
        self.receive_timeout = float(receive_timeout)
        self.dispatch_timeout = float(dispatch_timeout)
        self.publish_backoff_max = float(publish_backoff_max)
        self.handover_timeout = float(handover_timeout)
        self.batch = batch
        self.allow_pickle_app = allow_pickle_app
        self.task: Any = None
        self._context: DispatchContext | None = None
        self._lock = threading.Lock()
        #: executions published and not yet seen taken over
        self._unreceived = Unreceived(
            receive_timeout=self.receive_timeout, dispatch_timeout=self.dispatch_timeout
        )
        self._probe = QueueProbe(celery_app)  # used by the reconciler's thread only
        self._broker_down = False  # the reconciler's last look at the broker failed
        self._failures = 0
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
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
        self._wake.clear()
        self._broker_down = False
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
                self._publish_succeeded()  # first: a broker back looks at earlier messages
                self._unreceived.published(
                    item.execution.id, task_id, self._queue_of(item.job), time.monotonic()
                )
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
                logger.exception("could not put execution %s back to pending", item.execution.id)
                task_id = task_ids.get(item.execution.id)
                if task_id is not None:  # still running here: the reconciler publishes it
                    self._unreceived.unsent(
                        item.execution.id, task_id, self._queue_of(item.job), time.monotonic()
                    )

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
                # the reconciler publishes it again
                self._unreceived.unsent(
                    execution.id, task_ids[execution.id], self._queue_of(item.job), time.monotonic()
                )
                continue
            if claimed is not None:
                taken.append(claimed)
        return taken

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

    # -- reconciliation ------------------------------------------------------------------

    def _running_here(self) -> list[Execution]:
        """Executions it published, still waiting under this instance (``running``,
        not started); the others are forgotten (taken over, ended or released)."""
        context = self._require_context()
        storage = self._storage()
        read_at = time.monotonic()
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
        waiting = [e for e in found if e.started_at is None]
        self._unreceived.keep((e.id for e in waiting), published_before=read_at)
        return [e for e in waiting if e.id in self._unreceived]

    def _waiting_in_queues(self) -> dict[str | None, int | None] | None:
        """Per ``queue`` option of the messages not yet received, how many messages
        wait in that queue for a worker (None: unknown). None when the broker does not
        answer; the first answer after that has every earlier message looked at at once."""
        try:
            counts = self._probe.waiting(self._unreceived.queues())
        except BrokerUnreachableError as exc:
            if not self._broker_down:
                logger.warning(
                    "cannot reach the Celery broker to see its queues (%s); messages "
                    "published before are checked again once it answers",
                    exc,
                )
            self._broker_down = True
            return None
        if self._broker_down:
            self._broker_down = False
            self._broker_back()
        return counts

    def reconcile(self) -> int:
        """Publish again, each under a new task id, the executions whose message looks
        lost (see :mod:`taskmgr.celery.receipts`); forget those taken over. Returns how
        many were published again."""
        if not len(self._unreceived):
            return 0  # nothing published is waiting: no look at the broker or database
        waiting_in = self._waiting_in_queues()
        if waiting_in is None or self._backing_off():
            return 0  # a message published now would fail too
        now = time.monotonic()
        due = self._unreceived.due(now)
        if not due:
            return 0
        lost: list[tuple[Execution, Sent]] = []
        behind: dict[str | None, int] = {}
        for execution in self._running_here():
            sent = due.get(execution.id)
            if sent is None:
                continue
            if self._unreceived.lost(sent, waiting_in.get(sent.queue), now):
                lost.append((execution, sent))
            else:
                behind[sent.queue] = behind.get(sent.queue, 0) + 1
        for queue, count in behind.items():
            logger.debug(
                "%d execution(s) not yet taken over wait behind %s message(s) in queue %s",
                count,
                waiting_in.get(queue),
                self._probe.queue_name(queue),
            )
        return self._publish_again(lost) if lost else 0

    def _publish_again(self, lost: Sequence[tuple[Execution, Sent]]) -> int:
        """Publish each execution again under a new task id, recorded first in place of
        the old one: the old message, should it still reach a worker, starts nothing,
        and the execution starts at most once whichever message a worker gets."""
        context = self._require_context()
        storage = self._storage()
        changes = {
            execution.id: (execution.celery_task_id, str(uuid.uuid4()))
            for execution, _ in lost
            if execution.celery_task_id is not None
        }
        replaced = storage.replace_task_ids(changes, owner=context.owner)
        self._unreceived.forget(set(changes) - replaced)  # taken over meanwhile
        republished = 0
        failed = False
        for execution, sent in lost:
            if execution.id not in replaced:
                continue
            task_id = changes[execution.id][1]
            if failed:  # it holds the new id, with no message: the next round sends it
                self._unreceived.unsent(execution.id, task_id, sent.queue, time.monotonic())
                continue
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
                self._unreceived.unsent(execution.id, task_id, sent.queue, time.monotonic())
                failed = True
                continue
            self._publish_succeeded()
            self._unreceived.replaced(execution.id, task_id, sent.queue, time.monotonic())
            republished += 1
        if republished:
            logger.warning(
                "published %d execution(s) again under new task ids: no worker took them "
                "over (their messages were lost in the broker, or are held by a worker "
                "that has not started them); the messages they replace start nothing",
                republished,
            )
        return republished

    def _reconcile_loop(self) -> None:
        interval = min(1.0, self.receive_timeout / 4)
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                break
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
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._probe.close()
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
        self._unreceived.clear()

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
