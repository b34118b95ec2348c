"""The instance half of the storage port: the rows of the running services and
workers, their heartbeats, and the reaper that ends the runs of dead ones (see
:class:`~taskmgr.storage.base.Storage`, which extends :class:`InstanceRegistry`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime

from taskmgr.core.models import Instance, InstanceStatus
from taskmgr.storage.records import Claimed, NewExecution

__all__ = ["InstanceRegistry"]


class InstanceRegistry(ABC):
    """Instance rows, heartbeats, the reaper."""

    @abstractmethod
    def register_instance(self, instance: Instance) -> None:
        """Insert (or replace) the instance row."""

    @abstractmethod
    def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        """Set ``last_heartbeat``. Returns False when the instance is no longer
        ``running`` (it was declared dead or stopped), in which case nothing changes."""

    @abstractmethod
    def set_instance_status(self, instance_id: str, status: InstanceStatus) -> None:
        """Set the instance's status (e.g. ``stopped`` on clean shutdown)."""

    @abstractmethod
    def list_instances(self) -> list[Instance]:
        """All instance rows, newest ``started_at`` first (equal ones: the greater id
        first)."""

    @abstractmethod
    def reap(
        self,
        *,
        heartbeat_before: datetime,
        now: datetime,
        retry: Callable[[Claimed], NewExecution | None] | None = None,
    ) -> list[Claimed] | None:
        """Mark ``running`` instances whose last heartbeat is older than the cutoff as
        ``dead``, and every ``running`` execution owned by an instance that is not
        ``running`` (dead or stopped) as ``lost`` (``completed_at = now``), in one
        transaction. Returns the executions it marked whose job still exists, with
        their jobs, by execution id.

        ``retry`` gives the next attempt of a lost execution (of a job that still
        exists), or None: it is inserted in the same transaction, unless its id or
        slot is already stored, so a reaper that dies after its commit loses no retry.

        At most one reaper runs at a time across all processes: when another holds
        the reaper's lock, this returns None at once and changes nothing."""

    @abstractmethod
    def delete_instances(self, *, last_heartbeat_before: datetime) -> int:
        """Delete the rows of instances that are not ``running`` and whose last
        heartbeat is older than the cutoff, unless an execution is still ``running``
        under them. Returns how many were deleted."""
