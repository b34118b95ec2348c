"""The service layer: the :class:`SchedulerService` façade and what it delegates to."""

from taskmgr.service.facade import SchedulerService

__all__ = ["SchedulerService"]
