"""taskmgr: durable scheduled jobs, fired once per slot across many processes.

Declare jobs with :func:`scheduled_job`, hand them to a :class:`SchedulerService`,
and ``start()`` it. The database decides who fires each slot; every slot ends as an
execution row you can query.
"""

import logging

from taskmgr.core.audit import AuditAction, AuditEntry, AuditPage, AuditSource
from taskmgr.core.context import ExecutionContext, ExecutionLogFilter, current_execution
from taskmgr.core.decorators import scheduled_job, task
from taskmgr.core.failures import FailureGroup
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
from taskmgr.core.pauses import BackfillResult, Pause, PauseScope
from taskmgr.core.registry import JobRegistry
from taskmgr.core.triggers import Cron, Date, Interval, Manual
from taskmgr.dispatch import Dispatcher, InlineDispatcher
from taskmgr.exceptions import (
    BackfillTooLargeError,
    ConflictError,
    DatabaseURLError,
    DataRejectedError,
    ExecutionNotFoundError,
    FunctionAlreadyRegisteredError,
    FunctionNotRegisteredError,
    InvalidBackfillError,
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
    PauseUntilPastError,
    SchemaAheadError,
    SchemaBehindError,
    SchemaError,
    ServiceStateError,
    StorageError,
    TaskmgrError,
    UnknownDispatcherError,
    VersionConflictError,
)
from taskmgr.execution.events import EventKind, ExecutionEvent
from taskmgr.service import AsyncSchedulerService, SchedulerService
from taskmgr.settings import TaskmgrSettings
from taskmgr.version import __version__ as __version__

__all__ = [
    "AsyncSchedulerService",
    "AuditAction",
    "AuditEntry",
    "AuditPage",
    "AuditSource",
    "BackfillResult",
    "BackfillTooLargeError",
    "ConflictError",
    "Cron",
    "DataRejectedError",
    "DatabaseURLError",
    "Date",
    "Dispatcher",
    "EventKind",
    "Execution",
    "ExecutionContext",
    "ExecutionEvent",
    "ExecutionLogFilter",
    "ExecutionNotFoundError",
    "ExecutionPage",
    "ExecutionStatus",
    "ExecutionTrigger",
    "FailureGroup",
    "FunctionAlreadyRegisteredError",
    "FunctionNotRegisteredError",
    "Health",
    "InlineDispatcher",
    "Instance",
    "InstanceStatus",
    "Interval",
    "InvalidBackfillError",
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
    "Pause",
    "PauseScope",
    "PauseUntilPastError",
    "RetryBackoff",
    "SchedulerService",
    "SchemaAheadError",
    "SchemaBehindError",
    "SchemaError",
    "ServiceStateError",
    "StorageError",
    "TaskmgrError",
    "TaskmgrSettings",
    "UnknownDispatcherError",
    "VersionConflictError",
    "current_execution",
    "scheduled_job",
    "task",
]

logging.getLogger("taskmgr").addHandler(logging.NullHandler())
