"""The HTTP models of the service itself: instances, health, history cleanup and
the caller's session."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from taskmgr.core.models import Health, Instance, InstanceStatus
from taskmgr.fastapi.schemas.common import MAX_RETENTION_DAYS, InModel, OutModel
from taskmgr.fastapi.schemas.pauses import PauseOut

__all__ = [
    "HEALTH_ERROR",
    "CleanupRequest",
    "CleanupResult",
    "HealthOut",
    "InstanceOut",
    "SessionOut",
]


class InstanceOut(OutModel):
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


class HealthOut(OutModel):
    ok: bool = Field(description="The database answered and nothing is wrong with it.")
    database: bool
    schema_current: bool | None = Field(
        None, description="The database schema is at this version's head (null: unknown)."
    )
    running: bool = Field(description="The service of this process is started.")
    live_instances: int
    oldest_overdue_at: datetime | None
    overdue_seconds: float
    pauses: list[PauseOut] = Field(
        default_factory=list,
        description="The pauses of queues and of the whole service in effect.",
    )
    open_incidents: int = Field(
        0, description="Incidents of the alert rules still open (GET incidents?open=true)."
    )
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


class CleanupRequest(InModel):
    # Bounded here because timedelta(days=...) overflows past ~2.7 million days.
    retention_days: float = Field(
        ge=0,
        le=MAX_RETENTION_DAYS,
        description="Delete finished executions completed more than this many days ago.",
        examples=[30],
    )


class CleanupResult(OutModel):
    deleted: int


class SessionOut(OutModel):
    """What the caller may do: the dashboard shows actions only when ``can_write``."""

    can_write: bool
