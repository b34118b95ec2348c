"""taskmgr: durable scheduled jobs, fired once per slot across many processes.

Declare jobs with :func:`scheduled_job`, hand them to a :class:`SchedulerService`,
and ``start()`` it. The database decides who fires each slot; every slot ends as an
execution row you can query.
"""

import logging

from taskmgr._context import ExecutionContext, current_execution
from taskmgr._events import EventKind, ExecutionEvent
from taskmgr.decorators import scheduled_job
from taskmgr.dispatch import Dispatcher, InlineDispatcher
from taskmgr.exceptions import (
    ConflictError,
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
from taskmgr.registry import JobRegistry
from taskmgr.schemas import (
    Execution,
    ExecutionPage,
    ExecutionStatus,
    ExecutionTrigger,
    Health,
    Instance,
    InstanceStatus,
    Job,
    JobDefinition,
    JobSource,
    JobState,
    OverlapPolicy,
    RetryBackoff,
)
from taskmgr.service import SchedulerService
from taskmgr.settings import TaskmgrSettings
from taskmgr.triggers import Cron, Date, Interval

__version__ = "0.1.0"

__all__ = [
    "ConflictError",
    "Cron",
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
    "JobRegistry",
    "JobSource",
    "JobState",
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
]

logging.getLogger("taskmgr").addHandler(logging.NullHandler())
