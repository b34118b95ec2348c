"""Alerts from the schedule itself, while a service runs: the evaluation of the rules
(once for the cluster), the events of the incidents it opens and resolves, and the
webhook deliveries.

Two threads of their own, never the scheduler's: ``taskmgr-alerts`` evaluates every
``interval`` seconds (the instance that holds the alert lock does; the others skip that
round), and, with a webhook, ``taskmgr-alert-delivery`` sends what is due (woken at once
by this instance's changes, else every ``interval``), so a webhook that hangs delays
nothing but its own deliveries. The host's incident listeners are called on the event
hub's thread, after the evaluation that made the change committed.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from taskmgr.core.alerts import AlertSettings, Incident, IncidentChanges
from taskmgr.core.clock import Clock
from taskmgr.execution.events import EventHub
from taskmgr.scheduling.webhook import DeliveryCounts, NotificationDelivery
from taskmgr.storage.base import Storage

__all__ = [
    "AlertRuntime",
    "IncidentEvent",
    "IncidentEventKind",
    "IncidentListener",
    "IncidentListeners",
    "evaluate_once",
]

logger = logging.getLogger("taskmgr.alerts")


class IncidentEventKind(enum.StrEnum):
    OPENED = "incident_opened"
    RESOLVED = "incident_resolved"


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """An incident this instance opened or resolved (told once for the cluster: by the
    instance whose evaluation made the change)."""

    kind: IncidentEventKind
    incident: Incident
    #: The instance that made the change.
    instance_id: str


IncidentListener = Callable[[IncidentEvent], None]


class IncidentListeners:
    """The host's incident listeners (``SchedulerService.add_incident_listener``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[IncidentListener, ...] = ()

    def add(self, listener: IncidentListener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove(self, listener: IncidentListener) -> None:
        with self._lock:
            self._listeners = tuple(fn for fn in self._listeners if fn != listener)

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def tell(self, events: list[IncidentEvent]) -> None:
        """Call every listener with each event (on the event hub's thread); one that
        raises is logged and the others still run."""
        for event in events:
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception(
                        "incident listener %r failed on %s of incident %d",
                        listener,
                        event.kind.value,
                        event.incident.id,
                    )


def evaluate_once(
    storage: Storage,
    clock: Clock,
    settings: AlertSettings,
    *,
    instance_id: str,
    listeners: IncidentListeners,
    hub: EventHub,
) -> IncidentChanges | None:
    """One evaluation of the rules: the changes it made (None: another instance
    evaluates right now), logged, and told to ``listeners`` on ``hub``'s thread."""
    changes = storage.evaluate_alerts(
        now=clock.now(), defaults=settings.defaults, notify=settings.webhook_url is not None
    )
    if not changes:
        return changes
    for incident in changes.opened:
        logger.warning(
            "incident %d opened: %s",
            incident.id,
            incident.describe(),
            extra={"taskmgr_job_key": incident.job_key, "taskmgr_incident_id": incident.id},
        )
    for incident in changes.resolved:
        logger.info(
            "incident %d resolved: %s",
            incident.id,
            incident.describe(),
            extra={"taskmgr_job_key": incident.job_key, "taskmgr_incident_id": incident.id},
        )
    if listeners:
        events = [
            *(IncidentEvent(IncidentEventKind.OPENED, i, instance_id) for i in changes.opened),
            *(IncidentEvent(IncidentEventKind.RESOLVED, i, instance_id) for i in changes.resolved),
        ]
        hub.later(lambda: listeners.tell(events))
    return changes


class AlertRuntime:
    """The alert threads of one started service."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        settings: AlertSettings,
        *,
        instance_id: str,
        listeners: IncidentListeners,
        hub: EventHub,
        counts: DeliveryCounts,
    ) -> None:
        self.storage = storage
        self.clock = clock
        self.settings = settings
        self.instance_id = instance_id
        self.listeners = listeners
        self.hub = hub
        self.delivery = (
            NotificationDelivery(storage, clock, settings, counts=counts)
            if settings.webhook_url is not None
            else None
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def evaluate(self) -> IncidentChanges | None:
        changes = evaluate_once(
            self.storage,
            self.clock,
            self.settings,
            instance_id=self.instance_id,
            listeners=self.listeners,
            hub=self.hub,
        )
        if changes and self.delivery is not None:
            self._wake.set()
        return changes

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._evaluating, name="taskmgr-alerts", daemon=True)
        ]
        if self.delivery is not None:
            self._threads.append(
                threading.Thread(
                    target=self._delivering, name="taskmgr-alert-delivery", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop both threads (an attempt in progress ends within its timeout)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _evaluating(self) -> None:
        # The first round waits an interval and two thirds: a starting cluster claims
        # what is due before anything is judged late, and the rounds fall between the
        # heartbeats and the sweeps (by default all three every 5 s, the sweeps a third
        # of an interval after the heartbeats) instead of on them: two threads'
        # transactions at the same moment make the pool open a second connection,
        # which their next meeting would keep open.
        interval = self.settings.interval
        wait = interval * 5 / 3
        while not self._stop.wait(wait):
            wait = interval
            try:
                self.evaluate()
            except Exception:
                logger.exception("alert evaluation failed; retrying in %.1fs", interval)

    def _delivering(self) -> None:
        assert self.delivery is not None
        interval = self.settings.interval
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.delivery.deliver_due()
            except Exception:
                logger.exception("alert delivery failed; retrying in %.1fs", interval)
            self._wake.wait(interval)
