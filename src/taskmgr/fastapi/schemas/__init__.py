"""The HTTP models: request bodies and responses of the router's JSON API.

They are separate from :mod:`taskmgr.core.models` on purpose: the wire format is a
public contract (what an OpenAPI client is generated from) and must not change
when an internal model does. Requests only check the *shape* here; the meaning
(cron syntax, time zones, bounds) is checked by the core, by the same validators
as ``@scheduled_job``, so the HTTP API cannot drift from the Python API.

One module per subject: :mod:`.common` (instants, patterns, base classes),
:mod:`.jobs`, :mod:`.history` (executions, queues, failures), :mod:`.audit` and
:mod:`.system` (instances, health, cleanup, session). Every name is importable from
here too.
"""

from __future__ import annotations

from taskmgr.fastapi.schemas.audit import AuditEntryOut, AuditPageOut
from taskmgr.fastapi.schemas.common import (
    DATETIME_PATTERN,
    JOB_KEY_REGEX,
    MAX_RETENTION_DAYS,
    TEXT_PATTERN,
    TIMEZONE_PATTERN,
    InModel,
    Instant,
    JsonValue,
    Kwargs,
    OutModel,
    clamp_instant,
    parse_instant,
)
from taskmgr.fastapi.schemas.history import (
    ExecutionOut,
    ExecutionPageOut,
    FailureGroupOut,
    FailuresOut,
    JobQueueOut,
    JobRunsOut,
)
from taskmgr.fastapi.schemas.jobs import (
    CronOut,
    DateOut,
    DeferRequest,
    IntervalOut,
    JobCreate,
    JobOut,
    JobPage,
    JobPatch,
    ManualOut,
    PreviewOut,
    RetryBackoffIO,
    TriggerOut,
    TriggerRequest,
    trigger_out,
)
from taskmgr.fastapi.schemas.system import (
    HEALTH_ERROR,
    CleanupRequest,
    CleanupResult,
    HealthOut,
    InstanceOut,
    SessionOut,
)

__all__ = [
    "DATETIME_PATTERN",
    "HEALTH_ERROR",
    "JOB_KEY_REGEX",
    "MAX_RETENTION_DAYS",
    "TEXT_PATTERN",
    "TIMEZONE_PATTERN",
    "AuditEntryOut",
    "AuditPageOut",
    "CleanupRequest",
    "CleanupResult",
    "CronOut",
    "DateOut",
    "DeferRequest",
    "ExecutionOut",
    "ExecutionPageOut",
    "FailureGroupOut",
    "FailuresOut",
    "HealthOut",
    "InModel",
    "InstanceOut",
    "Instant",
    "IntervalOut",
    "JobCreate",
    "JobOut",
    "JobPage",
    "JobPatch",
    "JobQueueOut",
    "JobRunsOut",
    "JsonValue",
    "Kwargs",
    "ManualOut",
    "OutModel",
    "PreviewOut",
    "RetryBackoffIO",
    "SessionOut",
    "TriggerOut",
    "TriggerRequest",
    "clamp_instant",
    "parse_instant",
    "trigger_out",
]
