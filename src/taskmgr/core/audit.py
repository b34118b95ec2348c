"""The audit log's models: who changed what, when and through which door.

Every change to a job (created, updated, deleted, paused, resumed, run by hand,
backfilled) or to the service's state (a queue or the service paused or resumed, a
maintenance window added or deleted, an execution cancelled, history removed by
retention) is one
:class:`AuditEntry`, written by the storage in the same transaction as the change.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["AuditAction", "AuditEntry", "AuditPage", "AuditSource"]


class AuditAction(StrEnum):
    """What an audit entry records."""

    #: A job was created (by code sync, ``create_job``, HTTP or the CLI).
    CREATE = "create"
    #: A job's definition or state was changed (``details``: the changed fields).
    UPDATE = "update"
    DELETE = "delete"
    PAUSE = "pause"
    RESUME = "resume"
    #: A manual run was asked for (``trigger_job``).
    TRIGGER = "trigger"
    #: A pending execution was cancelled.
    CANCEL = "cancel"
    #: Old executions and audit entries were removed (the retention job, ``cleanup_history``).
    RETENTION = "retention"
    #: Past slots of a job were created as runs (``backfill``).
    BACKFILL = "backfill"
    #: A maintenance window was created (``details["window"]``: the window).
    ADD_WINDOW = "add_window"
    #: A maintenance window was deleted (``details["window"]``: the window as it was).
    DELETE_WINDOW = "delete_window"


class AuditSource(StrEnum):
    """Through which door a change came."""

    #: Jobs declared in code, synced at start; the built-in retention job.
    CODE = "code"
    #: The HTTP API of ``create_router``.
    API = "api"
    #: The ``taskmgr`` command.
    CLI = "cli"
    #: The dashboard (its writes say so in their ``X-Taskmgr-Action`` header).
    DASHBOARD = "dashboard"
    #: A call of the Python API (the default).
    PYTHON = "python"
    #: taskmgr itself, at a time somebody set: a pause ending at its ``until`` (actor
    #: ``taskmgr``).
    SCHEDULE = "schedule"


class AuditEntry(BaseModel):
    """One recorded change. ``id`` grows with every entry (newest: greatest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    #: When the change was made, by the clock of the service that made it (the
    #: database's clock unless one was injected).
    at: datetime
    #: Who made it (the router's ``actor`` dependency, the CLI's ``--actor``); None:
    #: nobody was named (code sync, a script).
    actor: str | None
    source: AuditSource
    action: AuditAction
    job_key: str | None = None
    execution_id: str | None = None
    #: JSON: for an update, ``{"changes": {field: {"before": ..., "after": ...}}}`` with
    #: only the fields that changed; for a create or a delete, ``{"job": {...}}``; for
    #: a retention run, how many rows it removed.
    details: dict[str, Any]


class AuditPage(BaseModel):
    """One page of audit entries, newest first; pass ``next_cursor`` to get the next."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[AuditEntry]
    next_cursor: str | None = None
