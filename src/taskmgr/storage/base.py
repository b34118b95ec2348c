"""The storage port: what every backend must do, and what it guarantees.

The docstrings of :class:`Storage` are the contract; ``tests/contract/`` runs the same
suite against every backend. Backends hold no business rules: when a slot is
missed, skipped or retried is decided by the caller (the scheduler's planner) and
handed to the backend as plain data. A backend only makes each call atomic and
durable, and makes the compare-and-set claims safe across processes.

All datetimes given to and returned by a backend are timezone-aware UTC.

Where a listing's sort key ties, each method says how the tie is broken, so every
backend returns the same rows in the same order (the one exception, on PostgreSQL, is
which of the rows due at one instant a claim reads first: see :class:`ClaimBatch`).
Text is compared by code point (binary), whatever the database's collation;
execution ids are UUID strings, which every collation orders the same way.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from taskmgr.core.failures import FailureGroup
from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    Job,
    JobDefinition,
    JobQueue,
    JobSource,
    JobState,
)
from taskmgr.storage.audit_log import AuditLog
from taskmgr.storage.incident_store import IncidentStore
from taskmgr.storage.instance_registry import InstanceRegistry
from taskmgr.storage.pause_store import PauseStore
from taskmgr.storage.records import (
    AuditFilter,
    AuditRecord,
    ClaimBatch,
    Claimed,
    ClaimPlan,
    ExecutionFilter,
    FailureFilter,
    HistorySummary,
    JobAdvance,
    NewExecution,
    Outcome,
    PendingDecision,
)
from taskmgr.storage.task_handover import TaskHandOver
from taskmgr.storage.window_store import WindowStore

__all__ = [
    "AuditFilter",
    "AuditRecord",
    "ClaimBatch",
    "ClaimPlan",
    "Claimed",
    "ExecutionFilter",
    "FailureFilter",
    "HistorySummary",
    "JobAdvance",
    "NewExecution",
    "Outcome",
    "PendingDecision",
    "Planner",
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
        "concurrency_key",
        "misfire_grace_time",
        "coalesce",
        "max_retries",
        "retry_backoff",
        "timeout",
        "queue",
        "retention",
        "dispatch",
        "alert_late_after",
        "alert_failures",
        "alert_max_runtime",
        "alert_no_success_within",
        "exclude_dates",
        "state",
        "source",
        "fingerprint",
        "next_run_at",
        "paused_by",
        "paused_reason",
        "paused_at",
        "paused_until",
    }
)


Planner = Callable[[ClaimBatch], ClaimPlan]


def _nothing() -> None:
    return None


class Storage(AuditLog, InstanceRegistry, TaskHandOver, PauseStore, IncidentStore, WindowStore):
    """Durable state of jobs, executions and instances.

    Implementations must be safe to call from several threads at once. Every method
    is atomic: it either applies whole or raises and leaves nothing half-written.
    Driver errors are raised as :class:`~taskmgr.exceptions.StorageError` with the
    driver error chained.

    Bad input raises :class:`~taskmgr.exceptions.InvalidInputError` (a subclass naming
    the field) before anything is written, and before anything is looked up except
    where the check needs the stored row (``update_job`` checks its changes once the
    job is found and its version matches): a naive datetime, a value that is not one
    of its enum's (a member or its value is accepted), a negative ``limit``, a job
    change or a new execution that its model refuses, an outcome whose status is not
    final. Other errors of a method come in the order its docstring lists them.

    **The audit log.** A method that takes ``audit`` (an :class:`AuditRecord`) writes
    one :class:`~taskmgr.core.audit.AuditEntry` in the same transaction as its change:
    the entry exists if and only if the change does. A call that changes nothing (it
    raises, or finds nothing to change) records nothing. The entry gets the next id
    (ids only grow), the record's ``at``, ``actor``, ``source`` and ``action``, the
    job key and execution id of what changed, and the record's ``details`` with the
    backend's own over them (see each method). ``audit=None`` records nothing.
    """

    # -- lifecycle -----------------------------------------------------------

    @abstractmethod
    def open(self) -> None:
        """Connect, and create the schema when the database is empty. Idempotent."""

    @abstractmethod
    def close(self) -> None:
        """Release what ``open`` acquired. Resources passed in by the caller (an engine)
        are left open. Idempotent."""

    def describe(self) -> dict[str, Any]:
        """What this storage is, to show an operator (``taskmgr config show``): its kind
        under ``storage`` and, for a database, ``database_url`` (its secrets redacted),
        ``table_prefix``, ``db_schema`` and ``auto_migrate``. Never a secret, no I/O.
        The default names the class."""
        kind = type(self)
        return {"storage": f"{kind.__module__}:{kind.__qualname__}"}

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
        audit: AuditRecord | None = None,
    ) -> Job:
        """Insert a job with ``version`` 1 and a new ``id``: a positive integer that no
        job holds and no stored execution refers to (so a new job never inherits the
        history of a deleted one). ``audit``: its entry's ``details["job"]`` is the new
        job (:func:`~taskmgr.storage.auditing.job_snapshot`).

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
        text: str | None = None,
        with_retention: bool = False,
    ) -> list[Job]:
        """Jobs ordered by key (code point order), optionally filtered by state and
        source, starting after ``after_key`` in that order (keyset pagination); with
        ``with_retention``, only jobs that have a ``retention`` of their own.

        With ``text`` (at most 200 characters, no NUL), only jobs whose key, description
        or one of whose display names contains it, ASCII letters compared without
        case (other characters exactly, whatever the database's locale), filtered by
        the database: ``limit`` counts matching jobs."""

    @abstractmethod
    def update_job(
        self,
        key: str,
        changes: Mapping[str, Any],
        *,
        now: datetime,
        expected_version: int | None = None,
        audit: AuditRecord | None = None,
    ) -> Job:
        """Apply ``changes`` (keys from ``UPDATABLE_JOB_FIELDS``), increment ``version``
        and set ``updated_at``, all at once. ``audit``: its entry's ``details["changes"]``
        holds only the fields that changed, each ``{"before": ..., "after": ...}``
        (:func:`~taskmgr.storage.auditing.job_changes`), read from the row the update
        applied to; an update that changes no field is recorded all the same.

        :raises JobNotFoundError: no job has this key.
        :raises VersionConflictError: ``expected_version`` is given and differs.
        :raises InvalidInputError: a change is refused (an unknown field, or a value
            the job's definition or model refuses).
        """

    @abstractmethod
    def delete_job(self, key: str, *, now: datetime, audit: AuditRecord | None = None) -> None:
        """Delete the job and cancel its pending executions (status ``cancelled``).
        Its finished and running executions are kept as history. ``audit``: its
        entry's ``details["job"]`` is the job as it was.

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
    def claim(
        self,
        *,
        now: datetime,
        owner: str,
        limit: int,
        planner: Planner,
        cap_at_database_now: bool = False,
        lookahead: float = 0.0,
    ) -> list[Claimed]:
        """Claim due work for ``owner`` in one short transaction.

        With a ``lookahead`` (seconds, >= 0), the active jobs due up to ``now +
        lookahead`` are read (:attr:`ClaimBatch.horizon`), so that a slot can be claimed
        a little before its time and started at it; pending executions, pauses and the
        times written are still judged at ``now``.

        With ``cap_at_database_now``, the claim reads the database's clock first
        (:meth:`database_now`, inside the transaction where the database has a server)
        and uses the earlier of it and ``now`` as its ``now`` throughout: what is due,
        :attr:`ClaimBatch.now`, the times written. A caller whose clock runs ahead of
        the database's then starts nothing, and has nothing marked missed, before its
        time by the database's clock.

        If ``owner`` has an instance row that is not ``running`` (its peers declared
        it dead, or it stopped), nothing is read or claimed and ``[]`` is returned: a
        frozen process that wakes up cannot start work it no longer owns.

        First, at most 100 paused jobs whose ``paused_until`` has come are resumed
        (:func:`~taskmgr.storage.pausing.resumed_at_until`) and the pauses of queues and
        of the service whose ``until`` has come are removed, each once however many
        claims race, with an audit entry by ``taskmgr`` (source ``schedule``); the
        pauses left are :attr:`ClaimBatch.pauses`. The stored maintenance windows are
        :attr:`ClaimBatch.windows` (read only while one is stored), and the jobs whose
        next slot lies inside a ``defer`` window open at ``now`` that covers them are
        not read as due. Then it reads the due jobs and due
        pending executions (see :class:`ClaimBatch` for their order and what pauses
        leave out; rows another process is claiming at the same time may be
        skipped), calls ``planner`` once with them, then applies its plan, in order:

        * each :class:`JobAdvance` is a compare-and-set on the job's ``next_run_at``
          (also setting ``last_run_at`` when given); only if it wins are its
          executions inserted. Executions inserted as ``running`` get ``owner``.
          Advances are decided in plan order, each on the job as the ones before it
          left it.
        * each :class:`PendingDecision` applies only if the execution is still
          pending; a start sets ``owner`` and ``dispatched_at = now``.
        * ``orphan_job_ids`` are marked ``orphaned``.

        The plan is checked whole before any of it is applied, whichever
        compare-and-sets would win: an enum given as its value is taken as the member,
        datetimes must be aware, and a decision must move its execution on (to
        ``running`` or a final status); otherwise the claim raises
        :class:`~taskmgr.exceptions.InvalidInputError` and writes nothing.

        Returns the executions that ``owner`` must now run, with their jobs: those
        the advances inserted as ``running`` (in plan order), then the pending ones
        started (in decision order). The unique key ``(job_id, scheduled_for,
        attempt)`` guarantees that a slot is never inserted twice, whatever the planner
        returns; an execution whose slot or id is already stored (or appears twice in
        the advance) makes its advance lose as a whole, and leaves its job as it was for
        the advances after it.
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
        non-queued execution that no stored pause holds, ``paused_until`` of a job or
        ``until`` of a stored pause; None when there is none. A job whose next slot a
        ``defer`` window covering it holds counts when that window closes
        (:func:`~taskmgr.core.windows.due_after_holds`)."""

    def next_claim_at(self, *, now: datetime) -> datetime | None:
        """When a :meth:`claim` may find work, read without claiming (what the
        scheduler's idle polls ask): :meth:`next_due_at`, or ``now`` while a queued
        run due by ``now`` waits (it may start as soon as the run ahead of it ends,
        which no time tells). Never later than a claim would find work; earlier only
        costs a claim that finds nothing. Read-only: it locks and writes nothing.
        Backends without such a read keep this default, ``now``: the claim polls."""
        return now

    # -- executions ----------------------------------------------------------------

    @abstractmethod
    def add_execution(
        self,
        new: NewExecution,
        *,
        max_active: int | None = None,
        audit: AuditRecord | None = None,
        job_version: int | None = None,
    ) -> Execution:
        """Insert one execution (a manual run or a retry). ``audit`` names its job key
        and id.

        With ``max_active``, the insert happens only if the job has fewer active
        executions (:func:`taskmgr.core.rules.is_active_run`: running, or pending and
        not queued) than that, checked and written atomically. With ``job_version``,
        only while the job is at that version (the one ``new`` was prepared from).

        :raises InvalidInputError: the model refuses ``new``.
        :raises JobNotFoundError: the job does not exist (without ``job_version``).
        :raises VersionConflictError: with ``job_version``, the job is at another
            version or gone (nothing is written).
        :raises JobBusyError: ``max_active`` is reached (nothing is written).
        :raises ConflictError: an execution with the same id or the same ``(job_id,
            scheduled_for, attempt)`` exists (nothing is written).
        """

    @abstractmethod
    def defer_executions(
        self,
        news: Sequence[NewExecution],
        *,
        transaction: object | None = None,
        on_commit: Callable[[], None] | None = None,
        job_versions: Mapping[int, int] | None = None,
    ) -> list[Execution]:
        """Insert deferred runs, all in one transaction: all of them, or none.

        With ``job_versions`` (job id to the ``version`` the runs were prepared from),
        nothing is written unless each of those jobs is still at that version, checked
        in the same transaction: a caller may prepare runs from a job it read earlier.

        With ``transaction`` (a backend-specific handle on the host application's own
        open transaction: for SQL storage a SQLAlchemy ``Session`` or ``Connection``
        on this database), they are written in it and exist only if the host
        commits. ``on_commit`` is called once they are committed.

        A run whose ``idempotency_key`` its job already holds is not inserted: the
        stored execution holding that key is returned in its place, race-free across
        processes (the unique key decides, never a read before the write). Returns
        one execution per ``news``, in order.

        :raises InvalidInputError: the model refuses one of ``news``.
        :raises VersionConflictError: a job of ``job_versions`` changed or is gone
            (nothing is written).
        :raises JobNotFoundError: one of their jobs does not exist (nothing is written).
        :raises ConflictError: an id is taken, or two of ``news`` share a job and an
            idempotency key (nothing is written).
        :raises InvalidInputError: ``transaction`` is not one this backend can write
            in, or it is on another database.
        """

    @abstractmethod
    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Write the end of running executions, fenced: an outcome applies only while
        the execution is still ``running`` and owned by ``outcome.owner``; its
        ``retry`` is inserted only then, unless its id or slot is already stored.
        Returns, per outcome, whether it applied. A rejected outcome changes nothing;
        a second outcome for the same execution in one call is rejected."""

    @abstractmethod
    def get_execution(self, execution_id: str) -> Execution:
        """:raises ExecutionNotFoundError: no execution has this id."""

    @abstractmethod
    def cancel_pending(
        self,
        execution_id: str,
        *,
        now: datetime,
        message: str,
        audit: AuditRecord | None = None,
    ) -> Execution:
        """End a ``pending`` execution as ``cancelled`` (``completed_at = now``, the
        reason in ``error_message``), only if it is still pending: a claim that starts
        it first wins. Returns the cancelled execution. ``audit`` names its job key
        and id.

        :raises ExecutionNotFoundError: no execution has this id.
        :raises ConflictError: it is no longer pending (nothing is written).
        """

    @abstractmethod
    def list_executions(
        self,
        filters: ExecutionFilter,
        *,
        limit: int,
        before: tuple[datetime, str] | None = None,
    ) -> list[Execution]:
        """Executions newest first, ordered by ``(created_at, id)`` descending (equal
        ``created_at``: the greater id first), matching ``filters`` (any of its
        ``statuses`` and any of its ``triggers``, an empty sequence: any;
        ``since``/``until`` bound ``scheduled_for``, inclusive; ``owner`` and
        ``chain_id`` match exactly), strictly after the keyset position ``before`` =
        ``(created_at, id)`` of the last row seen.

        :raises InvalidDatetimeError: ``since``, ``until`` or the ``before`` instant is
            outside what the database stores (years 1970-9998, UTC), or overflows
            when converted to UTC.
        :raises InvalidInputError: the ``before`` id is not 1-64 printable ASCII
            characters (no execution has such an id)."""

    @abstractmethod
    def delete_finished_executions(
        self,
        *,
        completed_before: datetime,
        limit: int,
        statuses: Sequence[ExecutionStatus] | None = None,
        job_id: int | None = None,
        default_retention: bool = False,
    ) -> int:
        """Delete at most ``limit`` executions in a final status completed before the
        cutoff, oldest first (by ``completed_at``, then id), in one short transaction.
        Returns how many were deleted.

        With ``statuses``, only executions in one of those statuses are deleted (final
        statuses only: pending and running executions are never deleted, whatever is
        asked); an empty sequence deletes nothing. With ``job_id``, only that job's.
        With ``default_retention``, only executions whose job has no ``retention`` of
        its own (or no longer exists), decided in the same statement."""

    @abstractmethod
    def history_summary(self) -> HistorySummary:
        """Counts of the stored executions by job key and status, and each job's latest
        ``completed_at`` of a ``success``, read in one statement each (for metrics at
        scrape time: the same answer from every process)."""

    @abstractmethod
    def failure_groups(self, filters: FailureFilter, *, limit: int) -> list[FailureGroup]:
        """The failed attempts matching ``filters`` (its ``statuses``, by default
        :data:`~taskmgr.core.failures.FAILURE_STATUSES`; an empty sequence: none),
        whose ``completed_at`` lies between ``since`` and ``until`` (inclusive),
        grouped by ``(job_key, status, error_type)`` (a NULL ``error_type`` is a group
        of its own), in one statement: per group, how many attempts, how many distinct
        chains, the earliest and latest ``completed_at``, and the id and
        ``error_message`` of its latest attempt (the greatest ``(completed_at, id)``).

        At most ``limit`` groups, the most recently seen first: by ``last_seen``
        descending, then by ``last_execution_id`` descending.

        :raises InvalidInputError: a status that is not a failure status, a negative
            ``limit`` (an :class:`~taskmgr.exceptions.InvalidDatetimeError` for a bound
            outside what the database stores)."""

    @abstractmethod
    def job_queues(self, *, now: datetime) -> list[JobQueue]:
        """Per job, its ``pending`` executions (``due``: those whose ``due_at <= now``,
        queued ones included) and its ``running`` ones, and the earliest ``due_at`` of
        its due pending executions, in one statement (for the dashboard and metrics:
        it reads only executions that have not ended, never the finished history).

        Only jobs with at least one pending or running execution are listed, deleted
        ones included (their running executions are still running), ordered by job key
        (code point order), equal keys by job id."""
