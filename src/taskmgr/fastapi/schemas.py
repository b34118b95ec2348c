"""The HTTP models: request bodies and responses of the router's JSON API.

They are separate from :mod:`taskmgr.core.models` on purpose: the wire format is a
public contract (what an OpenAPI client is generated from) and must not change
when an internal model does. Requests only check the *shape* here; the meaning
(cron syntax, time zones, bounds) is checked by the core, by the same validators
as ``@scheduled_job``, so the HTTP API cannot drift from the Python API.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
)
from pydantic.config import JsonDict
from pydantic.config import JsonValue as JsonValue_
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from typing_extensions import TypeAliasType

from taskmgr.core.models import (
    DISPATCH_NAME_REGEX,
    LANGUAGE_TAG_REGEX,
    MAX_CONCURRENCY_KEY,
    MAX_INSTANCES,
    MAX_LANGUAGE_TAG,
    MAX_NAME,
    MAX_NAMES,
    MAX_RETRIES,
    MAX_SECONDS,
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Health,
    Instance,
    InstanceStatus,
    Job,
    JobQueue,
    JobSource,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.triggers import (
    MAX_DATETIME,
    MAX_INTERVAL,
    MIN_DATETIME,
    MIN_INTERVAL,
    Cron,
    Date,
    Interval,
    TriggerSpec,
)
from taskmgr.core.validation import MAX_RETENTION
from taskmgr.fastapi.describe import describe_trigger
from taskmgr.service.tasks import DEFER_OPTIONS, MAX_DELAY

__all__ = [
    "DATETIME_PATTERN",
    "CleanupRequest",
    "CleanupResult",
    "ExecutionOut",
    "ExecutionPageOut",
    "HealthOut",
    "InstanceOut",
    "Instant",
    "JobCreate",
    "JobOut",
    "JobPage",
    "JobPatch",
    "JobQueueOut",
    "JobRunsOut",
    "PreviewOut",
    "SessionOut",
    "TriggerRequest",
]

#: The job key pattern (``taskmgr.core.validation.JOB_KEY_PATTERN``) for OpenAPI clients.
#: A century: more is a mistake, and timedelta cannot hold much more.
MAX_RETENTION_DAYS = 36_500
JOB_KEY_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"

#: An instant as the API takes it: RFC 3339 (ISO 8601 with seconds and an offset),
#: in the years 1970-9998 (what the database stores). Numbers are refused.
DATETIME_PATTERN = (
    r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_DATETIME = re.compile(DATETIME_PATTERN, re.ASCII)
#: The last instant a filter may name (MAX_DATETIME itself is out of range).
_LAST_INSTANT = MAX_DATETIME - timedelta(microseconds=1)


def parse_instant(value: object) -> datetime:
    """``value`` (a string matching :data:`DATETIME_PATTERN`) as an aware datetime.

    Anything else, a number (a Unix time) or a naive or malformed string included,
    raises a pydantic error (a 422 ``validation_error``)."""
    if isinstance(value, datetime):
        return value  # built in Python (a default, a test): already a datetime
    if not isinstance(value, str) or _DATETIME.fullmatch(value) is None:
        raise PydanticCustomError(
            "datetime_format",
            "must be an RFC 3339 date-time with an offset, e.g. 2026-01-02T03:04:05Z, "
            "in the years 1970-9998",
        )
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        raise PydanticCustomError(
            "datetime_format", "not a valid date-time (day, hour or offset out of range)"
        ) from None


#: A strict instant in a request body: ``"2026-01-02T03:04:05+01:00"``, never a number.
Instant = Annotated[
    AwareDatetime,
    BeforeValidator(parse_instant),
    Field(json_schema_extra={"pattern": DATETIME_PATTERN}),
]


#: Text the API stores: no NUL (the body pre-scan refuses it anywhere, 422 invalid_string).
TEXT_PATTERN = r"^[^\x00]*$"
#: An IANA time zone name, as ``taskmgr.core.validation.validate_timezone`` checks it.
TIMEZONE_PATTERN = r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"


class _KeysNamed:
    """In the JSON Schema, an object's key pattern as ``propertyNames`` (pydantic writes
    ``patternProperties``, which lets other keys through as additional properties)."""

    def __get_pydantic_json_schema__(
        self, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core)
        target = handler.resolve_ref_schema(schema)
        patterns = target.pop("patternProperties", None)
        if patterns:
            [(pattern, values)] = patterns.items()
            target["propertyNames"] = {"pattern": pattern}
            target["additionalProperties"] = values
        return schema


_Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
#: Any JSON value whose strings (keys included) have no NUL: what ``kwargs`` take.
JsonValue = TypeAliasType(
    "JsonValue",
    "bool | int | float | _Text | list[JsonValue] | "
    "Annotated[dict[_Text, JsonValue], _KeysNamed()] | None",
)
#: Keyword arguments: a JSON object (at most 64 KiB serialized and 32 levels deep,
#: which a schema cannot say; the core checks them, 422 invalid_kwargs / json_too_deep).
Kwargs = Annotated[dict[_Text, JsonValue], _KeysNamed()]


def _seconds(minimum: float, maximum: float, *, exclusive: bool = False) -> JsonDict:
    """The JSON Schema of a number of seconds the core bounds (its own 422 code)."""
    low = {"exclusiveMinimum": minimum} if exclusive else {"minimum": minimum}
    return {**low, "maximum": maximum}


def _at_most_one(*names: str) -> list[JsonValue_]:
    """JSON Schema: no two of these fields are given with a value (null is no value)."""
    return [
        {
            "not": {
                "required": [first, second],
                "properties": {first: {"not": {"type": "null"}}, second: {"not": {"type": "null"}}},
            }
        }
        for i, first in enumerate(names)
        for second in names[i + 1 :]
    ]


def clamp_instant(value: datetime) -> datetime:
    """``value`` in UTC, moved into what the database stores: a bound of a filter in
    the year 1970 or 9998 of its offset may fall just outside (1969 or 9999 in UTC),
    where no row is, so the filter keeps its meaning."""
    moment = value.astimezone(UTC)
    return min(max(moment, MIN_DATETIME), _LAST_INSTANT)


class _In(BaseModel):
    # Unknown fields are refused: no mass assignment of id, version, timestamps...
    # Strict: "10" is not a number and "yes" is not true (JSON has types; use them).
    model_config = ConfigDict(extra="forbid", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- triggers ----------------------------------------------------------------------


class CronOut(_Out):
    type: Literal["cron"] = "cron"
    expression: str
    timezone: str


class IntervalOut(_Out):
    type: Literal["interval"] = "interval"
    every: float = Field(description="Seconds between runs.")
    start: datetime | None = Field(description="The anchor: runs are at start + k * every.")


class DateOut(_Out):
    type: Literal["date"] = "date"
    at: datetime


class ManualOut(_Out):
    """No schedule: a task, run when deferred."""

    type: Literal["manual"] = "manual"


TriggerOut = Annotated[CronOut | IntervalOut | DateOut | ManualOut, Field(discriminator="type")]


def trigger_out(spec: TriggerSpec) -> CronOut | IntervalOut | DateOut | ManualOut:
    if isinstance(spec, Cron):
        return CronOut(expression=spec.expression, timezone=spec.timezone)
    if isinstance(spec, Interval):
        return IntervalOut(every=spec.every.total_seconds(), start=spec.start)
    if isinstance(spec, Date):
        return DateOut(at=spec.at)
    return ManualOut()


# -- jobs ----------------------------------------------------------------------------


class RetryBackoffIO(_In):
    """Delay before retry n: min(max, base * 2**(n-1)), reduced by up to ``jitter``."""

    base: float = Field(
        1.0, description="Seconds.", json_schema_extra=_seconds(0, MAX_SECONDS, exclusive=True)
    )
    max: float = Field(
        300.0, description="Seconds.", json_schema_extra=_seconds(0, MAX_SECONDS, exclusive=True)
    )
    jitter: float = Field(
        0.5, description="A fraction in [0, 1].", json_schema_extra={"minimum": 0, "maximum": 1}
    )


class _ScheduleFields(_In):
    cron: str | None = Field(
        None,
        max_length=256,
        description="A 5-field crontab(5) expression (exactly one of cron, interval, at).",
        examples=["30 2 * * *"],
    )
    interval: float | None = Field(
        None,
        description="Seconds between runs, 1 to 366 days.",
        examples=[300],
        json_schema_extra=_seconds(MIN_INTERVAL.total_seconds(), MAX_INTERVAL.total_seconds()),
    )
    at: Instant | None = Field(
        None, strict=False, description="Run once at this instant (RFC 3339, with an offset)."
    )
    timezone: str | None = Field(
        None,
        max_length=64,
        description="IANA zone the cron expression is read in (cron only).",
        json_schema_extra={"pattern": TIMEZONE_PATTERN},
        examples=["Europe/Berlin"],
    )
    names: dict[str, str] | None = Field(
        None,
        description=(
            f"Display names by language tag (BCP 47 in shape, e.g. en, pt-BR): at most "
            f"{MAX_NAMES} languages, each name at most {MAX_NAME} characters."
        ),
        examples=[{"en": "Nightly report", "de": "Nächtlicher Bericht"}],
        json_schema_extra={
            "maxProperties": MAX_NAMES,
            "propertyNames": {"pattern": LANGUAGE_TAG_REGEX, "maxLength": MAX_LANGUAGE_TAG},
            "additionalProperties": {
                "type": "string",
                "maxLength": MAX_NAME,
                "pattern": TEXT_PATTERN,
            },
        },
    )
    description: str | None = Field(None, max_length=2000, pattern=TEXT_PATTERN)
    kwargs: Kwargs | None = Field(
        None, description="JSON keyword arguments for the function (at most 64 KiB, depth 32)."
    )
    max_instances: int | None = Field(
        None, json_schema_extra={"minimum": 1, "maximum": MAX_INSTANCES}
    )
    overlap_policy: OverlapPolicy | None = None
    concurrency_key: str | None = Field(
        None,
        max_length=MAX_CONCURRENCY_KEY,
        description=(
            "Tasks only: the name of an argument; max_instances then bounds the runs per "
            "value of that argument."
        ),
        examples=["customer_id"],
    )
    misfire_grace_time: float | None = Field(
        None,
        description="Seconds a slot may start late (null: no limit).",
        json_schema_extra=_seconds(0, MAX_SECONDS),
    )
    coalesce: bool | None = None
    max_retries: int | None = Field(None, json_schema_extra={"minimum": 0, "maximum": MAX_RETRIES})
    retry_backoff: RetryBackoffIO | None = None
    timeout: float | None = Field(
        None,
        description="Seconds (null: no timeout).",
        json_schema_extra=_seconds(0, MAX_SECONDS, exclusive=True),
    )
    queue: str | None = Field(None, max_length=200, pattern=TEXT_PATTERN)
    dispatch: str | None = Field(
        None,
        max_length=128,
        pattern=DISPATCH_NAME_REGEX,
        description=(
            "The name of the service's dispatcher that runs the job (e.g. celery, inline); "
            "null: the service's default. A name the service does not have is refused "
            "(422 unknown_dispatcher)."
        ),
        examples=["celery"],
    )
    retention: float | None = Field(
        None,
        description=(
            "Seconds this job's finished executions are kept, instead of the global "
            "history retention (null: the global one)."
        ),
        examples=[259200],
        json_schema_extra=_seconds(0, MAX_RETENTION, exclusive=True),
    )


class JobCreate(_ScheduleFields):
    """A new job for a function the host registered in code. Omitted options take
    the same defaults as ``@scheduled_job``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": _at_most_one("cron", "interval", "at"),
            "examples": [
                {
                    "key": "reports.nightly",
                    "func": "myapp.jobs.nightly_report",
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Berlin",
                    "kwargs": {"recipients": ["ops@example.com"]},
                    "max_retries": 2,
                }
            ],
        },
    )

    key: str = Field(pattern=JOB_KEY_REGEX, max_length=128, examples=["reports.nightly"])
    func: str = Field(
        max_length=200,
        description="The registered name of the function (never an import path to load).",
        examples=["myapp.jobs.nightly_report"],
        json_schema_extra={"pattern": JOB_KEY_REGEX, "maxLength": 128},
    )
    enabled: bool | None = Field(None, description="false creates the job paused.")


class JobPatch(_ScheduleFields):
    """Changes to a job; omitted fields keep their value. A new schedule applies from
    now. ``key``, ``id``, ``version``, timestamps and ``state`` cannot be changed here
    (pause and resume have their own endpoints)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": _at_most_one("cron", "interval", "at"),
            "examples": [{"cron": "0 3 * * *", "max_retries": 3}],
        },
    )

    func: str | None = Field(
        None, max_length=200, json_schema_extra={"pattern": JOB_KEY_REGEX, "maxLength": 128}
    )


class JobOut(_Out):
    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "key": "reports.nightly",
                    "func": "myapp.jobs.nightly_report",
                    "trigger": {"type": "cron", "expression": "30 2 * * *", "timezone": "UTC"},
                    "schedule": "every day at 02:30 (UTC)",
                    "state": "active",
                    "next_run_at": "2026-01-02T02:30:00Z",
                }
            ]
        },
    )

    id: int
    key: str
    func: str
    trigger: TriggerOut
    schedule: str = Field(description="The trigger in words (English).")
    names: dict[str, str]
    description: str | None
    kwargs: dict[str, Any]
    max_instances: int
    overlap_policy: OverlapPolicy
    concurrency_key: str | None = Field(
        description="A task's argument whose value groups its runs under max_instances."
    )
    misfire_grace_time: float | None
    coalesce: bool
    max_retries: int
    retry_backoff: RetryBackoffIO
    timeout: float | None
    queue: str | None
    retention: float | None = Field(
        description="Seconds its finished executions are kept (null: the global retention)."
    )
    dispatch: str | None = Field(
        description="The dispatcher that runs the job; null: the service's default."
    )
    state: JobState
    source: JobSource
    next_run_at: datetime | None = Field(
        description="When the job fires next; null while it is paused or orphaned."
    )
    last_run_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: Job) -> JobOut:
        data = job.model_dump(exclude={"fingerprint", "trigger", "retry_backoff"})
        return cls(
            **data,
            trigger=trigger_out(job.trigger),
            schedule=describe_trigger(job.trigger),
            retry_backoff=RetryBackoffIO(**job.retry_backoff.model_dump()),
        )


class JobPage(_Out):
    """Jobs ordered by key; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[JobOut]
    next_cursor: str | None = None


class PreviewOut(_Out):
    job_key: str
    fire_times: list[datetime] = Field(description="The next fire times, in UTC.")


# -- executions and instances ------------------------------------------------------------


class TriggerRequest(_In):
    """Run the job now, once. ``kwargs`` are merged over the job's."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"kwargs": {"dry_run": True}}]}
    )

    kwargs: Kwargs | None = Field(
        None, description="Merged over the job's (at most 64 KiB, depth 32)."
    )
    force: bool = Field(
        False, description="Run even if the job is paused or its overlap policy refuses."
    )


class DeferRequest(_In):
    """Defer one run with these arguments, now, at ``run_at`` or after ``delay``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "allOf": _at_most_one("run_at", "delay"),
            "examples": [{"kwargs": {"user_id": 42}, "delay": 60}],
        },
    )

    kwargs: Kwargs = Field(
        default_factory=dict,
        description=(
            "The task's arguments (at most 64 KiB, depth 32); defer's own options are not "
            "argument names."
        ),
        json_schema_extra={
            "propertyNames": {"pattern": TEXT_PATTERN, "not": {"enum": [*sorted(DEFER_OPTIONS)]}}
        },
    )
    run_at: Instant | None = Field(
        None, strict=False, description="Run at this instant (RFC 3339, with an offset)."
    )
    delay: float | None = Field(
        None,
        strict=False,
        description="Seconds to wait before running (0 to 366 days).",
        json_schema_extra=_seconds(0, MAX_DELAY.total_seconds()),
    )


class ExecutionOut(_Out):
    id: str
    job_id: int
    job_key: str
    scheduled_for: datetime
    attempt: int
    trigger: ExecutionTrigger
    status: ExecutionStatus
    due_at: datetime
    queued: bool
    kwargs: dict[str, Any]
    owner: str | None
    actor: str | None
    created_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: int | None
    lateness_ms: int | None = Field(description="started_at - scheduled_for, in milliseconds.")
    error_type: str | None
    error_message: str | None
    traceback: str | None
    result_summary: Any
    celery_task_id: str | None
    chain_id: str = Field(description="The id of the run's first attempt, shared by retries.")
    idempotency_key: str | None = Field(
        description="The key that made a deferred run unique for its task, if any."
    )
    concurrency_value: str | None = Field(
        description="The value of its task's concurrency_key argument, as JSON, if any."
    )

    @classmethod
    def of(cls, execution: Execution) -> ExecutionOut:
        lateness = None
        if execution.started_at is not None:
            late = execution.started_at - execution.scheduled_for
            lateness = round(late.total_seconds() * 1000)
        # the trace context is for the dispatchers' spans, not for readers of the API
        data = execution.model_dump(exclude={"trace_context"})
        return cls(**data, lateness_ms=lateness)


class ExecutionPageOut(_Out):
    """Executions newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ExecutionOut]
    next_cursor: str | None = None


class JobRunsOut(_Out):
    """A job's newest executions, newest first (empty: none, or no such job)."""

    job_key: str
    items: list[ExecutionOut]


class JobQueueOut(_Out):
    """One job's executions that have not ended: waiting (pending) and running."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "job_id": 3,
                    "job_key": "emails.welcome",
                    "pending": 12,
                    "due": 10,
                    "running": 4,
                    "oldest_due_at": "2026-01-02T09:59:30Z",
                    "oldest_due_age_seconds": 30.0,
                }
            ]
        },
    )

    job_id: int
    job_key: str
    pending: int = Field(
        description="Pending executions, due or not (deferred to later, retries in backoff)."
    )
    due: int = Field(description="Pending executions whose due time has come: the queue depth.")
    running: int = Field(description="Executions running now, on any instance.")
    oldest_due_at: datetime | None = Field(
        description="The earliest due time of the due pending executions (null: none is due)."
    )
    oldest_due_age_seconds: float | None = Field(
        description="How long the oldest due pending execution has waited, in seconds."
    )

    @classmethod
    def of(cls, queue: JobQueue, now: datetime) -> JobQueueOut:
        age = None
        if queue.oldest_due_at is not None:
            age = max((now - queue.oldest_due_at).total_seconds(), 0.0)
        return cls(**queue.model_dump(), oldest_due_age_seconds=age)


class InstanceOut(_Out):
    id: str
    hostname: str
    pid: int
    mode: str
    status: InstanceStatus
    started_at: datetime
    last_heartbeat: datetime
    heartbeat_age_seconds: float

    @classmethod
    def of(cls, instance: Instance, now: datetime) -> InstanceOut:
        age = max((now - instance.last_heartbeat).total_seconds(), 0.0)
        return cls(**instance.model_dump(), heartbeat_age_seconds=age)


#: HealthOut.error when the database is not healthy (the details go to the server log).
HEALTH_ERROR = "the database is unavailable"


class HealthOut(_Out):
    ok: bool = Field(description="The database answered and nothing is wrong with it.")
    database: bool
    schema_current: bool | None = Field(
        None, description="The database schema is at this version's head (null: unknown)."
    )
    running: bool = Field(description="The service of this process is started.")
    live_instances: int
    oldest_overdue_at: datetime | None
    overdue_seconds: float
    error: str | None = Field(
        description=(
            "Set when the database is not healthy; says so without the driver's message, "
            "which may name the database (it is in the server log)."
        )
    )

    @classmethod
    def of(cls, health: Health) -> HealthOut:
        # Only the fields this wire format has: Health may grow fields of its own.
        data = {k: v for k, v in health.model_dump().items() if k in cls.model_fields}
        if health.error is not None:
            data["error"] = HEALTH_ERROR
        return cls(**data, ok=health.ok)


class CleanupRequest(_In):
    # Bounded here because timedelta(days=...) overflows past ~2.7 million days.
    retention_days: float = Field(
        ge=0,
        le=MAX_RETENTION_DAYS,
        description="Delete finished executions completed more than this many days ago.",
        examples=[30],
    )


class CleanupResult(_Out):
    deleted: int


class SessionOut(_Out):
    """What the caller may do: the dashboard shows actions only when ``can_write``."""

    can_write: bool
