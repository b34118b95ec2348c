"""The service's side of alerting: the incidents of the alert rules, the host's
incident listeners, and one evaluation driven by hand (a running service evaluates by
itself, see :mod:`taskmgr.scheduling.alerts`)."""

from __future__ import annotations

from taskmgr.core.alerts import AlertSettings, Incident, IncidentChanges
from taskmgr.scheduling.alerts import IncidentListener, IncidentListeners, evaluate_once
from taskmgr.scheduling.webhook import DeliveryCounts, NotificationDelivery
from taskmgr.service.arguments import check_limit
from taskmgr.service.base import ServiceBase

__all__ = ["AlertCommands"]


class AlertCommands(ServiceBase):
    """The incidents and alerting of :class:`~taskmgr.service.SchedulerService`."""

    #: The service's alerting: default thresholds, evaluation interval, webhook.
    alerts: AlertSettings
    _incident_listeners: IncidentListeners
    #: What this process's webhook deliveries did (for metrics).
    alert_counts: DeliveryCounts
    instance_id: str

    def list_incidents(
        self,
        *,
        open_only: bool = False,
        job_key: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> list[Incident]:
        """Incidents newest first (at most ``limit``, 1-500): only the open ones
        with ``open_only``, only one job's with ``job_key``; ``before`` is the ``id`` of
        the last incident of the previous page."""
        check_limit(limit)
        self.open()
        return self.storage.list_incidents(
            open_only=open_only,
            job_key=job_key,
            limit=limit,
            before=before,
        )

    def add_incident_listener(self, listener: IncidentListener) -> None:
        """Call ``listener(event)`` for each :class:`~taskmgr.IncidentEvent` this
        instance makes (an incident opened or resolved: each is told by one instance of
        the cluster, the one whose evaluation made it), on the listeners' thread, after
        the change is committed. One that raises is logged; the others still run."""
        self._incident_listeners.add(listener)

    def remove_incident_listener(self, listener: IncidentListener) -> None:
        """Stop calling ``listener`` (added with :meth:`add_incident_listener`)."""
        self._incident_listeners.remove(listener)

    def check_alerts(self, *, deliver: bool = True) -> IncidentChanges | None:
        """Evaluate the alert rules once, now, and (with ``deliver`` and a webhook)
        make the webhook deliveries that are due: what a started service does every
        ``alerts.interval`` seconds, for tests and scripts that drive time by hand
        (``background=False``). Returns what was opened and resolved; None when
        another instance was evaluating at that moment (nothing was done)."""
        self.open()
        changes = evaluate_once(
            self.storage,
            self.clock,
            self.alerts,
            instance_id=self.instance_id,
            listeners=self._incident_listeners,
            hub=self.events,
        )
        if deliver and self.alerts.webhook_url is not None:
            NotificationDelivery(
                self.storage, self.clock, self.alerts, counts=self.alert_counts
            ).deliver_due()
        return changes
