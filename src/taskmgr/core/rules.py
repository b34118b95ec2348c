"""The scheduling rules that more than one part of taskmgr applies, each in one place.

Pure functions over the models: no I/O, no clock of their own. The planner, the
storages, the service and the maintenance loop call them; ``docs/architecture.md``
lists where each rule is applied. SQL storage writes the same rule as a query
(``storage/sqlalchemy/claim.py``); the stateful test in ``tests/contract`` holds
the two to the same answers.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.definition import OPTION_NAMES
from taskmgr.core.enums import PauseScope
from taskmgr.core.models import (
    MAX_CONCURRENCY_VALUE,
    ExecutionStatus,
    ExecutionTrigger,
    Instance,
    InstanceStatus,
    Job,
    JobDefinition,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.pauses import Pause
from taskmgr.core.triggers import Date, Interval, TriggerSpec
from taskmgr.exceptions import InvalidInputError, InvalidKwargsError

__all__ = [
    "RUN_WHILE_PAUSED",
    "Admission",
    "Liveness",
    "admit",
    "anchor",
    "backfill_frontier",
    "concurrency_value",
    "first_slot",
    "holding_pause",
    "in_effect",
    "is_active_run",
    "manual_admission",
    "next_run",
    "option_changes",
    "resume_slot",
    "resume_slot_at",
    "run_group",
    "same_schedule",
    "shown",
]


def is_active_run(status: ExecutionStatus, queued: bool) -> bool:
    """Whether an execution counts against its job's ``max_instances``.

    A ``running`` one does; so does a ``pending`` one that is not waiting in the
    overlap queue (a manual run or a retry about to start). A queued one waits *for*
    a free run and does not hold one.
    """
    return status is ExecutionStatus.RUNNING or (status is ExecutionStatus.PENDING and not queued)


class Admission(enum.Enum):
    """What happens to a run that wants to start while others are active."""

    RUN = "run"  #: start it now
    QUEUE = "queue"  #: wait, pending, until a run is free
    SKIP = "skip"  #: record it as skipped (a slot) or refuse it (a manual run)


def admit(
    policy: OverlapPolicy,
    *,
    active: int,
    max_instances: int,
    trigger: ExecutionTrigger = ExecutionTrigger.SCHEDULE,
) -> Admission:
    """The overlap rule for a slot of the schedule.

    Below ``max_instances`` active runs, or under ``allow``, it runs. Otherwise
    ``queue`` waits for a free run and ``skip`` skips it, except that a backlog of
    catch-up slots always queues: those slots run one after another, as they would
    have had the scheduler been up, instead of skipping each other.
    """
    if policy is OverlapPolicy.ALLOW or active < max_instances:
        return Admission.RUN
    if policy is OverlapPolicy.QUEUE or trigger is ExecutionTrigger.CATCHUP:
        return Admission.QUEUE
    return Admission.SKIP


def manual_admission(policy: OverlapPolicy, *, force: bool) -> tuple[bool, bool]:
    """How a manual run enters the history: ``(queued, limited)``.

    Under ``queue`` it waits in the overlap queue (``queued``); under ``skip`` the
    storage refuses it while ``max_instances`` runs are active (``limited``, checked
    in the same transaction as the insert, so two callers cannot both pass); under
    ``allow``, or with ``force``, it starts whatever else runs.
    """
    if force:
        return False, False
    return policy is OverlapPolicy.QUEUE, policy is OverlapPolicy.SKIP


# -- concurrency per argument value ------------------------------------------------


def concurrency_value(value: object, *, field: str) -> str:
    """The group of a run of a task with a ``concurrency_key``: the value of that
    argument as canonical JSON (``"acme"``, ``42``, ``true``, ``null``). Equal values
    give equal text, and values of different types differ (``1`` is not ``true``, nor
    ``"1"``). It is computed once, when the run is written, and kept by its retries.

    :raises InvalidKwargsError: the value is not a string, an integer, a boolean or
        None, or its JSON is longer than 255 characters (``field`` names its path).
    """
    if type(value) not in (str, int, bool, type(None)):
        raise InvalidKwargsError(
            "the task's concurrency_key argument must be a string, an integer, a boolean "
            f"or None, got {type(value).__name__}",
            field=field,
        )
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_CONCURRENCY_VALUE:
        raise InvalidKwargsError(
            f"the task's concurrency_key argument is longer than {MAX_CONCURRENCY_VALUE} "
            "characters as JSON",
            field=field,
        )
    return text


def run_group(job: Job, concurrency_value: str | None) -> tuple[int, str | None]:
    """The runs a run of ``job`` counts with against ``max_instances``: those of the
    whole job, or, for a task with a ``concurrency_key``, those with its
    ``concurrency_value`` (a run written before the key was set, value None, counts
    with the others written without one)."""
    return (job.id, concurrency_value if job.concurrency_key is not None else None)


#: The runs that still start while their job is paused: those somebody asked for
#: (a manual run, a deferred task, a backfilled slot). A paused job's own slots, queued
#: overlaps and retries are cancelled when they come due, with the reason.
RUN_WHILE_PAUSED = frozenset(
    {ExecutionTrigger.MANUAL, ExecutionTrigger.DEFERRED, ExecutionTrigger.BACKFILL}
)


# -- the first slot of a schedule --------------------------------------------------

#: The smallest step of a stored instant: ``first_slot(trigger, at - _TICK)`` is the
#: first fire time at or after ``at``.
_TICK = timedelta(microseconds=1)


def anchor(trigger: TriggerSpec, now: datetime) -> TriggerSpec:
    """An interval without a start is anchored at ``now`` when it is stored, so every
    process computes the same grid from then on."""
    return trigger.anchored(now) if isinstance(trigger, Interval) else trigger


def first_slot(trigger: TriggerSpec, now: datetime) -> datetime | None:
    """The first slot of a new schedule: its next fire time after ``now``.

    A one-shot :class:`~taskmgr.Date` already past stays due, so its misfire policy
    decides: it runs once within ``misfire_grace_time``, else it is recorded as
    ``missed`` with the reason. It is never dropped without a row.
    """
    if isinstance(trigger, Date):
        return trigger.at
    following = trigger.next_fire_times(now, 1)
    return following[0] if following else None


def resume_slot(job: Job, now: datetime) -> datetime | None:
    """The next slot of a job that becomes active again (resumed, restored, or
    re-enabled in code) with the schedule it had.

    A recurring schedule goes on from now: slots that fell while the job was paused
    are not run. A one-shot ``Date`` keeps its one slot if it has not been taken yet
    (``next_run_at`` is still set), even when its time passed meanwhile: like one
    created after its time, its misfire policy then decides (run once, or a
    ``missed`` row). A one-shot slot already taken stays taken.
    """
    if isinstance(job.trigger, Date):
        return job.next_run_at
    return first_slot(job.trigger, now)


def resume_slot_at(job: Job, at: datetime) -> datetime | None:
    """The next slot of a job whose pause ended by itself at ``at`` (its ``until``):
    as :func:`resume_slot` for a resume made at that instant, except that a slot at
    exactly ``at`` is the first one, since the pause is over then. Slots after ``at``
    that have already come when the resume is applied are due at once, and the job's
    misfire policy decides them, as for any late slot."""
    if isinstance(job.trigger, Date):
        return job.next_run_at
    return first_slot(job.trigger, at - _TICK)


def in_effect(pause: Pause, now: datetime) -> bool:
    """Whether ``pause`` still holds at ``now``: it has no ``until``, or not yet."""
    return pause.until is None or pause.until > now


def holding_pause(job: Job, pauses: Iterable[Pause]) -> Pause | None:
    """The pause in ``pauses`` (those of queues and of the service in effect) that holds
    ``job``: the service's, else its queue's. A held job starts nothing: the slots of its
    schedule that come meanwhile pass (neither run nor recorded, as while the job itself
    is paused), and its pending runs wait."""
    found = None
    for pause in pauses:
        if pause.scope is PauseScope.SERVICE:
            return pause
        if pause.scope is PauseScope.QUEUE and job.queue is not None and pause.name == job.queue:
            found = pause
    return found


def backfill_frontier(job: Job, now: datetime) -> datetime | None:
    """Where the slots a backfill may create end (exclusive): those from here on are the
    schedule's own, which it records when they come (an active job's next slot; the slot
    a paused job whose ``until`` has passed resumes at). None: every slot up to ``now``
    may be backfilled (a paused job resumes after now; an orphaned job fires nothing)."""
    if job.state is JobState.ACTIVE:
        return job.next_run_at
    if job.state is JobState.PAUSED and job.paused_until is not None and job.paused_until <= now:
        resumed = resume_slot_at(job, job.paused_until)
        return job.paused_until if resumed is None else min(resumed, job.paused_until)
    return None


def next_run(job: Job) -> datetime | None:
    """When ``job`` fires next, as every reader is told (the service's ``Job``, HTTP,
    the CLI, the dashboard, metrics): its stored slot while it is active, None while
    it is paused or orphaned, since it fires nothing then. The stored slot itself is
    kept, for :func:`resume_slot`."""
    return job.next_run_at if job.state is JobState.ACTIVE else None


def shown(job: Job) -> Job:
    """``job`` as the service hands it out: ``next_run_at`` is :func:`next_run`."""
    upcoming = next_run(job)
    if upcoming == job.next_run_at:
        return job
    return job.model_copy(update={"next_run_at": upcoming})


def same_schedule(stored: TriggerSpec, declared: TriggerSpec) -> bool:
    """Whether a schedule declared in code is the stored one. An interval declared
    without a start matches a stored one of the same length, whatever its anchor."""
    if isinstance(stored, Interval) and isinstance(declared, Interval) and declared.start is None:
        return stored.every == declared.every
    return stored == declared


def option_changes(job: Job, definition: JobDefinition) -> dict[str, Any]:
    """The options (and function) of ``definition`` that differ from the stored job,
    as ``update_job`` changes. ``enabled`` is a state, not an option: it is left to
    the caller (pause/resume, or the sync of code-declared jobs)."""
    changes = {
        field: getattr(definition, field)
        for field in OPTION_NAMES
        if field != "enabled" and getattr(definition, field) != getattr(job, field)
    }
    if definition.func != job.func:
        changes["func"] = definition.func
    return changes


# -- liveness ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Liveness:
    """How instances prove they are alive, and when they are presumed dead.

    Every instance refreshes its ``last_heartbeat`` every ``heartbeat_interval``
    seconds. One whose last heartbeat is more than ``heartbeat_timeout`` old (by the
    database's clock) is presumed dead: the reaper, every ``sweep_interval``, marks
    its running executions ``lost``. Rows of instances gone for
    ``instance_retention`` are deleted.

    :raises InvalidInputError: a timing is not a positive number, or the timeout is
        not longer than the interval.
    """

    heartbeat_interval: float
    heartbeat_timeout: float
    sweep_interval: float
    instance_retention: float = 86400.0

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "heartbeat_timeout", "sweep_interval",
                     "instance_retention"):  # fmt: skip
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise InvalidInputError(f"must be a positive number, got {value!r}", field=name)
            object.__setattr__(self, name, float(value))
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise InvalidInputError(
                "must be longer than heartbeat_interval", field="heartbeat_timeout"
            )

    def dead_before(self, now: datetime) -> datetime:
        """Instances whose last heartbeat is older than this are presumed dead."""
        return now - timedelta(seconds=self.heartbeat_timeout)

    def is_live(self, instance: Instance, now: datetime) -> bool:
        """Whether peers count ``instance`` as alive at ``now``."""
        return instance.status is InstanceStatus.RUNNING and (
            instance.last_heartbeat >= self.dead_before(now)
        )

    def may_claim(self, seconds_since_heartbeat: float) -> bool:
        """Whether an instance whose last successful heartbeat is that old may still
        claim: its peers surely see it alive only while the age is under the timeout
        minus one interval (the margin covers a heartbeat in flight). A frozen or
        cut-off instance stops claiming by itself."""
        return seconds_since_heartbeat < self.heartbeat_timeout - self.heartbeat_interval
