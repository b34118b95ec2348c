"""The alert webhook: one signed JSON ``POST`` per incident change, delivered off the
scheduler's threads, retried with a growing backoff, its state kept on the incident.

:class:`WebhookSender` makes one attempt (the standard library's HTTP client, bounded
by a timeout, redirects refused). :class:`NotificationDelivery` sends what is due:
each attempt is claimed on the incident first (a compare-and-set), so however many
instances deliver, an attempt is made by one of them; an instance that dies in the
middle of one leaves it to be retried once its claim runs out (delivery is at least
once: the ``X-Taskmgr-Delivery`` header names the change, for a receiver that wants to
drop a repeat).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.alerts import AlertSettings, Incident
from taskmgr.core.clock import Clock
from taskmgr.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from taskmgr.settings import redact_text, redact_url
from taskmgr.storage.base import Storage
from taskmgr.version import __version__

__all__ = [
    "DeliveryCounts",
    "NotificationDelivery",
    "WebhookSender",
    "backoff",
    "payload",
]

logger = logging.getLogger("taskmgr.alerts")

#: Seconds before the second attempt; each later one waits twice as long, at most
#: :data:`MAX_BACKOFF`.
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 600.0
#: Incidents one delivery pass takes at most.
BATCH = 20


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based)."""
    return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(attempt - 1, 16)))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def payload(incident: Incident, *, sent_at: datetime) -> bytes:
    """The JSON body telling ``incident``'s latest change."""
    body: dict[str, Any] = {
        "event": incident.event,
        "sent_at": _iso(sent_at),
        "incident": {
            "id": incident.id,
            "job_key": incident.job_key,
            "rule": incident.rule.value,
            "since": _iso(incident.since),
            "opened_at": _iso(incident.opened_at),
            "resolved_at": _iso(incident.resolved_at),
            "message": incident.message,
            "details": incident.details,
        },
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer of its own: the attempt failed


class WebhookSender:
    """One attempt at telling the webhook about an incident's latest change."""

    def __init__(self, url: str, *, secret: bytes | None, timeout: float) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects)

    def send(self, incident: Incident, *, now: datetime) -> str | None:
        """POST the change; None when the webhook answered 2xx, else why not."""
        body = payload(incident, sent_at=now)
        timestamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"taskmgr/{__version__}",
            "X-Taskmgr-Event": incident.event,
            "X-Taskmgr-Delivery": f"{incident.id}:{incident.event}",
            TIMESTAMP_HEADER: str(timestamp),
        }
        if self.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, timestamp)
        # the URL is an http(s) one: AlertSettings refuses any other scheme
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"HTTP {exc.code}"
        except TimeoutError:
            return f"timed out after {self.timeout:g} s"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                return f"timed out after {self.timeout:g} s"
            return redact_text(f"{type(exc).__name__}: {reason}")
        if not 200 <= status < 300:
            return f"HTTP {status}"
        return None


@dataclass
class DeliveryCounts:
    """What this process's deliveries did (the Prometheus counters read them)."""

    delivered: int = 0
    failed: int = 0
    given_up: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, delivered: int = 0, failed: int = 0, given_up: int = 0) -> None:
        with self._lock:
            self.delivered += delivered
            self.failed += failed
            self.given_up += given_up

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"delivered": self.delivered, "failed": self.failed, "given_up": self.given_up}


class NotificationDelivery:
    """Sends the due webhook deliveries of every incident, one attempt at a time."""

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        settings: AlertSettings,
        *,
        counts: DeliveryCounts | None = None,
        sender: WebhookSender | None = None,
    ) -> None:
        assert settings.webhook_url is not None
        self.storage = storage
        self.clock = clock
        self.attempts = settings.webhook_attempts
        self.sender = sender or WebhookSender(
            settings.webhook_url, secret=settings.secret(), timeout=settings.webhook_timeout
        )
        #: How long a claimed attempt is another instance's: the timeout and a margin.
        self.lease = timedelta(seconds=2 * settings.webhook_timeout + 10)
        self.counts = counts or DeliveryCounts()
        self._shown = redact_url(settings.webhook_url)

    def deliver_due(self) -> int:
        """Make the due attempts; returns how many were delivered."""
        done = 0
        for incident in self.storage.due_notifications(now=self.clock.now(), limit=BATCH):
            now = self.clock.now()
            claimed = self.storage.claim_notification(
                incident.id, attempts=incident.notify_attempts, now=now, until=now + self.lease
            )
            if claimed is None:
                continue  # another instance has it
            done += self._attempt(claimed)
        return done

    def _attempt(self, incident: Incident) -> int:
        attempt = incident.notify_attempts
        error = self.sender.send(incident, now=self.clock.now())
        now = self.clock.now()
        extra = {"taskmgr_job_key": incident.job_key, "taskmgr_incident_id": incident.id}
        if error is None:
            applied = self.storage.finish_notification(incident.id, attempt=attempt, now=now)
            if applied:
                self.counts.add(delivered=1)
            logger.info(
                "webhook told %s of incident %d (%s)", self._shown, incident.id, incident.event,
                extra=extra,
            )  # fmt: skip
            return 1
        retry_at = now + timedelta(seconds=backoff(attempt)) if attempt < self.attempts else None
        self.storage.finish_notification(
            incident.id, attempt=attempt, now=now, error=error, retry_at=retry_at
        )
        self.counts.add(failed=1, given_up=0 if retry_at is not None else 1)
        if retry_at is not None:
            logger.warning(
                "webhook %s failed for incident %d (%s), attempt %d of %d: %s; retrying at %s",
                self._shown, incident.id, incident.event, attempt, self.attempts, error,
                retry_at.isoformat(), extra=extra,
            )  # fmt: skip
        else:
            logger.error(
                "webhook %s failed for incident %d (%s) %d times, the last: %s; giving up",
                self._shown, incident.id, incident.event, attempt, error, extra=extra,
            )  # fmt: skip
        return 0
