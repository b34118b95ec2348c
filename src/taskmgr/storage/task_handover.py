"""The hand-over half of the storage port: how a claimed execution reaches the process
that runs it (a Celery worker) exactly once, or goes back to be claimed again (see
:class:`~taskmgr.storage.base.Storage`, which extends :class:`TaskHandOver`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from taskmgr.storage.records import Claimed

__all__ = ["TakeOver", "TaskHandOver"]


@dataclass(frozen=True, slots=True)
class TakeOver:
    """One message's request to take its execution over (the arguments of
    :meth:`TaskHandOver.take_over` that differ from one message to the next)."""

    execution_id: str
    #: The instance that claimed it and published the message.
    from_owner: str
    attempt: int
    #: The message's task id: the nonce recorded on the execution before publishing.
    celery_task_id: str


class TaskHandOver(ABC):
    """Task ids recorded before publishing, the take-over by a worker, the release."""

    @abstractmethod
    def assign_task_ids(self, task_ids: Mapping[str, str], *, owner: str) -> set[str]:
        """Record, per execution id, the id of the message about to hand it to a worker
        (its Celery task id), in one transaction, before that message is published: the
        per-dispatch nonce :meth:`take_over` checks, so that only a message carrying it
        can start the execution.

        Applies to an execution only while it is ``running``, owned by ``owner``, not
        started (``started_at`` null: nothing took it over) and holds no task id or
        this same one (a message published again for it gets a new id through
        :meth:`replace_task_ids`, never here). Returns the ids of the executions that
        now hold the id given for them; the others are left as they are (taken over,
        ended, released, or holding another message's id).

        :raises InvalidInputError: a task id is not a string of 1-255 characters.
        """

    @abstractmethod
    def replace_task_ids(self, task_ids: Mapping[str, tuple[str, str]], *, owner: str) -> set[str]:
        """Replace, per execution id, the task id recorded for it by ``(old, new)``,
        in one transaction, before a message carrying ``new`` is published for it
        again (its first message looks lost): from then on only the new message can
        take it over, and the old one, should it still reach a worker, starts nothing.

        A compare-and-set per execution: applies only while it is ``running``, owned
        by ``owner``, not started (``started_at`` null) and holds ``old``; one that
        holds ``new`` already counts as replaced (a repeated call). Returns the ids of
        the executions that now hold their ``new`` id; the others are left as they are
        (taken over meanwhile, ended, released, or holding another id).

        :raises InvalidInputError: an old or new task id is not a string of 1-255
            characters.
        """

    @abstractmethod
    def take_over(
        self,
        execution_id: str,
        *,
        from_owner: str,
        to_owner: str,
        attempt: int,
        now: datetime,
        celery_task_id: str,
    ) -> Claimed | None:
        """Hand a ``running`` execution from the instance that claimed it to the one
        that runs it (a Celery worker), in one compare-and-set, on behalf of one
        message.

        Applies only to an execution that has **not started** and that **this message
        was published for**: it is ``running``, owned by ``from_owner`` (the instance
        that dispatched it, never a worker that took it over: taking over sets
        ``started_at``), at ``attempt``, ``started_at`` is null, and its stored task id
        is set and equals ``celery_task_id`` (recorded by :meth:`assign_task_ids`
        before the message was published). And only while ``to_owner`` has no
        instance row or a ``running`` one (a worker declared dead takes nothing over).
        It then sets ``owner = to_owner`` and ``started_at = now``, and returns the
        execution with its job.

        Otherwise nothing changes and None is returned: the execution already started
        (a message redelivered or duplicated while it runs, or after it ended), was
        taken over by another delivery, was released or runs in its dispatcher's own
        process (no task id), or the message is not the one published for it (a forged
        or stale message: another task id, owner or attempt). So a message, forged or
        replayed, never starts an execution a second time.

        If the execution's job was deleted meanwhile, nothing could run it: it becomes
        ``cancelled`` (``completed_at = now``) and None is returned.
        """

    def take_over_many(
        self, requests: Sequence[TakeOver], *, to_owner: str, now: datetime
    ) -> list[Claimed | None]:
        """:meth:`take_over` for each request, in order, all for ``to_owner`` at
        ``now``: what messages arriving together at one worker process need, in as few
        round trips as the backend can (one statement on PostgreSQL). Returns, per
        request, what :meth:`take_over` would have returned for it called in turn: two
        requests for one execution start it at most once (the first that matches).

        Each request is its own compare-and-set; how they are grouped into transactions
        is the backend's choice (this default calls :meth:`take_over` for each). A call
        that raises may have applied some of them: a request applied before is seen
        started by a repeated call, which returns None for it, as for any redelivered
        message.
        """
        return [
            self.take_over(
                request.execution_id,
                from_owner=request.from_owner,
                to_owner=to_owner,
                attempt=request.attempt,
                now=now,
                celery_task_id=request.celery_task_id,
            )
            for request in requests
        ]

    @abstractmethod
    def release(self, execution_id: str, *, owner: str, due_at: datetime) -> bool:
        """Put a ``running`` execution owned by ``owner`` back to ``pending`` (owner,
        ``dispatched_at``, ``started_at`` and the task id cleared, ``due_at`` set), so
        that any instance claims it again when due: for work claimed but never handed
        over (the broker was unreachable, or the instance is stopping). A message
        published for it before can then take nothing over. Returns whether it
        applied; an execution taken over, ended or owned by someone else is left as it
        is."""
