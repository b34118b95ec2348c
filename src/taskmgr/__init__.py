"""taskmgr: durable scheduled jobs, fired once per slot across many processes.

Declare jobs with :func:`scheduled_job`, hand them to a :class:`SchedulerService`,
and ``start()`` it. The database decides who fires each slot; every slot ends as an
execution row you can query.
"""

import logging

from taskmgr.core.context import ExecutionContext, current_execution
from taskmgr.core.decorators import scheduled_job, task
from taskmgr.core.models import (
    Execution,
    ExecutionPage,
    ExecutionStatus,
    ExecutionTrigger,
    Health,
    Instance,
    InstanceStatus,
    Job,
    JobDefinition,
    JobQueue,
    JobSource,
    JobState,
    OverlapPolicy,
    RetryBackoff,
)
from taskmgr.core.registry import JobRegistry
from taskmgr.core.triggers import Cron, Date, Interval, Manual
from taskmgr.dispatch import Dispatcher, InlineDispatcher
from taskmgr.exceptions import (
    ConflictError,
    DataRejectedError,
    ExecutionNotFoundError,
    FunctionAlreadyRegisteredError,
    FunctionNotRegisteredError,
    InvalidCronError,
    InvalidDatetimeError,
    InvalidFunctionError,
    InvalidInputError,
    InvalidIntervalError,
    InvalidJobKeyError,
    InvalidKwargsError,
    InvalidPolicyError,
    InvalidTimezoneError,
    InvalidTriggerError,
    JobBusyError,
    JobExistsError,
    JobNotFoundError,
    JobOrphanedError,
    JobPausedError,
    NotFoundError,
    SchemaAheadError,
    SchemaBehindError,
    SchemaError,
    ServiceStateError,
    StorageError,
    TaskmgrError,
    VersionConflictError,
)
from taskmgr.execution.events import EventKind, ExecutionEvent
from taskmgr.service import AsyncSchedulerService, SchedulerService
from taskmgr.settings import TaskmgrSettings
from taskmgr.version import __version__ as __version__

__all__ = [
    "AsyncSchedulerService",
    "ConflictError",
    "Cron",
    "DataRejectedError",
    "Date",
    "Dispatcher",
    "EventKind",
    "Execution",
    "ExecutionContext",
    "ExecutionEvent",
    "ExecutionNotFoundError",
    "ExecutionPage",
    "ExecutionStatus",
    "ExecutionTrigger",
    "FunctionAlreadyRegisteredError",
    "FunctionNotRegisteredError",
    "Health",
    "InlineDispatcher",
    "Instance",
    "InstanceStatus",
    "Interval",
    "InvalidCronError",
    "InvalidDatetimeError",
    "InvalidFunctionError",
    "InvalidInputError",
    "InvalidIntervalError",
    "InvalidJobKeyError",
    "InvalidKwargsError",
    "InvalidPolicyError",
    "InvalidTimezoneError",
    "InvalidTriggerError",
    "Job",
    "JobBusyError",
    "JobDefinition",
    "JobExistsError",
    "JobNotFoundError",
    "JobOrphanedError",
    "JobPausedError",
    "JobQueue",
    "JobRegistry",
    "JobSource",
    "JobState",
    "Manual",
    "NotFoundError",
    "OverlapPolicy",
    "RetryBackoff",
    "SchedulerService",
    "SchemaAheadError",
    "SchemaBehindError",
    "SchemaError",
    "ServiceStateError",
    "StorageError",
    "TaskmgrError",
    "TaskmgrSettings",
    "VersionConflictError",
    "current_execution",
    "scheduled_job",
    "task",
]

logging.getLogger("taskmgr").addHandler(logging.NullHandler())
