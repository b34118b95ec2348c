"""``CeleryDispatcher``: publish one JSON message per claimed execution.

The scheduler has already claimed the execution (``running``, owned by its instance)
when :meth:`CeleryDispatcher.dispatch` runs; the message carries only the execution id
and the fence a worker needs to take it over (owner and attempt). Its Celery task id is
chosen here and recorded on the execution before publishing (``Storage.assign_task_ids``,
one transaction per batch; for executions claimed ahead of their slot, when they are
claimed, by :meth:`CeleryDispatcher.prepare`, so that the publish at the slot waits for
no commit): a worker takes the execution over only for a message with that id, so a
forged message starts nothing, and a replayed one finds it started.
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

The publishing itself is :mod:`taskmgr.celery.publishing`; looking again at what was
published and not taken over is :mod:`taskmgr.celery.reconcile`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

from taskmgr.celery.publishing import Prepared
from taskmgr.celery.receipts import QueueProbe, Unreceived
from taskmgr.celery.reconcile import Reconciling
from taskmgr.celery.worker import install
from taskmgr.dispatch.base import DispatchContext, Dispatcher, Runtime
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.dispatch.routing import INLINE, INLINE_QUEUE
from taskmgr.exceptions import ServiceStateError
from taskmgr.storage.base import Claimed

__all__ = ["INLINE_QUEUE", "CeleryDispatcher"]

logger = logging.getLogger("taskmgr.dispatch")


class CeleryDispatcher(Reconciling, Dispatcher):
    """Send executions to Celery workers through the host's Celery app.

    :param celery_app: the host's ``Celery`` instance. taskmgr registers its task on
        it when the service is built (``SchedulerService(dispatcher=...)``), so a
        worker started on that app runs executions with no further code.
    :param queue: queue for jobs that name none (default: the app's default queue).
        A job's own ``queue`` wins; ``queue="inline"`` runs the job in this process
        (the older form of ``dispatch="inline"``).
    :param fallback: ``None`` (default): when the broker is unreachable, executions
        wait as ``pending`` and are published once it is back. ``"inline"``: they run
        in this process instead.
    :param inline: the dispatcher for inline jobs and the fallback (default
        ``InlineDispatcher()``): the service's ``inline`` dispatcher, unless the
        service was given one of that name.
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
        #: task ids recorded ahead of the slot, not yet published
        self._prepared = Prepared()
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

    def members(self) -> Mapping[str, Dispatcher]:
        # its own pool (inline jobs, the fallback) is the service's ``inline`` one
        return {INLINE: self.inline}

    def capacity(self) -> int:
        if self._backing_off():
            # the broker is down: claim only what can run here, if anything
            return self.inline.capacity() if self.fallback == "inline" else 0
        return self.batch

    # -- publishing --------------------------------------------------------------------

    def prepare(self, claimed: Sequence[Claimed]) -> None:
        """Record the task ids of the messages of executions claimed ahead of their
        slot now, in one transaction, so that their dispatch at the slot only
        publishes."""
        publish = [item for item in claimed if not _runs_inline(item)]
        if publish and not self._backing_off():
            self._prepared.add(self._task_ids([item.execution for item in publish]))

    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        context = self._require_context()
        inline: list[Claimed] = []
        deferred: list[Claimed] = []  # not published
        publish: list[Claimed] = []
        for item in claimed:
            if _runs_inline(item):
                inline.append(item)
            elif self._backing_off():
                deferred.append(item)
            else:
                publish.append(item)
        # the ids recorded ahead of the slot (prepare); the others' are recorded now
        task_ids = self._prepared.take([item.execution.id for item in claimed])
        if publish:
            unprepared = [item for item in publish if item.execution.id not in task_ids]
            try:
                if unprepared:
                    task_ids.update(self._task_ids([item.execution for item in unprepared]))
            except Exception:
                # nothing was published for them: they wait, or run here, like the rest
                logger.exception(
                    "could not record the task ids of %d execution(s) before publishing them",
                    len(unprepared),
                )
                deferred.extend(unprepared)
                publish = [item for item in publish if item.execution.id in task_ids]
        # failed: a publish raised, its message may be in the broker
        failed = self._publish_claimed(publish, task_ids, deferred) if publish else []
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


def _runs_inline(item: Claimed) -> bool:
    """Whether the job runs in this process (the reserved queue, or its ``dispatch``)."""
    return item.job.queue == INLINE_QUEUE or item.job.dispatch == INLINE
