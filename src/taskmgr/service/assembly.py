"""How a service is put together: its storage, dispatcher and timings from the
arguments and settings, and the components that run while it is started.

Everything here is wiring: no rule of scheduling lives in this module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import sqlalchemy as sa

from taskmgr.core.alerts import AlertSettings
from taskmgr.core.clock import Clock
from taskmgr.core.importing import import_object
from taskmgr.core.registry import JobRegistry
from taskmgr.core.rules import Liveness
from taskmgr.dispatch.base import DispatchContext, Dispatcher
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.dispatch.routing import DispatchRouter, check_dispatcher_name
from taskmgr.exceptions import InvalidInputError
from taskmgr.execution.events import EventHub
from taskmgr.execution.outcomes import OutcomeWriter
from taskmgr.scheduling.alerts import AlertRuntime, IncidentListeners
from taskmgr.scheduling.handover import Handover
from taskmgr.scheduling.loop import LOOKAHEAD, SchedulerLoop
from taskmgr.scheduling.planner import Planner
from taskmgr.scheduling.runtime import InstanceRuntime
from taskmgr.scheduling.webhook import DeliveryCounts
from taskmgr.settings import MASK, TaskmgrSettings, redact_url
from taskmgr.storage.base import Outcome, Storage

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: What ``SchedulerService(storage)`` accepts: a storage, a URL (sync or asyncio form),
#: an engine (a sync one is used as it is; an ``AsyncEngine`` gives its URL), or None.
StorageArgument: TypeAlias = "Storage | str | sa.URL | sa.Engine | AsyncEngine | None"

__all__ = [
    "Started",
    "configuration",
    "dispatcher_name",
    "make_dispatcher",
    "make_liveness",
    "make_router",
    "make_storage",
    "start_components",
]

logger = logging.getLogger("taskmgr.service")

#: The dispatchers the ``dispatcher`` setting can name. They are looked up by name,
#: not imported here: the Celery adapter sits above the service and imports Celery,
#: which a service that dispatches inline must never load.
DISPATCHERS = {
    "inline": "taskmgr.dispatch.inline:InlineDispatcher",
    "celery": "taskmgr.celery:CeleryDispatcher",
}


def make_storage(
    storage: StorageArgument,
    settings: TaskmgrSettings,
    auto_migrate: bool | None,
    *,
    table_prefix: str | None = None,
    schema: str | None = None,
    max_connections: int | None = None,
) -> tuple[Storage, bool]:
    """The storage to use and whether the service owns it (built it from a URL or an
    engine, so closes it); without either, the one the settings name. ``table_prefix``,
    ``schema`` and ``max_connections`` win over the settings' for a storage built
    here; a given storage has its own, a given sync engine its own pool."""
    if isinstance(storage, Storage):
        for field, value in (
            ("table_prefix", table_prefix),
            ("schema", schema),
            ("max_connections", max_connections),
        ):
            if value is not None:
                raise InvalidInputError(
                    f"a given storage has its own {field}: pass it to the storage",
                    field=field,
                )
        return storage, False
    from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

    if schema is not None and (not isinstance(schema, str) or not schema):
        raise InvalidInputError(f"must be a schema name, got {schema!r}", field="schema")
    url: str | sa.URL | None = None
    engine: sa.Engine | AsyncEngine | None = None
    if storage is None:
        url = settings.url()
    elif isinstance(storage, str | sa.URL):
        url = storage
    else:
        engine = storage
    if max_connections is None and not isinstance(engine, sa.Engine):
        max_connections = settings.max_connections  # a sync engine keeps its own pool
    try:
        built = SQLAlchemyStorage(
            url,
            engine=engine,
            table_prefix=settings.table_prefix if table_prefix is None else table_prefix,
            schema=settings.db_schema if schema is None else schema,
            auto_migrate=settings.auto_migrate if auto_migrate is None else auto_migrate,
            max_connections=max_connections,
        )
    except InvalidInputError:  # a URL that cannot be used, a bad max_connections
        raise
    except ValueError as exc:  # the other check of the constructor: the prefix
        raise InvalidInputError(str(exc), field="table_prefix") from None
    return built, True


def make_dispatcher(dispatcher: Dispatcher | None, settings: TaskmgrSettings) -> Dispatcher:
    """The given dispatcher, else the one the ``dispatcher`` setting names (Celery's
    is built around the host's app, named by the ``celery_app`` setting)."""
    if dispatcher is not None:
        return dispatcher
    if settings.dispatcher == "inline":
        return InlineDispatcher()
    if settings.celery_app is None:
        raise InvalidInputError(
            "dispatcher 'celery' needs celery_app ('module:attribute')", field="celery_app"
        )
    factory = import_object(DISPATCHERS[settings.dispatcher], field="dispatcher")
    app = import_object(settings.celery_app, field="celery_app")
    made = factory(app)  # type: ignore[operator]
    assert isinstance(made, Dispatcher)
    return made


def make_router(
    dispatcher: Dispatcher | str | None,
    dispatchers: Mapping[str, Dispatcher] | None,
    settings: TaskmgrSettings,
) -> DispatchRouter:
    """The service's dispatchers by name, and its default: ``dispatcher`` (a dispatcher,
    or the name of one of ``dispatchers``), else the one the ``dispatcher`` setting
    names (one of ``dispatchers`` by that name, or built from the settings). A default
    not among ``dispatchers`` joins them under its own name (``inline``, ``celery``, or
    its class). ``inline`` is always there (see :class:`DispatchRouter`).

    :raises UnknownDispatcherError: ``dispatcher`` names none of ``dispatchers``.
    :raises InvalidInputError: a name cannot name a dispatcher, a value is not a
        :class:`Dispatcher`, or the default's own name is taken by another one.
    """
    named: dict[str, Dispatcher] = {}
    if dispatchers is not None and not isinstance(dispatchers, Mapping):
        raise InvalidInputError(
            f"must map names to dispatchers, got {type(dispatchers).__name__}",
            field="dispatchers",
        )
    for name, value in (dispatchers or {}).items():
        if not isinstance(value, Dispatcher):
            raise InvalidInputError(
                f"{name!r} must be a Dispatcher, got {type(value).__name__}", field="dispatchers"
            )
        named[check_dispatcher_name(name)] = value
    if isinstance(dispatcher, str):
        return DispatchRouter(dispatcher, named)  # refuses a name it does not have
    if dispatcher is None and settings.dispatcher in named:
        return DispatchRouter(settings.dispatcher, named)
    default = make_dispatcher(dispatcher, settings)
    given = next((n for n, d in named.items() if d is default), None)
    if given is None:
        name = dispatcher_name(default)
        if name in named:
            raise InvalidInputError(
                f"the default dispatcher is named {name!r}, like another one of "
                f"dispatchers: pass dispatcher={name!r} to make that one the default",
                field="dispatcher",
            )
        named = {name: default, **named}
        given = name
    return DispatchRouter(given, named)


def dispatcher_name(dispatcher: Dispatcher) -> str:
    """``inline`` or ``celery`` for taskmgr's dispatchers (and their subclasses), else
    the class as ``module:Class``. Celery's is recognised by name, never imported."""
    for name, path in DISPATCHERS.items():
        module, _, attribute = path.partition(":")
        for cls in type(dispatcher).__mro__:
            if cls.__qualname__ == attribute and cls.__module__.startswith(module):
                return name
    kind = type(dispatcher)
    return f"{kind.__module__}:{kind.__qualname__}"


def configuration(
    settings: TaskmgrSettings,
    *,
    storage: Storage,
    dispatcher: Dispatcher,
    dispatcher_from_settings: bool,
    service: object,
) -> dict[str, Any]:
    """What ``service`` runs with, as ``taskmgr config show --app`` shows it: the
    settings' keys, with the values the service was built from where arguments took
    the settings' place (a storage, a dispatcher, and every number the service holds
    under a setting's name: ``poll_interval``, the heartbeat timings, ...); no secret."""
    data: dict[str, Any] = {"storage": None, **settings.redacted()}
    data.update(
        {
            "database_url": None,
            "table_prefix": None,
            "db_schema": None,
            "auto_migrate": None,
            "max_connections": None,
            **storage.describe(),
        }
    )
    name = dispatcher_name(dispatcher)
    data["dispatcher"] = name
    if name != "celery":
        data["celery_app"] = None
    elif not dispatcher_from_settings:
        app = getattr(dispatcher, "app", None)
        main = getattr(app, "main", None)
        data["celery_app"] = main if isinstance(main, str) else type(app).__name__
    for key in data:
        held = getattr(service, key, None)
        if isinstance(held, int | float) and not isinstance(held, bool):
            data[key] = held
    alerts = getattr(service, "alerts", None)
    if isinstance(alerts, AlertSettings):  # what the service alerts with, given or not
        data.update(alert_settings(alerts))
    return data


def alert_settings(alerts: AlertSettings) -> dict[str, Any]:
    """``alerts`` under the names of the ``alert_*`` settings, the webhook's URL
    redacted and its secret masked."""
    return {
        "alert_late_after": alerts.late_after,
        "alert_failures": alerts.failures,
        "alert_max_runtime": alerts.max_runtime,
        "alert_no_success_within": alerts.no_success_within,
        "alert_interval": alerts.interval,
        "alert_webhook_url": None if alerts.webhook_url is None else redact_url(alerts.webhook_url),
        "alert_webhook_secret": None if alerts.webhook_secret is None else MASK,
    }


def make_liveness(
    settings: TaskmgrSettings,
    *,
    heartbeat_interval: float | None,
    heartbeat_timeout: float | None,
    sweep_interval: float | None,
    instance_retention: float,
) -> Liveness:
    """The instance timings: an argument given wins over the setting."""
    return Liveness(
        heartbeat_interval=_given(heartbeat_interval, settings.heartbeat_interval),
        heartbeat_timeout=_given(heartbeat_timeout, settings.heartbeat_timeout),
        sweep_interval=_given(sweep_interval, settings.sweep_interval),
        instance_retention=instance_retention,
    )


def _given(value: float | None, default: float) -> float:
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class Parts:
    """What a service hands :func:`start_components`."""

    storage: Storage
    clock: Clock
    registry: JobRegistry
    dispatcher: Dispatcher
    events: EventHub
    instance: InstanceRuntime
    batch_size: int
    poll_interval: float
    background: bool
    #: The event loop the service was started from, if any (``async def`` jobs run there).
    host_loop: asyncio.AbstractEventLoop | None = None
    #: How long a stopping instance keeps firing until a newer one does (see Handover).
    handover_timeout: float = 0.0
    #: The alerting, evaluated (with ``background``) on threads of its own.
    alerts: AlertSettings | None = None
    incident_listeners: IncidentListeners | None = None
    alert_counts: DeliveryCounts | None = None


@dataclass(slots=True)
class Started:
    """The components of a started service, stopped in the reverse order."""

    loop: SchedulerLoop
    outcomes: OutcomeWriter
    parts: Parts
    unsubscribe: Callable[[], None] | None = None
    #: The hand-over of a stopping background loop, when it has a timeout.
    handover: Handover | None = None
    #: The alert evaluation and webhook deliveries of a background service.
    alerts: AlertRuntime | None = None

    def hand_over(self) -> None:
        """Keep firing until a newer instance does (or the hand-over ends otherwise);
        returns at once when there is no hand-over."""
        if self.handover is not None:
            self.handover()

    def stop(self, *, wait: bool) -> None:
        parts = self.parts
        if self.handover is not None:
            self.handover.cancel()  # a stop without waiting ends a hand-over in progress
        if self.unsubscribe is not None:
            self.unsubscribe()
        if self.alerts is not None:
            self.alerts.stop()
        self.loop.stop()
        parts.dispatcher.shutdown(wait=wait)
        self.outcomes.stop()
        parts.instance.stop()
        parts.events.stop()


def start_components(
    parts: Parts, on_outcomes: Callable[[Sequence[Outcome], Sequence[bool]], None]
) -> Started:
    """Register the instance and start, in order: its heartbeats and reaper (only with
    ``background``), listeners, the outcome writer, the dispatcher, then the loop that
    claims (only with ``background``; else the host drives it with ``run_due``). A
    dispatcher that fails to start stops what was started before it."""
    storage, events, instance = parts.storage, parts.events, parts.instance
    instance.start(maintain=parts.background, on_lost=events.lost)
    events.start()
    outcomes = OutcomeWriter(storage, on_outcomes)
    outcomes.start()
    try:
        parts.dispatcher.start(
            DispatchContext(
                owner=instance.instance_id,
                clock=parts.clock,
                resolve=parts.registry.get,
                report=outcomes.submit,
                storage=storage,
                on_start=events.run_started,
                host_loop=parts.host_loop,
            )
        )
    except BaseException:
        outcomes.stop()
        events.stop()
        instance.stop()
        raise
    loop = SchedulerLoop(
        storage,
        parts.dispatcher,
        Planner(instance.instance_id, parts.registry),
        parts.clock,
        owner=instance.instance_id,
        batch_size=parts.batch_size,
        poll_interval=parts.poll_interval,
        may_claim=instance.may_claim,
        report=outcomes.submit,
        events=events,
        # a running loop claims a little ahead and starts each slot from a timer; a
        # loop driven by hand (run_due) claims only what is due
        lookahead=LOOKAHEAD if parts.background else 0.0,
        vitals=instance.vitals,
    )
    started = Started(loop=loop, outcomes=outcomes, parts=parts)
    if parts.background:
        loop.start()
        started.unsubscribe = storage.subscribe(loop.wake)
        if parts.alerts is not None:
            started.alerts = AlertRuntime(
                storage,
                parts.clock,
                parts.alerts,
                instance_id=instance.instance_id,
                listeners=parts.incident_listeners or IncidentListeners(),
                hub=events,
                counts=parts.alert_counts or DeliveryCounts(),
            )
            started.alerts.start()
        if parts.handover_timeout > 0:
            started.handover = Handover(
                storage,
                parts.clock,
                instance.liveness,
                instance_id=instance.instance_id,
                timeout=parts.handover_timeout,
                poll_interval=parts.poll_interval,
            )
    return started
