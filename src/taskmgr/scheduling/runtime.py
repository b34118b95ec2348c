"""This process as an instance of the cluster: its id, its row in the instances
table, and the maintenance that keeps the row alive (heartbeats, the reaper).

A scheduling service and a Celery worker node are both instances; they differ only
in ``mode`` (and in whether they claim). Peers judge an instance by its row alone:
:class:`~taskmgr.core.rules.Liveness` says when it is presumed dead.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime

from taskmgr.core.clock import Clock, DatabaseClock
from taskmgr.core.models import Instance, InstanceStatus
from taskmgr.core.rules import Liveness
from taskmgr.scheduling.maintenance import Maintenance
from taskmgr.storage.base import Claimed, Storage

__all__ = ["WORKER_MODE", "InstanceRuntime", "new_instance_id"]

logger = logging.getLogger("taskmgr.maintenance")

#: The mode of a Celery worker node's instance (its id ends in ``:worker``).
WORKER_MODE = "worker"


def new_instance_id(mode: str) -> str:
    """``host:pid:random``, with ``:worker`` appended for a worker node, so an
    operator reading the instances table sees where each one runs."""
    instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return f"{instance_id}:worker" if mode == WORKER_MODE else instance_id


class InstanceRuntime:
    """One instance's registration and upkeep.

    :meth:`register` writes the row (again, after peers declared it dead);
    :meth:`start` registers and, with ``maintain``, starts heartbeats and the reaper;
    :meth:`stop` stops them and marks the row ``stopped``.
    """

    def __init__(self, storage: Storage, clock: Clock, liveness: Liveness, *, mode: str) -> None:
        self.storage = storage
        self.clock = clock
        self.liveness = liveness
        self.mode = mode
        self.instance_id = new_instance_id(mode)
        self._maintenance: Maintenance | None = None

    def register(self) -> None:
        now = self.clock.now()
        self.storage.register_instance(
            Instance(
                id=self.instance_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                mode=self.mode,
                status=InstanceStatus.RUNNING,
                started_at=now,
                last_heartbeat=now,
            )
        )

    def start(
        self,
        *,
        maintain: bool = True,
        on_lost: Callable[[list[Claimed], datetime], None] | None = None,
    ) -> None:
        """Register; with ``maintain``, heartbeat and reap in the background
        (``on_lost`` is told about the executions this instance's reaper marks lost)."""
        self.register()
        if not maintain:
            return
        clock = self.clock
        self._maintenance = Maintenance(
            self.storage,
            clock,
            liveness=self.liveness,
            instance_id=self.instance_id,
            register=self.register,
            calibrate=clock.calibrate if isinstance(clock, DatabaseClock) else None,
            on_lost=on_lost,
        )
        self._maintenance.start()

    @property
    def may_claim(self) -> Callable[[], bool] | None:
        """Whether this instance may claim right now (its peers surely see it alive),
        or None when nothing maintains it (time driven by hand)."""
        return self._maintenance.alive if self._maintenance is not None else None

    @property
    def vitals(self) -> Maintenance | None:
        """What proves this instance alive on demand (:meth:`Maintenance.confirm`), or
        None when nothing maintains it."""
        return self._maintenance

    def stop(self) -> None:
        """Stop the upkeep and mark the row ``stopped`` (a failure is logged: peers then
        see it stop heartbeating and reap it)."""
        if self._maintenance is not None:
            self._maintenance.stop()
            self._maintenance = None
        try:
            self.storage.set_instance_status(self.instance_id, InstanceStatus.STOPPED)
        except Exception:
            logger.exception("could not mark instance %s stopped", self.instance_id)
