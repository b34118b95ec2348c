"""The service layer: the :class:`SchedulerService` façade, its awaitable twin
:class:`AsyncSchedulerService`, and what they delegate to."""

from taskmgr.service.aio import AsyncSchedulerService
from taskmgr.service.facade import SchedulerService

__all__ = ["AsyncSchedulerService", "SchedulerService"]
