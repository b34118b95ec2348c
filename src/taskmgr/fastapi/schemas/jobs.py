"""The HTTP models of jobs: their triggers, what creates and changes a job, what a
job looks like, and the bodies of a manual run and of a defer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from taskmgr.core.alert_options import MAX_ALERT_FAILURES, MAX_ALERT_SECONDS
from taskmgr.core.exclusions import MAX_EXCLUDE_DATES
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
    Job,
    JobSource,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.triggers import MAX_INTERVAL, MIN_INTERVAL, Cron, Date, Interval, TriggerSpec
from taskmgr.core.validation import MAX_RETENTION
from taskmgr.fastapi.describe import describe_trigger
from taskmgr.fastapi.schemas.common import (
    JOB_KEY_REGEX,
    TEXT_PATTERN,
    TIMEZONE_PATTERN,
    InModel,
    Instant,
    Kwargs,
    OutModel,
    at_most_one,
    seconds_schema,
)
from taskmgr.service.tasks import DEFER_OPTIONS, MAX_DELAY

__all__ = [
    "CronOut",
    "DateOut",
    "DeferRequest",
    "IntervalOut",
    "JobCreate",
    "JobOut",
    "JobPage",
    "JobPatch",
    "ManualOut",
    "PreviewOut",
    "RetryBackoffIO",
    "TriggerOut",
    "TriggerRequest",
    "trigger_out",
]

#: A date as a job's exclusion dates take it: ``YYYY-MM-DD``.
ISO_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


# -- triggers ----------------------------------------------------------------------


class CronOut(OutModel):
    type: Literal["cron"] = "cron"
    expression: str
    timezone: str


class IntervalOut(OutModel):
    type: Literal["interval"] = "interval"
    every: float = Field(description="Seconds between runs.")
    start: datetime | None = Field(description="The anchor: runs are at start + k * every.")


class DateOut(OutModel):
    type: Literal["date"] = "date"
    at: datetime


class ManualOut(OutModel):
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


class RetryBackoffIO(InModel):
    """Delay before retry n: min(max, base * 2**(n-1)), reduced by up to ``jitter``."""

    base: float = Field(
        1.0,
        description="Seconds.",
        json_schema_extra=seconds_schema(0, MAX_SECONDS, exclusive=True),
    )
    max: float = Field(
        300.0,
        description="Seconds.",
        json_schema_extra=seconds_schema(0, MAX_SECONDS, exclusive=True),
    )
    jitter: float = Field(
        0.5, description="A fraction in [0, 1].", json_schema_extra={"minimum": 0, "maximum": 1}
    )


class _ScheduleFields(InModel):
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
        json_schema_extra=seconds_schema(
            MIN_INTERVAL.total_seconds(), MAX_INTERVAL.total_seconds()
        ),
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
        json_schema_extra=seconds_schema(0, MAX_SECONDS),
    )
    coalesce: bool | None = None
    max_retries: int | None = Field(None, json_schema_extra={"minimum": 0, "maximum": MAX_RETRIES})
    retry_backoff: RetryBackoffIO | None = None
    timeout: float | None = Field(
        None,
        description="Seconds (null: no timeout).",
        json_schema_extra=seconds_schema(0, MAX_SECONDS, exclusive=True),
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
        json_schema_extra=seconds_schema(0, MAX_RETENTION, exclusive=True),
    )
    alert_late_after: float | None = Field(
        None,
        description="Seconds after its time a slot or run may still not have started "
        "before an incident opens (null: the service's default).",
        json_schema_extra=seconds_schema(0, MAX_ALERT_SECONDS, exclusive=True),
    )
    alert_failures: int | None = Field(
        None,
        description="Finished runs in a row that may fail before an incident opens "
        "(null: the service's default).",
        json_schema_extra={"minimum": 1, "maximum": MAX_ALERT_FAILURES},
    )
    alert_max_runtime: float | None = Field(
        None,
        description="Seconds a run may go on before an incident opens "
        "(null: the service's default).",
        json_schema_extra=seconds_schema(0, MAX_ALERT_SECONDS, exclusive=True),
    )
    alert_no_success_within: float | None = Field(
        None,
        description="Seconds the job may go without a successful run before an incident "
        "opens (null: the service's default).",
        json_schema_extra=seconds_schema(0, MAX_ALERT_SECONDS, exclusive=True),
    )
    exclude_dates: list[Annotated[str, Field(pattern=ISO_DATE_PATTERN)]] | None = Field(
        None,
        max_length=MAX_EXCLUDE_DATES,
        description=(
            "Dates (YYYY-MM-DD) on which the job's slots are recorded skipped instead of "
            "run, read in its trigger's time zone (a cron job's timezone, else UTC); "
            "null or [] for none. Jobs with a schedule only."
        ),
        examples=[["2026-12-25", "2027-01-01"]],
    )


class JobCreate(_ScheduleFields):
    """A new job for a function the host registered in code. Omitted options take
    the same defaults as ``@scheduled_job``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "allOf": at_most_one("cron", "interval", "at"),
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
            "allOf": at_most_one("cron", "interval", "at"),
            "examples": [{"cron": "0 3 * * *", "max_retries": 3}],
        },
    )

    func: str | None = Field(
        None, max_length=200, json_schema_extra={"pattern": JOB_KEY_REGEX, "maxLength": 128}
    )


class JobOut(OutModel):
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
    alert_late_after: float | None = Field(
        None, description="Its own late threshold, seconds (null: the service's)."
    )
    alert_failures: int | None = Field(
        None, description="Its own failed-runs-in-a-row threshold (null: the service's)."
    )
    alert_max_runtime: float | None = Field(
        None, description="Its own longest run, seconds (null: the service's)."
    )
    alert_no_success_within: float | None = Field(
        None, description="Its own dead-man window, seconds (null: the service's)."
    )
    exclude_dates: list[date] = Field(
        default_factory=list,
        description="Dates whose slots are skipped, in its trigger's time zone.",
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
    paused_by: str | None = Field(None, description="While paused: who paused it.")
    paused_reason: str | None = Field(None, description="While paused: why.")
    paused_at: datetime | None = Field(None, description="While paused: since when.")
    paused_until: datetime | None = Field(
        None, description="While paused: when it resumes by itself (null: when resumed)."
    )

    @classmethod
    def of(cls, job: Job) -> JobOut:
        data = job.model_dump(exclude={"fingerprint", "trigger", "retry_backoff"})
        return cls(
            **data,
            trigger=trigger_out(job.trigger),
            schedule=describe_trigger(job.trigger),
            retry_backoff=RetryBackoffIO(**job.retry_backoff.model_dump()),
        )


class JobPage(OutModel):
    """Jobs ordered by key; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[JobOut]
    next_cursor: str | None = None


class PreviewOut(OutModel):
    job_key: str
    fire_times: list[datetime] = Field(description="The next fire times, in UTC.")


# -- executions and instances ------------------------------------------------------------


class TriggerRequest(InModel):
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


class DeferRequest(InModel):
    """Defer one run with these arguments, now, at ``run_at`` or after ``delay``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "allOf": at_most_one("run_at", "delay"),
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
        json_schema_extra=seconds_schema(0, MAX_DELAY.total_seconds()),
    )
