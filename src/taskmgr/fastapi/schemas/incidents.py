"""The HTTP models of the incidents of the alert rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from taskmgr.core.alerts import AlertRule, Incident, NotifyState
from taskmgr.fastapi.schemas.common import OutModel

__all__ = ["IncidentOut", "IncidentPageOut"]


class IncidentOut(OutModel):
    """One breach of an alert rule, open until the rule holds again."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "job_key": "reports.nightly",
                    "rule": "failing",
                    "since": "2026-01-02T02:31:05Z",
                    "opened_at": "2026-01-02T02:31:09Z",
                    "resolved_at": None,
                    "message": "the last 3 runs failed (latest: ValueError: no data)",
                    "details": {"threshold": 3, "execution_id": "…", "error": "…"},
                    "notify_state": "delivered",
                    "notify_attempts": 1,
                    "notify_next_at": None,
                    "notified_at": "2026-01-02T02:31:10Z",
                    "notify_error": None,
                }
            ]
        },
    )

    id: int
    job_key: str | None = Field(description="The job (null: the whole service).")
    rule: AlertRule = Field(
        description="late, failing, overrunning or no_success (docs: Alerting and maintenance)."
    )
    since: datetime = Field(description="When the breach began, by its rule.")
    opened_at: datetime
    resolved_at: datetime | None = Field(description="null while the incident is open.")
    message: str
    details: dict[str, Any]
    notify_state: NotifyState | None = Field(
        description="The webhook delivery of its latest change (null: no webhook)."
    )
    notify_attempts: int
    notify_next_at: datetime | None
    notified_at: datetime | None
    notify_error: str | None = Field(description="Why the last delivery attempt failed.")

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        return cls(**incident.model_dump())


class IncidentPageOut(OutModel):
    """Incidents newest first; pass ``next_before`` as ``before`` for the next page."""

    items: list[IncidentOut]
    next_before: int | None = None
