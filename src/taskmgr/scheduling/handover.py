"""The hand-over of a stopping instance: it keeps firing until a newer one fires.

A reload that replaces every process at once (gunicorn's HUP starts the new workers
as it stops the old ones) would otherwise leave nobody claiming while the new
processes import the application: the slots of those seconds would be late, and
follow the misfire policy. With a ``handover_timeout``, a stopping instance goes on
claiming, for at most that long, until a *successor* is up: a live instance that
claims (not a Celery worker node) and started after it. The newest of several
instances stopping together has no successor among them, so it is the one that
bridges the gap; the older ones stop at once. It also stops as soon as nothing is
due before its deadline (an hourly job gives it nothing to bridge).

Handing over changes nothing else: the instance heartbeats, claims and records as it
did, so every promise holds as for any running instance. Only then does it stop
claiming and wait for its running executions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from taskmgr.core.clock import Clock
from taskmgr.core.models import Instance
from taskmgr.core.rules import Liveness
from taskmgr.scheduling.runtime import WORKER_MODE
from taskmgr.storage.base import Storage

__all__ = ["Handover", "successor"]

logger = logging.getLogger("taskmgr.scheduler")


def successor(
    instance_id: str, instances: Sequence[Instance], now: datetime, liveness: Liveness
) -> Instance | None:
    """A live instance of ``instances`` that claims and started after ``instance_id``
    (ties broken by id, as ``list_instances`` orders them), or None.

    An older instance is never a successor, even a live one: it may be stopping in
    the same reload, and two instances that each left the work to the other would
    leave a gap. Without its own row, any other live instance that claims will do."""
    me = next((i for i in instances if i.id == instance_id), None)
    for other in instances:
        if (
            other.id != instance_id
            and other.mode != WORKER_MODE
            and liveness.is_live(other, now)
            and (me is None or (other.started_at, other.id) > (me.started_at, me.id))
        ):
            return other
    return None


class Handover:
    """Wait, while this instance's loop keeps firing, until a successor is up, nothing
    is due before the deadline, or ``timeout`` seconds have passed (by ``clock``),
    looking every ``poll_interval``. :meth:`cancel` ends it at once."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        liveness: Liveness,
        *,
        instance_id: str,
        timeout: float,
        poll_interval: float,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.liveness = liveness
        self.instance_id = instance_id
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._cancelled = threading.Event()
        #: Sleeps between looks (tests move a fake clock there).
        self._wait = wait if wait is not None else self._cancelled.wait

    def cancel(self) -> None:
        self._cancelled.set()

    def __call__(self) -> str:
        """Hand over; returns why it ended (also logged). A storage error ends it: the
        instance then stops as it would without a hand-over."""
        if self.timeout <= 0:
            return "no hand-over"
        deadline = self.clock.now() + timedelta(seconds=self.timeout)
        try:
            reason = self._until(deadline)
        except Exception:
            logger.exception("hand-over of instance %s failed; stopping now", self.instance_id)
            return "failed"
        logger.info("instance %s stops firing: %s", self.instance_id, reason)
        return reason

    def _until(self, deadline: datetime) -> str:
        while True:
            if self._cancelled.is_set():
                return "hand-over cancelled"
            now = self.clock.now()
            found = successor(self.instance_id, self.storage.list_instances(), now, self.liveness)
            if found is not None:
                return f"instance {found.id} took over"
            if now >= deadline:
                return f"no newer instance within the hand-over timeout of {self.timeout:g}s"
            due = self.storage.next_due_at()
            if due is None or due > deadline:
                return "nothing is due before the hand-over timeout"
            self._wait(min(self.poll_interval, (deadline - now).total_seconds()))
