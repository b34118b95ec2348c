"""What the parts of the service façade share: the attributes its job commands and
queries rely on, set by :class:`~taskmgr.service.SchedulerService`'s constructor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from taskmgr.core import tracing as _tracing
from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.clock import Clock
from taskmgr.core.definition import argument_value, check_kwargs_signature
from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Job,
    JobState,
    new_execution_id,
)
from taskmgr.core.registry import JobRegistry
from taskmgr.core.rules import Liveness, concurrency_value
from taskmgr.core.validation import validate_actor, validate_kwargs
from taskmgr.dispatch.routing import DispatchRouter
from taskmgr.exceptions import (
    JobOrphanedError,
    JobPausedError,
    TaskmgrError,
    VersionConflictError,
)
from taskmgr.execution.events import EventHub
from taskmgr.settings import TaskmgrSettings
from taskmgr.storage.base import AuditRecord, NewExecution, Storage
from taskmgr.storage.inputs import member

__all__ = ["RUN_TRIES", "ServiceBase", "Source", "requested_run", "retried_while_changed"]

#: Through which door a change comes: an :class:`AuditSource` or its value.
Source = AuditSource | str
#: Tries of one run asked for (a defer, a trigger) whose job changed while it was
#: prepared (each reads the job anew).
RUN_TRIES = 3
#: Most jobs a service remembers between the runs asked for.
_MAX_KNOWN = 1024

_T = TypeVar("_T")


def retried_while_changed(write: Callable[[bool], _T]) -> _T:
    """``write(fresh)``, tried again with ``fresh=True`` (the job read anew) while the
    storage refuses it because the job changed since it was read, at most
    :data:`RUN_TRIES` times in all."""
    for attempt in range(RUN_TRIES):
        try:
            return write(attempt > 0)
        except VersionConflictError:
            if attempt == RUN_TRIES - 1:
                raise
    raise AssertionError("unreachable")


class ServiceBase:
    storage: Storage
    registry: JobRegistry
    clock: Clock
    settings: TaskmgrSettings
    liveness: Liveness
    poll_interval: float
    events: EventHub
    #: The jobs last read by ``defer`` and ``trigger_job``, by key (checked by version
    #: when a run is written).
    _known_tasks: dict[str, Job]
    #: The service's dispatchers by name (a job's ``dispatch`` must name one).
    _router: DispatchRouter

    @property
    def running(self) -> bool:
        """Whether the service is started."""
        raise NotImplementedError

    def open(self) -> None:
        """Connect the storage once (idempotent)."""
        raise NotImplementedError

    def get_execution(self, execution_id: str) -> Execution:
        raise NotImplementedError

    def _wake(self) -> None:
        """Tell this process's scheduler loop that something changed."""
        raise NotImplementedError

    # -- the audit log ------------------------------------------------------------------

    def _audit(
        self,
        action: AuditAction,
        actor: str | None,
        source: Source,
        details: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """What a command records of itself, checked before anything is read or written.

        :raises InvalidInputError: ``actor`` is not a string of at most 200 characters
            without NUL, or ``source`` is not an :class:`AuditSource`.
        """
        return AuditRecord(
            action=action,
            source=member(AuditSource, source, "source"),
            at=self.clock.now(),
            actor=validate_actor(actor),
            details=dict(details or {}),
        )

    # -- shared by the commands that ask for a run (trigger_job, defer) ----------------

    def _known_job(self, key: str, *, force: bool = False, fresh: bool = False) -> Job:
        """The job ``key``, if it may be asked to run now: as last read by a run asked
        for (a defer, a trigger) unless ``fresh``, else read now. A run is written only
        while its job is still at the version it was prepared from (the storage raises
        :class:`VersionConflictError` otherwise), so a remembered job saves a read
        transaction and is never acted on stale.

        :raises JobNotFoundError: no such job.
        :raises JobOrphanedError: its function is not registered in this process.
        :raises JobPausedError: it is paused (and ``force`` is not set).
        """
        self.open()
        known = self._known_tasks
        job = None if fresh else known.get(key)
        if job is not None and self._refusal(job, force=force) is None:
            return job
        # not remembered, or refused as remembered: what is stored now decides
        job = self.storage.get_job(key)
        refusal = self._refusal(job, force=force)
        if refusal is not None:
            raise refusal
        if len(known) >= _MAX_KNOWN:
            known.clear()
        known[key] = job
        return job

    def _refusal(self, job: Job, *, force: bool) -> TaskmgrError | None:
        """Why ``job`` may not be asked to run now, if it may not."""
        if job.state is JobState.ORPHANED or job.func not in self.registry:
            return JobOrphanedError(
                f"job {job.key!r} cannot run: function {job.func!r} is not registered"
            )
        if job.state is JobState.PAUSED and not force:
            return JobPausedError(f"job {job.key!r} is paused (pass force=True to run it anyway)")
        return None

    def _arguments(self, job: Job, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The job's kwargs with ``kwargs`` over them, if they are JSON within the size
        limit and fit the function's signature.

        :raises InvalidKwargsError: naming the path of the bad value.
        """
        merged = validate_kwargs({**job.kwargs, **kwargs}, max_bytes=self.settings.max_kwargs_bytes)
        check_kwargs_signature(self.registry.get(job.func), merged)
        return merged

    def _group(self, job: Job, arguments: Mapping[str, Any]) -> str | None:
        """The ``concurrency_value`` of a run of ``job`` with ``arguments`` (checked by
        :meth:`_arguments`): None unless the job has a ``concurrency_key``.

        :raises InvalidKwargsError: the argument's value cannot group runs, naming its
            path (``kwargs.customer_id``).
        """
        key = job.concurrency_key
        if key is None:
            return None
        value = argument_value(self.registry.get(job.func), key, arguments)
        return concurrency_value(value, field=f"kwargs.{key}")


def requested_run(
    job: Job,
    trigger: ExecutionTrigger,
    kwargs: dict[str, Any],
    *,
    due: datetime,
    now: datetime,
    queued: bool,
    actor: str | None,
    idempotency_key: str | None = None,
    concurrency_value: str | None = None,
) -> NewExecution:
    """The first attempt of a run somebody asked for (a manual run, a deferred task),
    due at ``due``: not a slot of the schedule, so it may share its instant. It keeps
    the trace context of the caller's span, if tracing is on."""
    return NewExecution(
        id=new_execution_id(),
        job_id=job.id,
        job_key=job.key,
        scheduled_for=due,
        attempt=1,
        trigger=trigger,
        status=ExecutionStatus.PENDING,
        due_at=due,
        created_at=now,
        kwargs=kwargs,
        queued=queued,
        actor=actor,
        idempotency_key=idempotency_key,
        concurrency_value=concurrency_value,
        trace_context=_tracing.current_context(),
    )
