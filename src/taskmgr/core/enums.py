"""The enumerations of the public models: overlap policies, job states and sources,
execution statuses and triggers, instance statuses. Re-exported by
:mod:`taskmgr.core.models`."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "SLOT_TRIGGERS",
    "ExecutionStatus",
    "ExecutionTrigger",
    "InstanceStatus",
    "JobSource",
    "JobState",
    "OverlapPolicy",
    "PauseScope",
]


class OverlapPolicy(StrEnum):
    """What happens when a slot is due while ``max_instances`` runs are active."""

    #: Record the new slot as ``skipped``.
    SKIP = "skip"
    #: Keep it ``pending`` and start it as soon as a run finishes.
    QUEUE = "queue"
    #: Start it anyway (``max_instances`` is ignored).
    ALLOW = "allow"


class JobState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    #: The job's function is no longer registered in code; kept, visible, never fired.
    ORPHANED = "orphaned"


class JobSource(StrEnum):
    #: Declared with ``@scheduled_job`` and synced at start.
    CODE = "code"
    #: Created at run time through ``create_job`` (Python, HTTP or CLI).
    API = "api"


class ExecutionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    #: The slot was later than the misfire grace time (or coalesced into a later run).
    MISSED = "missed"
    #: The overlap policy refused the slot.
    SKIPPED = "skipped"
    #: Its owner died while it ran.
    LOST = "lost"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


class ExecutionTrigger(StrEnum):
    """Why an execution exists."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    #: A slot run late because several were due at once (after an outage).
    CATCHUP = "catchup"
    #: Deferred with arguments (``SchedulerService.defer``): a task run.
    DEFERRED = "deferred"
    #: A past slot created on request (``SchedulerService.backfill``).
    BACKFILL = "backfill"


#: The triggers whose executions are slots of a schedule: unique per job and instant
#: (a backfilled slot is one too: it never doubles a slot the schedule recorded).
#: Other runs (manual, deferred, retries) are known by their chain and attempt.
SLOT_TRIGGERS = frozenset(
    {ExecutionTrigger.SCHEDULE, ExecutionTrigger.CATCHUP, ExecutionTrigger.BACKFILL}
)


class InstanceStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    DEAD = "dead"


class PauseScope(StrEnum):
    """What a pause stops."""

    #: One job (its row: ``state`` paused, with who, why and until when).
    JOB = "job"
    #: Every job whose ``queue`` is the pause's name, those created later included.
    QUEUE = "queue"
    #: Every job of the service: nothing starts, cluster-wide.
    SERVICE = "service"
