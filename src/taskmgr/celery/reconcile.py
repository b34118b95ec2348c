"""Executions published and not taken over: publish again what looks lost, and hand
back what is still waiting when the scheduler stops.

:class:`Reconciling` is the part of :class:`~taskmgr.celery.CeleryDispatcher` that runs
on its reconciler's thread (and at shutdown): it reads the executions still waiting
under this instance, asks the broker how many messages wait in their queues
(:class:`~taskmgr.celery.receipts.QueueProbe`), and publishes each execution whose
message looks lost (:class:`~taskmgr.celery.receipts.Unreceived` decides) again under a
new task id, recorded first, so the old message starts nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence

from taskmgr.celery.publishing import Publishing
from taskmgr.celery.receipts import BrokerUnreachableError, QueueProbe, Sent
from taskmgr.core.models import Execution, ExecutionStatus, Job
from taskmgr.exceptions import JobNotFoundError
from taskmgr.storage.base import ExecutionFilter

__all__ = ["Reconciling"]

logger = logging.getLogger("taskmgr.dispatch")

_PAGE = 500


class Reconciling(Publishing):
    """Looks again at what was published; the state it uses is set by
    :class:`~taskmgr.celery.CeleryDispatcher`'s constructor."""

    receive_timeout: float
    _probe: QueueProbe
    _broker_down: bool
    _stop: threading.Event

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

    def _release_all(self, waiting: Sequence[Execution]) -> None:
        """Put executions still waiting for a worker back to ``pending`` (a stopping
        scheduler), for the next instance to publish."""
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
