"""How a service is put together: its storage, dispatcher and timings from the
arguments and settings, and the components that run while it is started.

Everything here is wiring: no rule of scheduling lives in this module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from taskmgr.core.clock import Clock
from taskmgr.core.importing import import_object
from taskmgr.core.registry import JobRegistry
from taskmgr.core.rules import Liveness
from taskmgr.dispatch.base import DispatchContext, Dispatcher
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.exceptions import InvalidInputError
from taskmgr.execution.events import EventHub
from taskmgr.execution.outcomes import OutcomeWriter
from taskmgr.scheduling.loop import SchedulerLoop
from taskmgr.scheduling.planner import Planner
from taskmgr.scheduling.runtime import InstanceRuntime
from taskmgr.settings import TaskmgrSettings
from taskmgr.storage.base import Outcome, Storage

__all__ = ["Started", "make_dispatcher", "make_liveness", "make_storage", "start_components"]

logger = logging.getLogger("taskmgr.service")

#: The dispatchers the ``dispatcher`` setting can name. They are looked up by name,
#: not imported here: the Celery adapter sits above the service and imports Celery,
#: which a service that dispatches inline must never load.
DISPATCHERS = {
    "inline": "taskmgr.dispatch.inline:InlineDispatcher",
    "celery": "taskmgr.celery:CeleryDispatcher",
}


def make_storage(
    storage: Storage | str | None, settings: TaskmgrSettings, auto_migrate: bool | None
) -> tuple[Storage, bool]:
    """The storage to use and whether the service owns it (built it from a URL, so
    closes it); without a URL, the one the settings name."""
    if isinstance(storage, Storage):
        return storage, False
    from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

    built = SQLAlchemyStorage(
        storage if storage is not None else settings.url(),
        table_prefix=settings.table_prefix,
        schema=settings.db_schema,
        auto_migrate=settings.auto_migrate if auto_migrate is None else auto_migrate,
    )
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


@dataclass(slots=True)
class Started:
    """The components of a started service, stopped in the reverse order."""

    loop: SchedulerLoop
    outcomes: OutcomeWriter
    parts: Parts
    unsubscribe: Callable[[], None] | None = None

    def stop(self, *, wait: bool) -> None:
        parts = self.parts
        if self.unsubscribe is not None:
            self.unsubscribe()
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
    )
    started = Started(loop=loop, outcomes=outcomes, parts=parts)
    if parts.background:
        loop.start()
        started.unsubscribe = storage.subscribe(loop.wake)
    return started
