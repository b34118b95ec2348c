"""The HTTP models of the audit log: one entry, and a page of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskmgr.core.audit import AuditAction, AuditEntry, AuditPage, AuditSource

__all__ = ["AuditEntryOut", "AuditPageOut"]


class AuditEntryOut(BaseModel):
    """One change to a job or to the service's state."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "at": "2026-01-02T09:30:00Z",
                    "actor": "alice",
                    "source": "dashboard",
                    "action": "update",
                    "job_key": "reports.nightly",
                    "execution_id": None,
                    "details": {"changes": {"max_retries": {"before": 0, "after": 3}}},
                }
            ]
        },
    )

    id: int
    at: datetime = Field(description="When the change was made (the service's clock).")
    actor: str | None = Field(description="Who made it (the router's actor), if named.")
    source: AuditSource
    action: AuditAction
    job_key: str | None
    execution_id: str | None
    details: dict[str, Any] = Field(
        description=(
            'For an update, {"changes": {field: {"before": ..., "after": ...}}} with only '
            'the changed fields; for a create or a delete, {"job": {...}}; for a '
            "retention run, how many rows it removed."
        )
    )

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(**entry.model_dump())


class AuditPageOut(BaseModel):
    """Audit entries newest first; pass ``next_cursor`` as ``cursor`` for the next page."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[AuditEntryOut]
    next_cursor: str | None = None

    @classmethod
    def of(cls, page: AuditPage) -> AuditPageOut:
        return cls(items=[AuditEntryOut.of(e) for e in page.items], next_cursor=page.next_cursor)
