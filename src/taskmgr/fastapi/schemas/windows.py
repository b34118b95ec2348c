"""The HTTP models of maintenance windows."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from taskmgr.core.pauses import MAX_REASON
from taskmgr.core.windows import MAX_WINDOW_NAME, MaintenanceWindow, WindowAction
from taskmgr.fastapi.schemas.common import (
    JOB_KEY_REGEX,
    TEXT_PATTERN,
    TIMEZONE_PATTERN,
    InModel,
    Instant,
    OutModel,
    at_most_one,
)

__all__ = ["WindowOut", "WindowRequest", "WindowsOut"]


class WindowRequest(InModel):
    """A new maintenance window: one-off (``start`` and ``end``) or recurring (``cron``
    and ``duration``, or ``weekly``), for every job or one (``job_key``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "allOf": at_most_one("start", "cron", "weekly"),
            "examples": [
                {
                    "name": "sunday-db",
                    "weekly": "sun 02:00-04:00",
                    "timezone": "Europe/Berlin",
                    "reason": "database maintenance",
                },
                {
                    "name": "migration",
                    "job_key": "reports.nightly",
                    "action": "defer",
                    "start": "2026-12-07T22:00:00Z",
                    "end": "2026-12-07T23:30:00Z",
                },
            ],
        },
    )

    name: str = Field(pattern=JOB_KEY_REGEX, max_length=MAX_WINDOW_NAME)
    job_key: str | None = Field(
        None,
        pattern=JOB_KEY_REGEX,
        max_length=128,
        description="The one job it covers (an existing job, else 422); null: every job.",
    )
    action: WindowAction = Field(
        WindowAction.SKIP,
        strict=False,
        description=(
            "skip: slots inside are recorded skipped, the window named as the reason; "
            "defer: they wait until it closes, then the job's misfire policy decides."
        ),
    )
    start: Instant | None = Field(None, description="One-off: when it opens.")
    end: Instant | None = Field(
        None, description="One-off: when it closes; after start and in the future (else 422)."
    )
    cron: str | None = Field(
        None,
        max_length=256,
        description="Recurring: a 5-field cron expression for its starts.",
        examples=["0 2 * * SUN"],
    )
    duration: float | None = Field(
        None,
        strict=False,
        description=(
            "Recurring, with cron: seconds of wall-clock time it stays open, at most the "
            "time between two starts."
        ),
        json_schema_extra={"exclusiveMinimum": 0},
    )
    weekly: str | None = Field(
        None,
        max_length=100,
        pattern=TEXT_PATTERN,
        description="Recurring, instead of cron and duration: days and times, e.g. "
        "'sun 02:00-04:00' or 'mon-fri 22:00-06:00'.",
    )
    timezone: str | None = Field(
        None,
        max_length=64,
        description="Recurring: the IANA zone its times are read in (default UTC).",
        json_schema_extra={"pattern": TIMEZONE_PATTERN},
    )
    reason: str | None = Field(None, max_length=MAX_REASON, pattern=TEXT_PATTERN)


class WindowOut(OutModel):
    """One maintenance window, and whether it is open now."""

    name: str
    job_key: str | None = Field(description="The job it covers; null: every job.")
    action: WindowAction
    start: datetime | None
    end: datetime | None
    cron: str | None
    duration: float | None
    timezone: str | None
    reason: str | None
    created_by: str | None
    created_at: datetime | None
    open: bool = Field(description="Whether it is open now.")
    open_until: datetime | None = Field(description="While open: when it closes.")
    next_start: datetime | None = Field(
        description="When it opens next (a recurring one: within a year; null: not again)."
    )

    @classmethod
    def of(cls, window: MaintenanceWindow, now: datetime) -> WindowOut:
        span = window.span_at(now)
        upcoming = window.next_span(span[1] if span is not None else now)
        return cls(
            **window.model_dump(),
            open=span is not None,
            open_until=None if span is None else span[1],
            next_start=None if upcoming is None else upcoming[0],
        )


class WindowsOut(OutModel):
    """The maintenance windows by name."""

    items: list[WindowOut]
