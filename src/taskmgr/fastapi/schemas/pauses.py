"""The HTTP models of pauses (of a job, a queue or the whole service) and backfills."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from taskmgr.core.enums import PauseScope
from taskmgr.core.pauses import MAX_BACKFILL_RUNS, MAX_REASON, BackfillResult, Pause
from taskmgr.fastapi.schemas.common import TEXT_PATTERN, InModel, Instant, OutModel

__all__ = ["BackfillOut", "BackfillRequest", "PauseOut", "PauseRequest", "PausesOut"]


class PauseRequest(InModel):
    """Why, and until when (an instant in the future: it resumes by itself then)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"reason": "deploy freeze", "until": "2026-01-02T18:00:00Z"}]
        },
    )

    reason: str | None = Field(None, max_length=MAX_REASON, pattern=TEXT_PATTERN)
    until: Instant | None = Field(
        None, description="When the pause ends by itself; in the future (else 422)."
    )


class PauseOut(OutModel):
    """One pause in effect."""

    scope: PauseScope
    name: str | None = Field(
        description="The job's key, the queue's name; null for the whole service."
    )
    paused_by: str | None
    reason: str | None
    paused_at: datetime | None
    until: datetime | None = Field(description="When it ends by itself (null: when resumed).")

    @classmethod
    def of(cls, pause: Pause) -> PauseOut:
        return cls(**pause.model_dump())


class PausesOut(OutModel):
    """Everything paused: the whole service first, then queues by name, then jobs by key."""

    items: list[PauseOut]


class BackfillRequest(InModel):
    """The past range whose slots to create (both ends included)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}]
        },
    )

    start: Instant
    end: Instant = Field(description="Not in the future, and after start (else 422).")
    max_runs: int = Field(
        1000,
        ge=1,
        le=MAX_BACKFILL_RUNS,
        description="Refuse (422 backfill_too_large) a range holding more slots than this.",
    )


class BackfillOut(OutModel):
    job_key: str
    start: datetime
    end: datetime
    slots: int = Field(description="The slots of the schedule in the range.")
    created: int = Field(description="Created now as pending runs (trigger backfill).")
    existing: int = Field(description="Already had a row: not created again.")
    scheduled: int = Field(description="From the job's next slot on: left to its schedule.")
    first_created: datetime | None
    last_created: datetime | None

    @classmethod
    def of(cls, result: BackfillResult) -> BackfillOut:
        return cls(**result.model_dump())
