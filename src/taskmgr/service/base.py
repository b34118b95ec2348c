"""What the parts of the service façade share: the attributes its job commands and
queries rely on, set by :class:`~taskmgr.service.SchedulerService`'s constructor."""

from __future__ import annotations

from taskmgr.core.clock import Clock
from taskmgr.core.registry import JobRegistry
from taskmgr.core.rules import Liveness
from taskmgr.settings import TaskmgrSettings
from taskmgr.storage.base import Storage

__all__ = ["ServiceBase"]


class ServiceBase:
    storage: Storage
    registry: JobRegistry
    clock: Clock
    settings: TaskmgrSettings
    liveness: Liveness
    poll_interval: float

    @property
    def running(self) -> bool:
        """Whether the service is started."""
        raise NotImplementedError

    def open(self) -> None:
        """Connect the storage once (idempotent)."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Tell this process's scheduler loop that something changed."""
        raise NotImplementedError
