"""The business rules of a claim: which due slots run, which are missed or skipped,
which pending executions start. Pure functions over a :class:`ClaimBatch` (and, given
one, the :class:`~taskmgr.dispatch.routing.Budget` of what each dispatcher can take:
the work of a full dispatcher is left due); the storage backend applies the resulting
plan atomically."""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Sequence
from dataclasses import replace
from datetime import datetime

from taskmgr.core.exclusions import excluded_date
from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Job,
    JobState,
    new_execution_id,
)
from taskmgr.core.rules import (
    RUN_WHILE_PAUSED,
    Admission,
    admit,
    first_slot,
    holding_pause,
    run_group,
)
from taskmgr.core.triggers import Cron, Date
from taskmgr.core.windows import MaintenanceWindow, holding_window, skipping_window
from taskmgr.dispatch.routing import Budget
from taskmgr.storage.base import ClaimBatch, ClaimPlan, JobAdvance, NewExecution, PendingDecision

__all__ = ["MAX_CATCHUP_SLOTS", "Planner"]

logger = logging.getLogger("taskmgr.scheduler")

#: Most slots of one job examined in one claim after an outage. Slots past this are
#: summarised on the last ``missed`` row instead of one row each.
MAX_CATCHUP_SLOTS = 1000

#: The runs counted together against ``max_instances`` (:func:`~taskmgr.core.rules.run_group`).
Group = tuple[int, str | None]


class Planner:
    """Plans claims for one owner, given which function names this process can run."""

    def __init__(
        self,
        owner: str,
        functions: Container[str],
        *,
        new_id: Callable[[], str] = new_execution_id,
    ) -> None:
        self.owner = owner
        self.functions = functions
        self.new_id = new_id

    def __call__(self, batch: ClaimBatch) -> ClaimPlan:
        return self.plan(batch)

    def plan(self, batch: ClaimBatch, budget: Budget | None = None) -> ClaimPlan:
        """The plan of one claim; with a ``budget``, no more runs start on each
        dispatcher than it can take (the others stay due, for a later claim)."""
        active = _active_by_group(batch)
        orphans: set[int] = set()
        pending = [
            decision
            for execution in batch.due_pending
            if (decision := self._pending(execution, batch, active, orphans, budget)) is not None
        ]
        advances = []
        for job in batch.due_jobs:
            if job.func not in self.functions:
                orphans.add(job.id)
                logger.error(
                    "job %r is orphaned: function %r is not registered here",
                    job.key,
                    job.func,
                    extra={"taskmgr_job_key": job.key},
                )
                continue
            if job.next_run_at is not None and job.next_run_at > batch.now:
                ahead = self._ahead(job, batch, active, budget)  # within the look-ahead
                if ahead is not None:
                    advances.append(ahead)
                continue
            if batch.pauses and holding_pause(job, batch.pauses) is not None:
                passed = self._pass(job, batch.now)
                if passed is not None:
                    advances.append(passed)
                continue
            if batch.windows and _held(job, batch):
                continue  # a defer window holds its slots until it closes
            if budget is not None and not budget.has_room(job):
                continue  # its dispatcher is full: the job stays due
            advance = self._advance(job, batch.now, active, batch.windows)
            if budget is not None:
                budget.take(
                    job, sum(r.status is ExecutionStatus.RUNNING for r in advance.executions)
                )
            advances.append(advance)
        return ClaimPlan(advances=advances, pending=pending, orphan_job_ids=sorted(orphans))

    # -- pending executions (manual runs, retries, queued overlaps) ----------------

    def _pending(
        self,
        execution: Execution,
        batch: ClaimBatch,
        active: dict[Group, int],
        orphans: set[int],
        budget: Budget | None = None,
    ) -> PendingDecision | None:
        job = batch.jobs.get(execution.job_id)
        if job is None:
            return self._cancel(execution, "the job was deleted")
        if job.func not in self.functions:
            orphans.add(job.id)
            return self._cancel(execution, f"function {job.func!r} is not registered")
        if job.state is JobState.ORPHANED:
            return self._cancel(execution, "the job is orphaned")
        if job.state is JobState.PAUSED and execution.trigger not in RUN_WHILE_PAUSED:
            return self._cancel(execution, "the job is paused")
        if budget is not None and not budget.has_room(job):
            return None  # its dispatcher is full: it keeps waiting
        if execution.queued:
            group = run_group(job, execution.concurrency_value)
            if active.get(group, 0) >= job.max_instances:
                return None  # keeps waiting for a free run (of its group)
            active[group] = active.get(group, 0) + 1
        if budget is not None:
            budget.take(job)
        return PendingDecision(execution.id, ExecutionStatus.RUNNING)

    @staticmethod
    def _cancel(execution: Execution, reason: str) -> PendingDecision:
        return PendingDecision(execution.id, ExecutionStatus.CANCELLED, error_message=reason)

    # -- due slots -----------------------------------------------------------------

    def _ahead(
        self, job: Job, batch: ClaimBatch, active: dict[Group, int], budget: Budget | None
    ) -> JobAdvance | None:
        """A job whose next slot comes after ``now`` but within the claim's look-ahead:
        that one slot is claimed now (``running``, to be started at its time by the
        loop's timer) when it would run as things stand: not held by a pause, room on
        its dispatcher, admitted by its overlap policy, planned as one running row.
        Otherwise the job is left as it is, and the claim at the slot's time judges it
        as always (a run still active now may well end before then)."""
        slot = job.next_run_at
        assert slot is not None
        if batch.pauses and holding_pause(job, batch.pauses) is not None:
            return None
        if budget is not None and not budget.has_room(job):
            return None
        group = run_group(job, None)
        used = active.get(group, 0)
        admission = admit(
            job.overlap_policy,
            active=used,
            max_instances=job.max_instances,
            trigger=ExecutionTrigger.SCHEDULE,
        )
        if admission is not Admission.RUN:
            return None
        advance = self._advance(job, slot, active, batch.windows)  # as if at the slot's time
        if [row.status for row in advance.executions] != [ExecutionStatus.RUNNING]:
            active[group] = used
            return None
        if budget is not None:
            budget.take(job, 1)
        # created and handed to this owner now; started at the slot's time
        rows = [
            replace(r, created_at=batch.now, dispatched_at=batch.now) for r in advance.executions
        ]
        return replace(advance, executions=rows)

    @staticmethod
    def _pass(job: Job, now: datetime) -> JobAdvance | None:
        """A due job held by a pause of its queue or of the service: its slots up to
        ``now`` pass, neither run nor recorded (as while the job itself is paused), and
        it goes on from its first slot after ``now``. A one-shot job keeps its slot
        (None): when the pause ends, its misfire policy decides."""
        if isinstance(job.trigger, Date):
            return None
        assert job.next_run_at is not None  # due jobs have one
        return JobAdvance(
            job_id=job.id,
            expected_next_run_at=job.next_run_at,
            next_run_at=first_slot(job.trigger, now),
            last_run_at=None,
        )

    def _advance(
        self,
        job: Job,
        now: datetime,
        active: dict[Group, int],
        windows: Sequence[MaintenanceWindow] = (),
    ) -> JobAdvance:
        assert job.next_run_at is not None  # due jobs have one
        slots, next_run_at, truncated = due_slots(job, now)
        if windows:
            slots, next_run_at, truncated = _until_held(
                job, slots, next_run_at, truncated, windows, now
            )
        blocked = _blocked(job, slots, windows)
        runs = self._runs(job, [slot for slot in slots if slot not in blocked], now)
        trigger = ExecutionTrigger.SCHEDULE if len(slots) == 1 else ExecutionTrigger.CATCHUP
        rows: list[NewExecution] = []
        last_run_at = None
        for slot in slots:
            why = blocked.get(slot)  # a maintenance window, an exclusion date
            if why is not None:
                rows.append(self._final(job, slot, now, ExecutionStatus.SKIPPED, why))
                continue
            reason = runs.get(slot)
            if reason is not None:
                rows.append(self._final(job, slot, now, ExecutionStatus.MISSED, reason))
                continue
            group = run_group(job, None)  # a slot of a schedule has no argument value
            used = active.get(group, 0)
            admission = admit(
                job.overlap_policy, active=used, max_instances=job.max_instances, trigger=trigger
            )
            if admission is Admission.RUN:
                active[group] = used + 1
                last_run_at = slot
                rows.append(self._row(job, slot, now, trigger, ExecutionStatus.RUNNING))
            elif admission is Admission.QUEUE:
                rows.append(
                    self._row(job, slot, now, trigger, ExecutionStatus.PENDING, queued=True)
                )
            else:
                rows.append(
                    self._final(
                        job,
                        slot,
                        now,
                        ExecutionStatus.SKIPPED,
                        f"{used} run(s) still active (max_instances={job.max_instances})",
                    )
                )
        if truncated and rows:
            last = rows[-1]
            note = (
                f"; more than {MAX_CATCHUP_SLOTS} slots were due: "
                f"slots after {last.scheduled_for.isoformat()} up to {now.isoformat()} "
                "were missed without a row each"
            )
            rows[-1] = _with_message(last, (last.error_message or "missed") + note)
            logger.warning(
                "job %r: more than %d slots were due at once",
                job.key,
                MAX_CATCHUP_SLOTS,
                extra={"taskmgr_job_key": job.key},
            )
        return JobAdvance(
            job_id=job.id,
            expected_next_run_at=job.next_run_at,
            next_run_at=next_run_at,
            last_run_at=last_run_at,
            executions=rows,
        )

    @staticmethod
    def _runs(job: Job, slots: list[datetime], now: datetime) -> dict[datetime, str]:
        """Slots that must NOT run, with the reason (misfire grace and coalescing)."""
        grace = job.misfire_grace_time
        late = {
            slot: (
                f"started {(now - slot).total_seconds():.3f}s late, beyond the misfire "
                f"grace time of {grace:g}s"
            )
            for slot in slots
            if grace is not None and (now - slot).total_seconds() > grace
        }
        if job.coalesce:
            in_grace = [slot for slot in slots if slot not in late]
            if in_grace:
                kept = in_grace[-1]
                for slot in in_grace[:-1]:
                    late[slot] = f"coalesced into the run of {kept.isoformat()}"
        return late

    def _row(
        self,
        job: Job,
        slot: datetime,
        now: datetime,
        trigger: ExecutionTrigger,
        status: ExecutionStatus,
        *,
        queued: bool = False,
    ) -> NewExecution:
        running = status is ExecutionStatus.RUNNING
        return NewExecution(
            id=self.new_id(),
            job_id=job.id,
            job_key=job.key,
            scheduled_for=slot,
            attempt=1,
            trigger=trigger,
            status=status,
            due_at=slot,
            created_at=now,
            kwargs=job.kwargs,
            queued=queued,
            owner=self.owner if running else None,
            dispatched_at=now if running else None,
        )

    def _final(
        self, job: Job, slot: datetime, now: datetime, status: ExecutionStatus, message: str
    ) -> NewExecution:
        return NewExecution(
            id=self.new_id(),
            job_id=job.id,
            job_key=job.key,
            scheduled_for=slot,
            attempt=1,
            trigger=ExecutionTrigger.SCHEDULE,
            status=status,
            due_at=slot,
            created_at=now,
            kwargs=job.kwargs,
            completed_at=now,
            error_message=message,
        )


def _active_by_group(batch: ClaimBatch) -> dict[Group, int]:
    """The batch's active runs per :func:`~taskmgr.core.rules.run_group`: per job, or
    per argument value for the jobs that have a ``concurrency_key``."""
    active: dict[Group, int] = {
        (job_id, None): count
        for job_id, count in batch.active.items()
        if (job := batch.jobs.get(job_id)) is None or job.concurrency_key is None
    }
    active.update(batch.active_groups)
    return active


def due_slots(job: Job, now: datetime) -> tuple[list[datetime], datetime | None, bool]:
    """The job's slots in ``[next_run_at, now]``, its next run after ``now``, and whether
    the slot list was cut at :data:`MAX_CATCHUP_SLOTS`."""
    assert job.next_run_at is not None
    slots = [job.next_run_at]
    # Usually only one slot is due: ask for two fire times first (the cost of a call
    # grows with n), then more at a time while a backlog is being walked.
    step = 2
    while len(slots) < MAX_CATCHUP_SLOTS:
        batch = job.trigger.next_fire_times(slots[-1], min(step, MAX_CATCHUP_SLOTS - len(slots)))
        step = min(64, step * 4)
        for fire in batch:
            if fire > now:
                return slots, fire, False
            slots.append(fire)
        if not batch:
            return slots, None, False
    following = job.trigger.next_fire_times(now, 1)
    return slots, following[0] if following else None, True


def _with_message(row: NewExecution, message: str) -> NewExecution:
    return replace(row, error_message=message)


def _held(job: Job, batch: ClaimBatch) -> bool:
    """Whether a ``defer`` window still open holds the job's next slot."""
    slot = job.next_run_at
    return slot is not None and holding_window(job.key, slot, batch.windows, batch.now) is not None


def _until_held(
    job: Job,
    slots: list[datetime],
    next_run_at: datetime | None,
    truncated: bool,
    windows: Sequence[MaintenanceWindow],
    now: datetime,
) -> tuple[list[datetime], datetime | None, bool]:
    """The due slots cut before the first one a ``defer`` window still open at ``now``
    holds: that one becomes the job's next slot, and it and those after it wait until
    the window closes (then the misfire policy decides them)."""
    for index, slot in enumerate(slots):
        if holding_window(job.key, slot, windows, now) is not None:
            return slots[:index], slot, False
    return slots, next_run_at, truncated


def _blocked(
    job: Job, slots: list[datetime], windows: Sequence[MaintenanceWindow]
) -> dict[datetime, str]:
    """The slots recorded ``skipped`` instead of run, with the reason: inside a ``skip``
    window that covers the job, or on one of its exclusion dates (in its trigger's time
    zone)."""
    if not windows and not job.exclude_dates:
        return {}
    zone = job.trigger.timezone if isinstance(job.trigger, Cron) else "UTC"
    blocked: dict[datetime, str] = {}
    for slot in slots:
        window = skipping_window(job.key, slot, windows) if windows else None
        if window is not None:
            blocked[slot] = window.reason_text()
        elif (day := excluded_date(job.exclude_dates, zone, slot)) is not None:
            blocked[slot] = f"excluded date {day.isoformat()}"
    return blocked
