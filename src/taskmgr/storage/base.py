"""The storage port: what every backend must do, and what it guarantees.

The docstrings of :class:`Storage` are the contract; ``tests/contract/`` runs the same
suite against every backend. Backends hold no business rules: when a slot is
missed, skipped or retried is decided by the caller (the scheduler's planner) and
handed to the backend as plain data. A backend only makes each call atomic and
durable, and makes the compare-and-set claims safe across processes.

All datetimes given to and returned by a backend are timezone-aware UTC.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Instance,
    InstanceStatus,
    Job,
    JobDefinition,
    JobSource,
    JobState,
)

__all__ = [
    "ClaimBatch",
    "ClaimPlan",
    "Claimed",
    "ExecutionFilter",
    "HistorySummary",
    "JobAdvance",
    "NewExecution",
    "Outcome",
    "PendingDecision",
    "Storage",
]

#: Job fields that ``Storage.update_job`` accepts.
UPDATABLE_JOB_FIELDS = frozenset(
    {
        "func",
        "trigger",
        "names",
        "description",
        "kwargs",
        "max_instances",
        "overlap_policy",
        "misfire_grace_time",
        "coalesce",
        "max_retries",
        "retry_backoff",
        "timeout",
        "queue",
        "state",
        "source",
        "fingerprint",
        "next_run_at",
    }
)


@dataclass(frozen=True, slots=True)
class NewExecution:
    """An execution row to insert. ``id`` is chosen by the caller (a UUID string)."""

    id: str
    job_id: int
    job_key: str
    scheduled_for: datetime
    attempt: int
    trigger: ExecutionTrigger
    status: ExecutionStatus
    due_at: datetime
    created_at: datetime
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queued: bool = False
    owner: str | None = None
    actor: str | None = None
    dispatched_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class JobAdvance:
    """Move a due job's ``next_run_at`` from ``expected_next_run_at`` to ``next_run_at``
    (compare-and-set) and, only if that wins, insert ``executions``."""

    job_id: int
    expected_next_run_at: datetime
    next_run_at: datetime | None
    last_run_at: datetime | None
    executions: Sequence[NewExecution] = ()


@dataclass(frozen=True, slots=True)
class PendingDecision:
    """Move a ``pending`` execution to ``status`` (``running`` to start it, or a final
    status such as ``cancelled``/``skipped``), only if it is still pending."""

    execution_id: str
    status: ExecutionStatus
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    """What the planner sees inside the claim transaction."""

    now: datetime
    #: Active jobs with ``next_run_at <= now``, earliest first (at most ``limit``).
    due_jobs: Sequence[Job]
    #: Pending executions with ``due_at <= now``, earliest first (at most ``limit``).
    due_pending: Sequence[Execution]
    #: Every job referenced by ``due_jobs`` or ``due_pending`` that still exists, by id.
    jobs: Mapping[int, Job]
    #: Executions counted against ``max_instances`` (running, plus pending that are not
    #: queued), per job id in ``jobs``.
    active: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class ClaimPlan:
    advances: Sequence[JobAdvance] = ()
    pending: Sequence[PendingDecision] = ()
    #: Jobs to mark ``orphaned`` (their function is not registered).
    orphan_job_ids: Sequence[int] = ()


@dataclass(frozen=True, slots=True)
class Claimed:
    """An execution this owner now runs, with its job as it was when claimed."""

    execution: Execution
    job: Job


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of a running execution, written only if ``owner`` still owns it."""

    execution_id: str
    owner: str
    status: ExecutionStatus
    started_at: datetime | None
    completed_at: datetime
    duration_ms: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    result_summary: Any = None
    #: The next attempt, inserted in the same transaction when the outcome is written.
    retry: NewExecution | None = None


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    job_key: str | None = None
    statuses: Sequence[ExecutionStatus] = ()
    since: datetime | None = None
    until: datetime | None = None
    #: Only executions whose ``owner`` is this instance id.
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class HistorySummary:
    """What the stored history holds, aggregated (see ``Storage.history_summary``)."""

    #: Number of executions per ``(job_key, status)``; absent pairs have none.
    counts: Mapping[tuple[str, ExecutionStatus], int] = field(default_factory=dict)
    #: The latest ``completed_at`` of a successful execution, per job key.
    last_success: Mapping[str, datetime] = field(default_factory=dict)


Planner = Callable[[ClaimBatch], ClaimPlan]


def _nothing() -> None:
    return None


class Storage(ABC):
    """Durable state of jobs, executions and instances.

    Implementations must be safe to call from several threads at once. Every method
    is atomic: it either applies whole or raises and leaves nothing half-written.
    Driver errors are raised as :class:`~taskmgr.exceptions.StorageError` with the
    driver error chained.
    """

    # -- lifecycle -----------------------------------------------------------

    @abstractmethod
    def open(self) -> None:
        """Connect, and create the schema when the database is empty. Idempotent."""

    @abstractmethod
    def close(self) -> None:
        """Release what ``open`` acquired. Resources passed in by the caller (an engine)
        are left open. Idempotent."""

    # -- jobs ----------------------------------------------------------------

    @abstractmethod
    def add_job(
        self,
        definition: JobDefinition,
        *,
        source: JobSource,
        state: JobState,
        next_run_at: datetime | None,
        fingerprint: str | None,
        now: datetime,
    ) -> Job:
        """Insert a job with ``version`` 1.

        :raises JobExistsError: a job with ``definition.key`` exists (nothing is written).
        """

    @abstractmethod
    def get_job(self, key: str) -> Job:
        """:raises JobNotFoundError: no job has this key."""

    @abstractmethod
    def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        source: JobSource | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs ordered by key, optionally filtered by state and source, starting after
        ``after_key`` (keyset pagination)."""

    @abstractmethod
    def update_job(
        self,
        key: str,
        changes: Mapping[str, Any],
        *,
        now: datetime,
        expected_version: int | None = None,
    ) -> Job:
        """Apply ``changes`` (keys from ``UPDATABLE_JOB_FIELDS``), increment ``version``
        and set ``updated_at``, all at once.

        :raises JobNotFoundError: no job has this key.
        :raises VersionConflictError: ``expected_version`` is given and differs.
        """

    @abstractmethod
    def delete_job(self, key: str, *, now: datetime) -> None:
        """Delete the job and cancel its pending executions (status ``cancelled``).
        Its finished and running executions are kept as history.

        :raises JobNotFoundError: no job has this key.
        """

    # -- scheduling ------------------------------------------------------------

    def after_fork(self) -> None:
        """Make a handle inherited by a forked child process usable in the child (a
        Celery prefork worker): connections and locks copied from the parent are
        dropped, never used or closed on the parent's behalf. Data is unaffected. The
        default does nothing."""
        return None

    def database_now(self) -> datetime:
        """The database's current time (UTC). Liveness and due-ness are judged by it,
        so a host whose clock is skewed neither fires early nor declares a live peer
        dead. Backends without a server of their own return the host's clock."""
        return datetime.now(UTC)

    def schema_current(self) -> bool | None:
        """Whether the database schema is the one this version of taskmgr expects;
        None for backends without a schema."""
        return None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from any thread, possibly spuriously) soon after any
        process adds or changes a job or adds a pending execution, so instances act
        well before their next poll. Returns a function that unsubscribes. The default
        delivers nothing: polling is always the fallback."""
        return _nothing

    @abstractmethod
    def claim(self, *, now: datetime, owner: str, limit: int, planner: Planner) -> list[Claimed]:
        """Claim due work for ``owner`` in one short transaction.

        If ``owner`` has an instance row that is not ``running`` (its peers declared
        it dead, or it stopped), nothing is read or claimed and ``[]`` is returned: a
        frozen process that wakes up cannot start work it no longer owns.

        Reads the due jobs and due pending executions (see :class:`ClaimBatch`;
        rows another process is claiming at the same time may be skipped), calls
        ``planner`` once with them, then applies its plan:

        * each :class:`JobAdvance` is a compare-and-set on the job's ``next_run_at``
          (also setting ``last_run_at`` when given); only if it wins are its
          executions inserted. Executions inserted as ``running`` get ``owner``.
        * each :class:`PendingDecision` applies only if the execution is still
          pending; a start sets ``owner`` and ``dispatched_at = now``.
        * ``orphan_job_ids`` are marked ``orphaned``.

        Returns the executions that ``owner`` must now run (inserted or moved to
        ``running``), with their jobs. The unique key ``(job_id, scheduled_for,
        attempt)`` guarantees that a slot is never inserted twice, whatever the planner
        returns; a conflicting insert makes its advance lose as a whole.
        """

    def take_next_due_hint(self) -> tuple[bool, datetime | None]:
        """``(True, next_due_at())`` as read inside this thread's last :meth:`claim`
        transaction, handed out once, so the scheduler need not open another
        transaction to learn how long to sleep; ``(False, None)`` when no such value
        is waiting. Backends that do not record one keep this default."""
        return False, None

    @abstractmethod
    def next_due_at(self) -> datetime | None:
        """The earliest ``next_run_at`` of an active job or ``due_at`` of a pending,
        non-queued execution; None when there is none."""

    # -- executions ----------------------------------------------------------------

    @abstractmethod
    def add_execution(self, new: NewExecution, *, max_active: int | None = None) -> Execution:
        """Insert one execution (a manual run or a retry).

        With ``max_active``, the insert happens only if the job has fewer active
        executions (running, or pending and not queued) than that, checked and
        written atomically.

        :raises JobNotFoundError: the job does not exist.
        :raises JobBusyError: ``max_active`` is reached (nothing is written).
        :raises ConflictError: an execution with the same ``(job_id, scheduled_for,
            attempt)`` exists (nothing is written).
        """

    @abstractmethod
    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Write the end of running executions, fenced: an outcome applies only while
        the execution is still ``running`` and owned by ``outcome.owner``; its
        ``retry`` is inserted only then. Returns, per outcome, whether it applied.
        A rejected outcome changes nothing."""

    @abstractmethod
    def take_over(
        self,
        execution_id: str,
        *,
        from_owner: str,
        to_owner: str,
        attempt: int,
        now: datetime,
        celery_task_id: str | None = None,
    ) -> Claimed | None:
        """Hand a ``running`` execution from the instance that claimed it to the one
        that runs it (a Celery worker), in one compare-and-set.

        Applies only while the execution is ``running``, owned by ``from_owner`` and at
        ``attempt``, and while ``to_owner`` has no instance row or a ``running`` one
        (a worker declared dead takes nothing over). It then sets ``owner =
        to_owner``, ``started_at = now`` and ``celery_task_id``, and returns the
        execution with its job. Otherwise nothing changes and None is returned: the
        execution already ended, was taken over by another delivery, or was released.

        If the execution's job was deleted meanwhile, nothing could run it: it becomes
        ``cancelled`` (``completed_at = now``) and None is returned.
        """

    @abstractmethod
    def release(self, execution_id: str, *, owner: str, due_at: datetime) -> bool:
        """Put a ``running`` execution owned by ``owner`` back to ``pending`` (owner,
        ``dispatched_at`` and ``started_at`` cleared, ``due_at`` set), so that any
        instance claims it again when due: for work claimed but never handed over
        (the broker was unreachable, or the instance is stopping). Returns whether it
        applied; an execution taken over, ended or owned by someone else is left as it
        is."""

    @abstractmethod
    def get_execution(self, execution_id: str) -> Execution:
        """:raises ExecutionNotFoundError: no execution has this id."""

    @abstractmethod
    def list_executions(
        self,
        filters: ExecutionFilter,
        *,
        limit: int,
        before: tuple[datetime, str] | None = None,
    ) -> list[Execution]:
        """Executions newest first, ordered by ``(created_at, id)`` descending, matching
        ``filters`` (``since``/``until`` bound ``scheduled_for``, inclusive; ``owner``
        matches exactly), strictly
        after the keyset position ``before`` = ``(created_at, id)`` of the last row seen."""

    @abstractmethod
    def delete_finished_executions(
        self,
        *,
        completed_before: datetime,
        limit: int,
        statuses: Sequence[ExecutionStatus] | None = None,
    ) -> int:
        """Delete at most ``limit`` executions in a final status completed before the
        cutoff, oldest first, in one short transaction. Returns how many were deleted.

        With ``statuses``, only executions in one of those statuses are deleted (final
        statuses only: pending and running executions are never deleted, whatever is
        asked); an empty sequence deletes nothing."""

    @abstractmethod
    def history_summary(self) -> HistorySummary:
        """Counts of the stored executions by job key and status, and each job's latest
        ``completed_at`` of a ``success``, read in one statement each (for metrics at
        scrape time: the same answer from every process)."""

    # -- instances -----------------------------------------------------------------

    @abstractmethod
    def register_instance(self, instance: Instance) -> None:
        """Insert (or replace) the instance row."""

    @abstractmethod
    def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        """Set ``last_heartbeat``. Returns False when the instance is no longer
        ``running`` (it was declared dead or stopped), in which case nothing changes."""

    @abstractmethod
    def set_instance_status(self, instance_id: str, status: InstanceStatus) -> None:
        """Set the instance's status (e.g. ``stopped`` on clean shutdown)."""

    @abstractmethod
    def list_instances(self) -> list[Instance]:
        """All instance rows, newest first."""

    @abstractmethod
    def reap(self, *, heartbeat_before: datetime, now: datetime) -> list[Claimed] | None:
        """Mark ``running`` instances whose last heartbeat is older than the cutoff as
        ``dead``, and every ``running`` execution owned by an instance that is not
        ``running`` (dead or stopped) as ``lost`` (``completed_at = now``), in one
        transaction. Returns the executions it marked whose job still exists, with
        their jobs.

        At most one reaper runs at a time across all processes: when another holds
        the reaper's lock, this returns None at once and changes nothing."""

    @abstractmethod
    def delete_instances(self, *, last_heartbeat_before: datetime) -> int:
        """Delete the rows of instances that are not ``running`` and whose last
        heartbeat is older than the cutoff, unless an execution is still ``running``
        under them. Returns how many were deleted."""
