"""``SchedulerService``: the one façade a host application talks to.

It owns the lifecycle (start, shutdown, context manager), the job operations
(create, change, pause, trigger, delete) and the history queries. Firing is done by
the scheduler loop (``_loop``), liveness by ``_maintenance``, running by a
dispatcher; all of them share the storage, which is the source of truth.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.clock import Clock, DatabaseClock
from taskmgr.core.definition import (
    OPTION_NAMES,
    TRIGGER_ARGS,
    build_definition,
    build_trigger,
    check_kwargs_signature,
)
from taskmgr.core.models import (
    Execution,
    ExecutionPage,
    ExecutionStatus,
    ExecutionTrigger,
    Health,
    Instance,
    InstanceStatus,
    Job,
    JobSource,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.registry import JobRegistry
from taskmgr.core.triggers import Cron, TriggerSpec
from taskmgr.core.validation import ensure_aware, validate_kwargs
from taskmgr.dispatch.base import DispatchContext, Dispatcher
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.exceptions import (
    ConflictError,
    InvalidInputError,
    JobBusyError,
    JobOrphanedError,
    JobPausedError,
    ServiceStateError,
)
from taskmgr.execution.events import EventHub, EventKind, Listener
from taskmgr.execution.outcomes import OutcomeWriter
from taskmgr.scheduling.loop import SchedulerLoop
from taskmgr.scheduling.maintenance import Maintenance
from taskmgr.scheduling.planner import Planner, new_execution_id
from taskmgr.scheduling.retention import (
    DEFAULT_RETENTION_CRON,
    RETENTION_KEY,
    Retention,
    RetentionPolicy,
)
from taskmgr.scheduling.sync import add_new_job, anchor, first_run, sync_code_jobs
from taskmgr.service.arguments import check_limit, decode_cursor, encode_cursor, positive
from taskmgr.service.arguments import status as status_of
from taskmgr.settings import TaskmgrSettings, load_settings
from taskmgr.storage.base import ExecutionFilter, NewExecution, Outcome, Storage

__all__ = ["SchedulerService"]

logger = logging.getLogger("taskmgr.service")

MAX_PREVIEW = 1000
MAX_RETENTION_DAYS = 36_500
_DELETE_BATCH = 1000
_SLOT_RETRIES = 16


def _celery_dispatcher(celery_app: str | None) -> Dispatcher:
    """``dispatcher=celery`` in the settings: the host's app, named by the host."""
    if celery_app is None:
        raise InvalidInputError(
            "dispatcher 'celery' needs celery_app ('module:attribute')", field="celery_app"
        )
    from taskmgr.celery import CeleryDispatcher
    from taskmgr.core.importing import import_object

    return CeleryDispatcher(import_object(celery_app, field="celery_app"))


class SchedulerService:
    """Durable scheduled jobs for one application process.

    ``storage`` is a :class:`~taskmgr.storage.Storage`, a database URL, or None for
    ``TASKMGR_DATABASE_URL`` (default ``sqlite:///taskmgr.db``). The constructor does
    no I/O; :meth:`start` connects, registers this instance, syncs the jobs declared
    in code and starts firing. Job operations work without ``start()`` too (an API
    process that only manages jobs): they open the storage on first use.

    Configuration: an argument given here wins; anything left out comes from
    ``settings`` (a :class:`~taskmgr.TaskmgrSettings`), or, without one, from the
    ``TASKMGR_*`` environment, then the defaults (``docs/configuration.md``). A
    database behind this taskmgr's schema is refused on open with the command to
    run, unless ``auto_migrate=True``; an empty one is created.

    With ``background=False`` nothing fires by itself: call :meth:`run_due` (tests
    and scripts that drive time with an injected ``clock``).
    """

    def __init__(
        self,
        storage: Storage | str | None = None,
        *,
        jobs: Iterable[Callable[..., Any] | types.ModuleType] = (),
        dispatcher: Dispatcher | None = None,
        clock: Clock | None = None,
        poll_interval: float | None = None,
        batch_size: int = 500,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        sweep_interval: float | None = None,
        instance_retention: float = 86400.0,
        background: bool = True,
        mode: str = "embedded",
        settings: TaskmgrSettings | None = None,
        auto_migrate: bool | None = None,
    ) -> None:
        # Explicit arguments win over ``settings``; without ``settings``, the
        # ``TASKMGR_*`` environment (then the defaults) fills in the rest.
        self.settings = settings if settings is not None else load_settings()
        conf = self.settings
        self._owns_storage = not isinstance(storage, Storage)
        if isinstance(storage, Storage):
            self.storage: Storage = storage
        else:
            from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

            self.storage = SQLAlchemyStorage(
                storage if storage is not None else conf.url(),
                table_prefix=conf.table_prefix,
                schema=conf.db_schema,
                auto_migrate=conf.auto_migrate if auto_migrate is None else auto_migrate,
            )
        if dispatcher is None and conf.dispatcher == "celery":
            dispatcher = _celery_dispatcher(conf.celery_app)
        self.dispatcher = dispatcher if dispatcher is not None else InlineDispatcher()
        # Unless a clock is injected, time is the database's (see DatabaseClock).
        self._database_clock = None if clock is not None else DatabaseClock(self._database_now)
        self.clock: Clock = clock or self._database_clock  # type: ignore[assignment]
        self.registry = JobRegistry()
        for target in jobs:
            self.registry.register(target)

        def pick(name: str, given: float | None) -> float:
            value = given if given is not None else getattr(conf, name)
            return positive(name, value)

        self.poll_interval = pick("poll_interval", poll_interval)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(
                f"must be a positive integer, got {batch_size!r}", field="batch_size"
            )
        self.batch_size = batch_size
        self.heartbeat_interval = pick("heartbeat_interval", heartbeat_interval)
        self.heartbeat_timeout = pick("heartbeat_timeout", heartbeat_timeout)
        self.sweep_interval = pick("sweep_interval", sweep_interval)
        self.instance_retention = positive("instance_retention", instance_retention)
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise InvalidInputError(
                "must be longer than heartbeat_interval", field="heartbeat_timeout"
            )
        self.background = background
        self.mode = mode
        self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._opened = False
        self._started = False
        self._loop: SchedulerLoop | None = None
        self._maintenance: Maintenance | None = None
        self._outcomes: OutcomeWriter | None = None
        self._written = threading.Condition()
        self._unsubscribe: Callable[[], None] | None = None
        if conf.history_retention_days is not None:
            self.set_retention(conf.history_retention_days)
        self.dispatcher.bind(self)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started

    def register(self, target: Callable[..., Any] | types.ModuleType) -> list[str]:
        """Allow a function to run, or register every ``@scheduled_job`` in a module.

        After ``start()``, the jobs it declares are synced at once.
        """
        names = self.registry.register(target)
        if self._started:
            sync_code_jobs(self.storage, self.registry, self.clock.now(), orphan_missing=False)
        return names

    def start(self) -> SchedulerService:
        with self._lock:
            if self._started:
                raise ServiceStateError("the service is already running")
            self._open()
            self._register_instance()
            events = self._event_hub()
            events.storage = self.storage
            events.start()
            sync_code_jobs(self.storage, self.registry, self.clock.now(), orphan_missing=True)
            planner = Planner(self.instance_id, self.registry)
            self._outcomes = OutcomeWriter(self.storage, self._on_outcomes)
            self._outcomes.start()
            self.dispatcher.start(
                DispatchContext(
                    owner=self.instance_id,
                    clock=self.clock,
                    resolve=self.registry.get,
                    report=self._outcomes.submit,
                    storage=self.storage,
                )
            )
            if self.background:
                self._maintenance = Maintenance(
                    self.storage,
                    self.clock,
                    instance_id=self.instance_id,
                    register=self._register_instance,
                    heartbeat_interval=self.heartbeat_interval,
                    heartbeat_timeout=self.heartbeat_timeout,
                    sweep_interval=self.sweep_interval,
                    instance_retention=self.instance_retention,
                    calibrate=self._database_clock.calibrate if self._database_clock else None,
                )
                self._maintenance.on_lost = events.lost
            self._loop = SchedulerLoop(
                self.storage,
                self.dispatcher,
                planner,
                self.clock,
                owner=self.instance_id,
                batch_size=self.batch_size,
                poll_interval=self.poll_interval,
                may_claim=self._maintenance.alive if self._maintenance else None,
                report=self._outcomes.submit,
            )
            self._loop.events = events
            for dispatcher in (self.dispatcher, getattr(self.dispatcher, "inline", None)):
                if isinstance(dispatcher, InlineDispatcher):
                    dispatcher.on_start = events.run_started
            if self._maintenance is not None:
                self._maintenance.start()
                self._loop.start()
                self._unsubscribe = self.storage.subscribe(self._loop.wake)
            self._started = True
            logger.info(
                "taskmgr instance %s started with %d registered function(s)",
                self.instance_id,
                len(self.registry),
            )
            return self

    def shutdown(self, wait: bool = True) -> None:
        """Stop firing. With ``wait``, running executions finish and are recorded first."""
        with self._lock:
            if not self._started:
                return
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            if self._loop is not None:
                self._loop.stop()
            self.dispatcher.shutdown(wait=wait)
            if self._outcomes is not None:
                self._outcomes.stop()
            if self._maintenance is not None:
                self._maintenance.stop()
            self._event_hub().stop()
            try:
                self.storage.set_instance_status(self.instance_id, InstanceStatus.STOPPED)
            except Exception:
                logger.exception("could not mark instance %s stopped", self.instance_id)
            self._started = False
            self._loop = self._maintenance = self._outcomes = None
            if self._owns_storage:
                self.storage.close()
                self._opened = False
            logger.info("taskmgr instance %s stopped", self.instance_id)

    def close(self) -> None:
        """Shut down if running and release the storage the service created."""
        self.shutdown()
        if self._owns_storage and self._opened:
            self.storage.close()
            self._opened = False

    def __enter__(self) -> SchedulerService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def _open(self) -> None:
        with self._lock:
            if not self._opened:
                self.storage.open()
                self._opened = True
                if self._database_clock is not None:
                    self._database_clock.calibrate()

    def _database_now(self) -> datetime:
        return self.storage.database_now()

    def _register_instance(self) -> None:
        now = self.clock.now()
        self.storage.register_instance(
            Instance(
                id=self.instance_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                mode=self.mode,
                status=InstanceStatus.RUNNING,
                started_at=now,
                last_heartbeat=now,
            )
        )

    def _on_outcomes(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        self._event_hub().outcomes(outcomes, applied)
        with self._written:
            self._written.notify_all()
        if self._loop is not None:
            self._loop.wake()  # a run finished: queued work or retries may be due

    # -- listeners and retention --------------------------------------------------------

    def _event_hub(self) -> EventHub:
        hub: EventHub | None = getattr(self, "_events", None)
        if hub is None:
            with self._lock:
                hub = getattr(self, "_events", None)
                if hub is None:
                    hub = self._events = EventHub(self.instance_id)
        return hub

    def add_listener(
        self, listener: Listener, kinds: Iterable[EventKind | str] | None = None
    ) -> None:
        """Call ``listener(event)`` for each :class:`~taskmgr.ExecutionEvent` of this
        process (all kinds, or only ``kinds``): started, succeeded, failed, missed,
        skipped, lost. Listeners run one at a time on a thread of their own, never on
        the scheduler's or a job's; one that raises is logged and scheduling goes on.
        A slow listener delays only the other listeners."""
        self._event_hub().add(listener, kinds)

    def remove_listener(self, listener: Listener) -> None:
        self._event_hub().remove(listener)

    def set_retention(
        self,
        days: float | None,
        *,
        failed_days: float | None = None,
        cron: str | None = None,
        every: float | None = None,
        batch_size: int = 500,
        max_seconds: float = 60.0,
    ) -> None:
        """Delete finished executions ``days`` after they completed (failed, timed-out
        and lost ones after ``failed_days``, default ``days``), with the built-in job
        ``taskmgr.retention`` (hourly unless ``cron=``/``every=`` seconds). ``None``
        turns it off (the job is then orphaned at the next start). Call it before
        ``start()`` on every process that may run jobs (Celery workers too)."""
        if days is None:
            self.registry.unregister_builtin(RETENTION_KEY, RETENTION_KEY)
            return
        policy = RetentionPolicy(
            days=days,
            failed_days=failed_days if failed_days is not None else days,
            batch_size=batch_size,
            cron=cron if cron is not None or every is not None else DEFAULT_RETENTION_CRON,
            every=every,
            max_seconds=max_seconds,
        )
        job = Retention(self._opened_storage, self.clock, max_seconds=max_seconds)
        self.registry.register_builtin(RETENTION_KEY, job, policy.definition())
        if self._started:
            sync_code_jobs(self.storage, self.registry, self.clock.now(), orphan_missing=False)
            self._wake()

    def _opened_storage(self) -> Storage:
        self._open()
        return self.storage

    # -- job operations ------------------------------------------------------------------

    def create_job(
        self,
        key: str,
        func: Callable[..., Any] | str,
        *,
        cron: str | None = None,
        interval: timedelta | float | None = None,
        at: datetime | None = None,
        trigger: TriggerSpec | Mapping[str, Any] | None = None,
        timezone: str | None = None,
        **options: Any,
    ) -> Job:
        """Create a job at run time for a registered function (or a function object,
        which is registered). Options are those of ``@scheduled_job``; ``timezone``,
        ``misfire_grace_time`` and ``max_retries`` default to the service's settings.

        :raises JobExistsError: the key is taken (nothing is written).
        :raises InvalidInputError: any invalid argument (nothing is written).
        """
        name = self.registry.resolve(func)
        conf = self.settings
        spec = build_trigger(
            cron=cron,
            interval=interval,
            at=at,
            trigger=trigger,
            timezone=timezone if timezone is not None else conf.timezone,
        )
        for option in ("misfire_grace_time", "max_retries"):
            if option not in options and getattr(conf, option) is not None:
                options[option] = getattr(conf, option)
        definition = build_definition(key=key, func=name, trigger=spec, options=options)
        check_kwargs_signature(self.registry.get(name), definition.kwargs)
        self._open()
        job = add_new_job(
            self.storage, definition, source=JobSource.API, fingerprint=None, now=self.clock.now()
        )
        self._wake()
        return job

    def update_job(self, key: str, *, expected_version: int | None = None, **changes: Any) -> Job:
        """Change a job. Accepts a new trigger (``cron=``/``interval=``/``at=``/
        ``trigger=``, ``timezone=``), ``func=`` and any ``@scheduled_job`` option but
        ``enabled`` (use :meth:`pause_job`/:meth:`resume_job`). A new schedule applies
        from now. With ``expected_version``, refuses if the job changed meanwhile.
        """
        unknown = set(changes) - set(OPTION_NAMES) - set(TRIGGER_ARGS) - {"timezone", "func"}
        unknown |= {"enabled"} & set(changes)
        if unknown:
            raise InvalidInputError(
                f"cannot be changed with update_job: {', '.join(sorted(unknown))}", field="update"
            )
        self._open()
        job = self.storage.get_job(key)
        trigger_args = {k: changes.pop(k) for k in (*TRIGGER_ARGS, "timezone") if k in changes}
        spec = job.trigger
        if set(trigger_args) - {"timezone"}:
            spec = build_trigger(**trigger_args)
        elif "timezone" in trigger_args:
            if not isinstance(job.trigger, Cron):
                raise InvalidInputError("only cron jobs have a time zone", field="timezone")
            spec = Cron(job.trigger.expression, timezone=trigger_args["timezone"])
        name = self.registry.resolve(changes.pop("func")) if "func" in changes else job.func
        options = {field: getattr(job, field) for field in OPTION_NAMES if field != "enabled"}
        options.update(changes)
        definition = build_definition(key=key, func=name, trigger=spec, options=options)
        if name in self.registry:
            check_kwargs_signature(self.registry.get(name), definition.kwargs)
        now = self.clock.now()
        updates: dict[str, Any] = {
            field: getattr(definition, field)
            for field in (*OPTION_NAMES, "func")
            if field != "enabled" and getattr(definition, field) != getattr(job, field)
        }
        if spec is not job.trigger:  # a trigger was given: it applies from now
            anchored = anchor(definition.trigger, now)
            if anchored != job.trigger:
                updates["trigger"] = anchored
                updates["next_run_at"] = first_run(anchored, now)
        if not updates:
            return job
        updated = self.storage.update_job(key, updates, now=now, expected_version=expected_version)
        self._wake()
        return updated

    def delete_job(self, key: str) -> None:
        """Delete a job. Its pending executions are cancelled; its history is kept."""
        self._open()
        self.storage.delete_job(key, now=self.clock.now())

    def get_job(self, key: str) -> Job:
        self._open()
        return self.storage.get_job(key)

    def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Jobs ordered by key; ``after`` is the last key of the previous page."""
        if limit is not None:
            check_limit(limit)
        try:
            states = (JobState(state),) if state is not None else ()
        except ValueError:
            allowed = ", ".join(s.value for s in JobState)
            raise InvalidInputError(
                f"must be one of {allowed}, got {state!r}", field="state"
            ) from None
        self._open()
        return self.storage.list_jobs(states=states, after_key=after, limit=limit)

    def pause_job(self, key: str) -> Job:
        """Stop firing the job (slots while paused are not run; resume starts from now)."""
        self._open()
        job = self.storage.get_job(key)
        if job.state is JobState.ORPHANED:
            raise JobOrphanedError(f"job {key!r} is orphaned: its function is not registered")
        if job.state is JobState.PAUSED:
            return job
        return self.storage.update_job(key, {"state": JobState.PAUSED}, now=self.clock.now())

    def resume_job(self, key: str) -> Job:
        """Fire the job again from now on: slots missed while paused are not run."""
        self._open()
        job = self.storage.get_job(key)
        if job.state is JobState.ACTIVE:
            return job
        if job.func not in self.registry:
            raise JobOrphanedError(
                f"job {key!r} cannot resume: function {job.func!r} is not registered"
            )
        now = self.clock.now()
        next_run = job.trigger.next_fire_times(now, 1)
        updated = self.storage.update_job(
            key,
            {"state": JobState.ACTIVE, "next_run_at": next_run[0] if next_run else None},
            now=now,
        )
        self._wake()
        return updated

    def trigger_job(
        self,
        job_key: str,
        *,
        kwargs: Mapping[str, Any] | None = None,
        actor: str | None = None,
        force: bool = False,
    ) -> Execution:
        """Run the job now, once, outside its schedule, as a ``manual`` execution.

        ``kwargs`` are merged over the job's. The overlap policy applies unless
        ``force``: ``skip`` refuses with :class:`JobBusyError` while ``max_instances``
        runs are active, ``queue`` waits for a free run, ``allow`` starts anyway.

        :raises JobPausedError: the job is paused and ``force`` is not set.
        :raises JobOrphanedError: its function is not registered.
        """
        if actor is not None and (
            not isinstance(actor, str) or len(actor) > 200 or "\x00" in actor
        ):
            raise InvalidInputError("must be a string of at most 200 characters", field="actor")
        self._open()
        job = self.storage.get_job(job_key)
        if job.state is JobState.ORPHANED or job.func not in self.registry:
            raise JobOrphanedError(
                f"job {job_key!r} cannot run: function {job.func!r} is not registered"
            )
        if job.state is JobState.PAUSED and not force:
            raise JobPausedError(f"job {job_key!r} is paused (pass force=True to run it anyway)")
        merged = validate_kwargs({**job.kwargs, **(kwargs or {})})
        check_kwargs_signature(self.registry.get(job.func), merged)
        now = self.clock.now()
        policy = job.overlap_policy
        for nudge in range(_SLOT_RETRIES):
            # a manual run is its own slot at "now"; when a slot of the schedule (or
            # another manual run) holds that exact instant, take the next microsecond
            slot = now + timedelta(microseconds=nudge)
            try:
                execution = self.storage.add_execution(
                    NewExecution(
                        id=new_execution_id(),
                        job_id=job.id,
                        job_key=job.key,
                        scheduled_for=slot,
                        attempt=1,
                        trigger=ExecutionTrigger.MANUAL,
                        status=ExecutionStatus.PENDING,
                        due_at=now,
                        created_at=now,
                        kwargs=merged,
                        queued=policy is OverlapPolicy.QUEUE and not force,
                        actor=actor,
                    ),
                    max_active=(
                        job.max_instances if policy is OverlapPolicy.SKIP and not force else None
                    ),
                )
            except JobBusyError:
                raise
            except ConflictError:
                continue
            self._wake()
            return execution
        raise ConflictError(f"could not find a free slot for a manual run of {job_key!r}")

    def preview(self, job_key: str, n: int = 5) -> list[datetime]:
        """The job's next ``n`` fire times after now (UTC)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PREVIEW:
            raise InvalidInputError(f"must be an integer in 1-{MAX_PREVIEW}, got {n!r}", field="n")
        job = self.get_job(job_key)
        return job.trigger.next_fire_times(self.clock.now(), n)

    # -- history ----------------------------------------------------------------------

    def list_executions(
        self,
        job_key: str | None = None,
        status: ExecutionStatus | str | Sequence[ExecutionStatus | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ExecutionPage:
        """Executions newest first. ``since``/``until`` bound the scheduled time;
        ``cursor`` is the ``next_cursor`` of the previous page."""
        check_limit(limit)
        if status is None:
            statuses: tuple[ExecutionStatus, ...] = ()
        elif isinstance(status, str):
            statuses = (status_of(status),)
        else:
            statuses = tuple(status_of(s) for s in status)
        filters = ExecutionFilter(
            job_key=job_key,
            statuses=statuses,
            since=ensure_aware(since, "since") if since is not None else None,
            until=ensure_aware(until, "until") if until is not None else None,
        )
        before = decode_cursor(cursor) if cursor is not None else None
        self._open()
        items = self.storage.list_executions(filters, limit=limit + 1, before=before)
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor(items[-1])
        return ExecutionPage(items=items, next_cursor=next_cursor)

    def get_execution(self, execution_id: str) -> Execution:
        self._open()
        return self.storage.get_execution(execution_id)

    def list_instances(self) -> list[Instance]:
        self._open()
        return self.storage.list_instances()

    def health(self, *, overdue_after: float | None = None) -> Health:
        """Database reachability, live instances and overdue work, for probes.

        Work counts as overdue when its due time is more than ``overdue_after``
        seconds past (default: twice the poll interval plus a second). Never raises
        for a database failure: it reports it.
        """
        threshold = overdue_after if overdue_after is not None else 2 * self.poll_interval + 1
        try:
            self._open()
            now = self.clock.now()
            cutoff = now - timedelta(seconds=self.heartbeat_timeout)
            live = sum(
                1
                for instance in self.storage.list_instances()
                if instance.status is InstanceStatus.RUNNING and instance.last_heartbeat >= cutoff
            )
            due = self.storage.next_due_at()
            schema_current = self.storage.schema_current()
        except Exception as exc:
            return Health(
                database=False,
                running=self._started,
                live_instances=0,
                error=f"{type(exc).__name__}: {exc}",
            )
        late = (now - due).total_seconds() if due is not None else 0.0
        overdue = late > threshold
        return Health(
            database=True,
            running=self._started,
            live_instances=live,
            schema_current=schema_current,
            oldest_overdue_at=due if overdue else None,
            overdue_seconds=late if overdue else 0.0,
        )

    def cleanup_history(self, retention_days: float) -> int:
        """Delete finished executions completed more than ``retention_days`` ago, in
        small batches. Pending and running executions are never deleted."""
        if (
            isinstance(retention_days, bool)
            or not isinstance(retention_days, int | float)
            or not math.isfinite(retention_days)
            or not 0 <= retention_days <= MAX_RETENTION_DAYS
        ):
            raise InvalidInputError(
                f"must be a number of days in 0-{MAX_RETENTION_DAYS}, got {retention_days!r}",
                field="retention_days",
            )
        self._open()
        cutoff = self.clock.now() - timedelta(days=retention_days)
        total = 0
        while True:
            deleted = self.storage.delete_finished_executions(
                completed_before=cutoff, limit=_DELETE_BATCH
            )
            total += deleted
            if deleted < _DELETE_BATCH:
                return total

    # -- driving time by hand ---------------------------------------------------------

    def run_due(self, *, wait: bool = True, timeout: float = 30.0) -> list[Execution]:
        """Claim and dispatch what is due now, once. With ``wait``, return once those
        executions have ended (as stored), else as claimed.

        For tests and scripts that inject a clock (``background=False``).
        """
        if not self._started or self._loop is None:
            raise ServiceStateError("start() the service before run_due()")
        claimed = self._loop.tick()
        ids = [item.execution.id for item in claimed]
        if not wait:
            return [item.execution for item in claimed]
        deadline = time.monotonic() + timeout
        while True:
            current = [self.storage.get_execution(i) for i in ids]
            if all(execution.status.is_final for execution in current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"executions did not end within {timeout}s")
            with self._written:
                self._written.wait(min(remaining, 0.05))

    def _wake(self) -> None:
        if self._loop is not None:
            self._loop.wake()
