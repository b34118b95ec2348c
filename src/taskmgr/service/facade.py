"""``SchedulerService``: the one façade a host application talks to.

It owns the lifecycle (start, shutdown, context manager) and the listeners; the job
commands (``service/commands.py``) and queries (``service/queries.py``) are its
other two halves; how its parts are built and started is ``service/assembly.py``.
Firing is done by the scheduler loop, liveness by the instance's maintenance,
running by a dispatcher; all of them share the storage, which is the source of truth.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from taskmgr.core.alerts import AlertSettings
from taskmgr.core.clock import Clock, DatabaseClock
from taskmgr.core.models import Execution
from taskmgr.core.registry import JobRegistry
from taskmgr.dispatch.base import Dispatcher, Runtime
from taskmgr.exceptions import InvalidInputError, ServiceStateError, TransactionTimedOutError
from taskmgr.execution.events import EventHub, EventKind, Listener
from taskmgr.scheduling.alerts import IncidentListeners
from taskmgr.scheduling.runtime import InstanceRuntime
from taskmgr.scheduling.sync import sync_code_jobs
from taskmgr.scheduling.webhook import DeliveryCounts
from taskmgr.service.alerting import AlertCommands
from taskmgr.service.arguments import non_negative, positive
from taskmgr.service.assembly import (
    Parts,
    Started,
    StorageArgument,
    configuration,
    make_liveness,
    make_router,
    make_storage,
    start_components,
)
from taskmgr.service.commands import JobCommands
from taskmgr.service.pausing import PauseCommands
from taskmgr.service.queries import Queries
from taskmgr.service.tasks import TaskCommands
from taskmgr.service.windows import WindowCommands
from taskmgr.settings import TaskmgrSettings, load_settings
from taskmgr.storage.base import Outcome

__all__ = ["SchedulerService"]

logger = logging.getLogger("taskmgr.service")


class SchedulerService(
    JobCommands, TaskCommands, PauseCommands, WindowCommands, AlertCommands, Queries
):
    """Durable scheduled jobs for one application process.

    ``storage`` is a :class:`~taskmgr.storage.Storage`, a database URL (its asyncio
    forms too: ``postgresql+asyncpg://``, ``sqlite+aiosqlite://``), a SQLAlchemy
    ``Engine`` or ``AsyncEngine`` (whose URL taskmgr connects with, never its pool), or
    None for ``TASKMGR_DATABASE_URL`` (default ``sqlite:///taskmgr.db``); a storage
    built from a URL puts its tables under ``table_prefix`` and in the PostgreSQL
    ``schema`` (which ``taskmgr db upgrade`` and the first start create when missing),
    else the settings' ``table_prefix`` and ``db_schema``, and opens at most
    ``max_connections`` connections (``TASKMGR_MAX_CONNECTIONS``, default 4; see
    ``docs/deployment.md``). The constructor does
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

    With a ``handover_timeout`` (seconds), :meth:`shutdown` first keeps firing, for at
    most that long, until a newer instance is up: a reload that starts the new
    processes as it stops the old ones then leaves no slot late
    (``docs/deployment.md``).

    ``dispatcher`` runs the jobs that choose none (default: the ``dispatcher``
    setting, ``InlineDispatcher()``); ``dispatchers`` names the others a job may choose
    with its ``dispatch`` option, and ``dispatcher`` may be one of their names::

        SchedulerService(url, dispatcher="inline",
                         dispatchers={"celery": CeleryDispatcher(app)})

    ``inline`` is always there (a job whose ``queue`` is ``"inline"`` runs there too,
    the older form). A job that chooses a name the service does not have is refused
    (:class:`~taskmgr.exceptions.UnknownDispatcherError`) when it is created, changed
    or declared; nothing is stored.

    ``alerts`` (an :class:`~taskmgr.AlertSettings`; default: the ``alert_*`` settings)
    holds the alert thresholds a job without its own inherits, how often the rules are
    evaluated and the webhook told about incidents
    (``docs/alerting-and-maintenance.md``).
    """

    def __init__(
        self,
        storage: StorageArgument = None,
        *,
        jobs: Iterable[Callable[..., Any] | types.ModuleType] = (),
        dispatcher: Dispatcher | str | None = None,
        dispatchers: Mapping[str, Dispatcher] | None = None,
        clock: Clock | None = None,
        poll_interval: float | None = None,
        batch_size: int = 500,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        sweep_interval: float | None = None,
        instance_retention: float = 86400.0,
        handover_timeout: float | None = None,
        background: bool = True,
        mode: str = "embedded",
        settings: TaskmgrSettings | None = None,
        auto_migrate: bool | None = None,
        table_prefix: str | None = None,
        schema: str | None = None,
        max_connections: int | None = None,
        alerts: AlertSettings | None = None,
    ) -> None:
        # Explicit arguments win over ``settings``; without ``settings``, the
        # ``TASKMGR_*`` environment (then the defaults) fills in the rest.
        self.settings = settings if settings is not None else load_settings()
        conf = self.settings
        self.poll_interval = positive(
            "poll_interval", poll_interval if poll_interval is not None else conf.poll_interval
        )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(
                f"must be a positive integer, got {batch_size!r}", field="batch_size"
            )
        self.batch_size = batch_size
        self.handover_timeout = non_negative(
            "handover_timeout",
            handover_timeout if handover_timeout is not None else conf.handover_timeout,
        )
        self.liveness = make_liveness(
            conf,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            sweep_interval=sweep_interval,
            instance_retention=instance_retention,
        )
        self.storage, self._owns_storage = make_storage(
            storage,
            conf,
            auto_migrate,
            table_prefix=table_prefix,
            schema=schema,
            max_connections=max_connections,
        )
        self._router = make_router(dispatcher, dispatchers, conf)
        #: The dispatcher of the jobs that choose none.
        self.dispatcher: Dispatcher = self._router.dispatchers[self._router.default]
        #: Every dispatcher a job can choose (``dispatch=``), by name.
        self.dispatchers: Mapping[str, Dispatcher] = self._router.dispatchers
        self._dispatcher_from_settings = dispatcher is None and conf.dispatcher not in (
            dispatchers or {}
        )
        # Unless a clock is injected, time is the database's (see DatabaseClock).
        self.clock: Clock = clock or DatabaseClock(self.storage.database_now)
        router = self._router
        self.registry = JobRegistry(check=lambda job: router.check(job.dispatch, key=job.key))
        self._known_tasks = {}
        for target in jobs:
            self.registry.register(target)
        self.background = background
        self._instance = InstanceRuntime(self.storage, self.clock, self.liveness, mode=mode)
        self.instance_id = self._instance.instance_id
        #: The host's listeners (see :meth:`add_listener`).
        self.events = EventHub(self.instance_id, self.storage)
        if alerts is not None and not isinstance(alerts, AlertSettings):
            raise InvalidInputError(
                f"must be AlertSettings, got {type(alerts).__name__}", field="alerts"
            )
        self.alerts = alerts if alerts is not None else AlertSettings.from_settings(conf)
        self._incident_listeners = IncidentListeners()
        self.alert_counts = DeliveryCounts()
        # Two locks, always taken in this order: start/shutdown, then the storage's
        # opening. A running job may use the service (the retention job does) while a
        # shutdown holding the first waits for it, so commands take only the second.
        self._lock = threading.RLock()
        self._open_lock = threading.RLock()
        self._opened = False
        self._started: Started | None = None
        self._written = threading.Condition()
        if conf.history_retention_days is not None:
            self.set_retention(conf.history_retention_days)
        #: What the service shares with a dispatcher that runs work in other processes.
        self.runtime = Runtime(
            storage=self.storage,
            clock=self.clock,
            registry=self.registry,
            events=self.events,
            liveness=self.liveness,
            open=self.open,
            close=self.close,
        )
        self._router.bind(self.runtime)

    @property
    def configuration(self) -> dict[str, Any]:
        """What this service runs with, as ``taskmgr config show --app`` shows it: the
        keys of :class:`~taskmgr.TaskmgrSettings` (plus ``storage``: ``sqlalchemy``,
        ``memory`` or the class), with the values of the storage, dispatcher and
        timings it was given where they took the settings' place. The database URL's
        secrets are redacted; nothing is connected to."""
        return configuration(
            self.settings,
            storage=self.storage,
            dispatcher=self.dispatcher,
            dispatcher_from_settings=self._dispatcher_from_settings,
            service=self,
        )

    # -- the instance timings (see Liveness) ---------------------------------------------

    @property
    def heartbeat_interval(self) -> float:
        return self.liveness.heartbeat_interval

    @property
    def heartbeat_timeout(self) -> float:
        return self.liveness.heartbeat_timeout

    @property
    def sweep_interval(self) -> float:
        return self.liveness.sweep_interval

    @property
    def instance_retention(self) -> float:
        return self.liveness.instance_retention

    @property
    def mode(self) -> str:
        """How this instance is listed (``embedded``, ``standalone`` for ``taskmgr run``);
        settable until the service starts."""
        return self._instance.mode

    @mode.setter
    def mode(self, value: str) -> None:
        if self.running:
            raise ServiceStateError("the mode of a running service cannot change")
        self._instance.mode = value

    # -- lifecycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started is not None

    def register(self, target: Callable[..., Any] | types.ModuleType) -> list[str]:
        """Allow a function to run, or register every ``@scheduled_job`` in a module.

        After ``start()``, the jobs it declares are synced at once.
        """
        names = self.registry.register(target)
        if self.running:
            sync_code_jobs(self.storage, self.registry, self.clock.now(), orphan_missing=False)
        return names

    def start(self) -> SchedulerService:
        """Open the storage, register this instance, sync the jobs declared in code and
        start firing. :raises ServiceStateError: already running."""
        return self._start(_running_loop())

    def _start(self, host_loop: asyncio.AbstractEventLoop | None) -> SchedulerService:
        """:meth:`start`; ``async def`` jobs run on ``host_loop`` when given (the
        awaitable API starts the service in a worker thread on behalf of a loop)."""
        with self._lock:
            if self._started is not None:
                raise ServiceStateError("the service is already running")
            self.open()
            sync_code_jobs(self.storage, self.registry, self.clock.now(), orphan_missing=True)
            self._started = start_components(
                Parts(
                    storage=self.storage,
                    clock=self.clock,
                    registry=self.registry,
                    dispatcher=self._router,
                    events=self.events,
                    instance=self._instance,
                    batch_size=self.batch_size,
                    poll_interval=self.poll_interval,
                    background=self.background,
                    host_loop=host_loop,
                    handover_timeout=self.handover_timeout,
                    alerts=self.alerts,
                    incident_listeners=self._incident_listeners,
                    alert_counts=self.alert_counts,
                ),
                self._on_outcomes,
            )
            logger.info(
                "taskmgr instance %s started with %d registered function(s)",
                self.instance_id,
                len(self.registry),
            )
            return self

    def shutdown(self, wait: bool = True) -> None:
        """Stop firing. With ``wait``, running executions finish and are recorded first,
        except ``async def`` runs of the event loop this is called on (it would never
        return): they are cancelled; await the shutdown
        (``AsyncSchedulerService.shutdown()``) to let them end.

        Given a ``handover_timeout``, a shutdown with ``wait`` first goes on firing
        until a newer instance is up, at most that long (a shutdown without ``wait``
        ends that at once)."""
        started = self._started
        # Outside the lock: job commands and queries go on while it hands over. Not
        # on the host's event loop: its async jobs could not run while it waits.
        if wait and started is not None:
            host_loop = started.parts.host_loop
            if host_loop is None or _running_loop() is not host_loop:
                started.hand_over()
        with self._lock:
            started, self._started = self._started, None
            if started is None:
                return
            started.stop(wait=wait)
            if self._owns_storage:
                with self._open_lock:
                    self.storage.close()
                    self._opened = False
            logger.info("taskmgr instance %s stopped", self.instance_id)

    def close(self) -> None:
        """Shut down if running and release the storage the service created."""
        self.shutdown()
        with self._lock, self._open_lock:
            if self._owns_storage and self._opened:
                self.storage.close()
                self._opened = False

    def __enter__(self) -> SchedulerService:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def open(self) -> None:
        """Connect the storage (and measure the database's clock) once; job commands
        and queries call it for you."""
        with self._open_lock:
            if not self._opened:
                self.storage.open()
                self._opened = True
                if isinstance(self.clock, DatabaseClock):
                    self.clock.calibrate()

    def _on_outcomes(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        self.events.outcomes(outcomes, applied)
        with self._written:
            self._written.notify_all()
        self._wake()  # a run finished: queued work or retries may be due

    def _wake(self) -> None:
        started = self._started
        if started is not None:
            started.loop.wake()

    # -- listeners ----------------------------------------------------------------------

    def add_listener(
        self, listener: Listener, kinds: Iterable[EventKind | str] | None = None
    ) -> None:
        """Call ``listener(event)`` for each :class:`~taskmgr.ExecutionEvent` of this
        process (all kinds, or only ``kinds``): started, succeeded, failed, missed,
        skipped, lost. Listeners run one at a time on a thread of their own, never on
        the scheduler's or a job's; one that raises is logged and scheduling goes on.
        A slow listener delays only the other listeners."""
        self.events.add(listener, kinds)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener`` (added with :meth:`add_listener`)."""
        self.events.remove(listener)

    # -- driving time by hand ---------------------------------------------------------

    def run_due(self, *, wait: bool = True, timeout: float = 30.0) -> list[Execution]:
        """Claim and dispatch what is due now, once. With ``wait``, return once those
        executions have ended (as stored), else as claimed.

        For tests and scripts that inject a clock (``background=False``). In ``async``
        code, await it (``await AsyncSchedulerService(service).run_due()``): called
        with ``wait`` on the event loop the service was started on, which its ``async
        def`` jobs need, it claims nothing and raises :class:`ServiceStateError`
        instead of blocking that loop for ever.
        """
        started = self._started
        if started is None:
            raise ServiceStateError("start() the service before run_due()")
        host_loop = started.parts.host_loop
        if wait and host_loop is not None and _running_loop() is host_loop:
            raise ServiceStateError(
                "run_due() would block the event loop this service's async jobs run on, "
                "so they could never end: await it instead "
                "(await AsyncSchedulerService(service).run_due()), or pass wait=False"
            )
        try:
            claimed = started.loop.tick()
        except TransactionTimedOutError:
            # nothing of that claim was written: claim once more, at the time it is now
            claimed = started.loop.tick()
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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running on this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
