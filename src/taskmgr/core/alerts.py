"""Alerts from the schedule itself: the rules, the service's alert settings, incidents.

An **alert rule** watches every job that has a threshold for it (its own, else the
service's default, :class:`AlertSettings`):

* ``late``: a slot of its schedule, or a run of it, has not started
  ``alert_late_after`` seconds after its time: the slot is still unclaimed, the run
  still pending (queued, retrying, deferred), or dispatched and not taken by a worker,
  or the slot was recorded ``missed`` and no later slot has run;
* ``failing``: its last ``alert_failures`` finished runs (the last attempt of each,
  so a retry that succeeds is a success) all failed, timed out or were lost;
* ``overrunning``: one of its runs has been running ``alert_max_runtime`` seconds;
* ``no_success``: it has had no successful run for ``alert_no_success_within``
  seconds (counted from its last change, a creation, an update or a resume, when that
  is later: the dead-man rule).

A breach opens one **incident** for the whole cluster (one open incident per job and
rule is a unique index of the database); it is resolved when the rule holds no more.
``late``, ``failing`` and ``no_success`` judge active jobs (a paused or orphaned job
is not expected to run: its incidents resolve), ``late`` and ``no_success`` only those
no pause of their queue or of the service holds; ``overrunning`` judges every run.
What maintenance windows, exclusion dates and the end of a pause do to ``late`` and
``no_success`` is :mod:`taskmgr.core.alert_holds`.
The service's defaults for ``late`` and ``no_success`` apply to jobs with a schedule
only (a task has no slots, and no rhythm to fall silent from); a job's own threshold
applies whatever it is.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, ValidationError, field_validator

from taskmgr.core.alert_options import alert_count, alert_seconds
from taskmgr.core.job_definition import FrozenModel
from taskmgr.core.models import Job, JobState
from taskmgr.core.triggers import Manual
from taskmgr.core.validation import reraise_validation
from taskmgr.exceptions import InvalidWebhookError
from taskmgr.settings import TaskmgrSettings, redact_url

__all__ = [
    "DEFAULT_ALERT_INTERVAL",
    "MAX_WEBHOOK_URL",
    "RULE_OPTIONS",
    "AlertDefaults",
    "AlertRule",
    "AlertSettings",
    "Breach",
    "Incident",
    "IncidentChanges",
    "NotifyState",
    "check_webhook_url",
    "incident_changes",
    "judged",
    "threshold",
]

#: Seconds between two evaluations of the rules (by one instance of the cluster).
DEFAULT_ALERT_INTERVAL = 5.0
#: Longest webhook URL accepted.
MAX_WEBHOOK_URL = 2000


class AlertRule(enum.StrEnum):
    """What an incident is about."""

    LATE = "late"
    FAILING = "failing"
    OVERRUNNING = "overrunning"
    NO_SUCCESS = "no_success"


#: The job option (and the :class:`AlertDefaults` field, without ``alert_``) of each rule.
RULE_OPTIONS = {
    AlertRule.LATE: "alert_late_after",
    AlertRule.FAILING: "alert_failures",
    AlertRule.OVERRUNNING: "alert_max_runtime",
    AlertRule.NO_SUCCESS: "alert_no_success_within",
}
#: Rules whose service default applies to jobs with a schedule only.
_SCHEDULED_ONLY = frozenset({AlertRule.LATE, AlertRule.NO_SUCCESS})


class NotifyState(enum.StrEnum):
    """Where the webhook delivery of an incident's latest change stands."""

    #: To be sent (again, after a failed attempt, at ``notify_next_at``).
    PENDING = "pending"
    DELIVERED = "delivered"
    #: Every attempt failed: given up (the incident itself stays as it is).
    FAILED = "failed"


class AlertDefaults(FrozenModel):
    """The thresholds a job without its own inherits (None: that rule is off)."""

    late_after: float | None = None
    failures: int | None = None
    max_runtime: float | None = None
    no_success_within: float | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            reraise_validation(exc)

    @field_validator("late_after", "max_runtime", "no_success_within", mode="before")
    @classmethod
    def _seconds(cls, value: Any, info: Any) -> float | None:
        return alert_seconds(value, f"alert_{info.field_name}")

    @field_validator("failures", mode="before")
    @classmethod
    def _count(cls, value: Any) -> int | None:
        return alert_count(value)

    def of(self, rule: AlertRule) -> float | int | None:
        value: float | int | None = getattr(self, RULE_OPTIONS[rule].removeprefix("alert_"))
        return value

    @property
    def any(self) -> bool:
        return any(self.of(rule) is not None for rule in AlertRule)


class AlertSettings(AlertDefaults):
    """The alerting of a service: the default thresholds, how often the rules are
    evaluated, and the webhook that is told about each incident.

    ``webhook_url`` (``http://`` or ``https://``) receives a signed JSON ``POST`` when
    an incident opens and when it resolves, with ``webhook_secret`` as the HMAC key
    (``X-Taskmgr-Signature``; see :mod:`taskmgr.core.signing`), each attempt bounded
    by ``webhook_timeout`` seconds, tried ``webhook_attempts`` times with a growing
    backoff. Host configuration only: never read from the API or the database.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    #: Seconds between two evaluations (by whichever instance holds the alert lock).
    interval: float = Field(DEFAULT_ALERT_INTERVAL, gt=0, le=3600, allow_inf_nan=False)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout: float = Field(5.0, gt=0, le=60, allow_inf_nan=False)
    webhook_attempts: int = Field(8, ge=1, le=50)

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> str | None:
        return None if value is None else check_webhook_url(value)

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Any:
        if value is None or isinstance(value, SecretStr):
            return value
        if not isinstance(value, str) or not value or len(value) > 1000:
            raise InvalidWebhookError(
                "must be a non-empty string of at most 1000 characters", field="webhook_secret"
            )
        return value

    @classmethod
    def from_settings(cls, settings: TaskmgrSettings) -> AlertSettings:
        """The alerting the ``alert_*`` settings (``TASKMGR_ALERT_*``) describe."""
        return cls(
            late_after=settings.alert_late_after,
            failures=settings.alert_failures,
            max_runtime=settings.alert_max_runtime,
            no_success_within=settings.alert_no_success_within,
            interval=settings.alert_interval,
            webhook_url=settings.alert_webhook_url,
            webhook_secret=settings.alert_webhook_secret,
        )

    @property
    def defaults(self) -> AlertDefaults:
        return AlertDefaults(
            late_after=self.late_after,
            failures=self.failures,
            max_runtime=self.max_runtime,
            no_success_within=self.no_success_within,
        )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "webhook_url" and value is not None:
                value = redact_url(value)  # a token in its query is a secret too
            yield name, value

    def secret(self) -> bytes | None:
        """The webhook's signing key (never shown)."""
        if self.webhook_secret is None:
            return None
        return self.webhook_secret.get_secret_value().encode()


def check_webhook_url(value: object) -> str:
    """``value`` if it is an ``http://`` or ``https://`` URL with a host, of at most
    :data:`MAX_WEBHOOK_URL` characters, without whitespace or control characters.

    :raises InvalidWebhookError: otherwise (nothing is stored).
    """
    if not isinstance(value, str):
        raise InvalidWebhookError(f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_WEBHOOK_URL or any(c.isspace() or ord(c) < 32 for c in value):
        raise InvalidWebhookError(
            f"must be a URL of at most {MAX_WEBHOOK_URL} characters without spaces"
        )
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise InvalidWebhookError("is not a URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "no scheme"
        raise InvalidWebhookError(f"must be an http:// or https:// URL, got {shown}")
    if not host:
        raise InvalidWebhookError("has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookError("must not carry a user or password: sign with webhook_secret")
    return value


class Incident(FrozenModel):
    """One breach of an alert rule: open until the rule holds no more."""

    id: int
    #: The job it is about (None: the whole service).
    job_key: str | None
    rule: AlertRule
    #: When the breach began, by the rule (e.g. the late slot's time plus its threshold).
    since: datetime
    opened_at: datetime
    resolved_at: datetime | None = None
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
    #: The webhook delivery of its latest change (opened, then resolved); None: the
    #: instance that changed it had no webhook.
    notify_state: NotifyState | None = None
    #: Attempts at delivering its latest change.
    notify_attempts: int = 0
    #: When the next attempt may be made (while pending).
    notify_next_at: datetime | None = None
    #: When its latest change was delivered.
    notified_at: datetime | None = None
    #: Why the last attempt failed.
    notify_error: str | None = None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def event(self) -> str:
        """The change a webhook delivery tells: ``incident.opened`` or
        ``incident.resolved`` (an incident resolved before its opening was delivered is
        told once, resolved, with both times)."""
        return "incident.opened" if self.resolved_at is None else "incident.resolved"

    def describe(self) -> str:
        what = f"job {self.job_key!r}" if self.job_key is not None else "the service"
        return f"{what} {self.rule.value}: {self.message}"


@dataclass(frozen=True, slots=True)
class Breach:
    """A rule that does not hold for a job, as one evaluation found it."""

    job_key: str
    rule: AlertRule
    since: datetime
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str | None, AlertRule]:
        return self.job_key, self.rule


@dataclass(frozen=True, slots=True)
class IncidentChanges:
    """What one evaluation opened and resolved."""

    opened: Sequence[Incident] = ()
    resolved: Sequence[Incident] = ()

    def __bool__(self) -> bool:
        return bool(self.opened or self.resolved)


def threshold(job: Job, rule: AlertRule, defaults: AlertDefaults) -> float | int | None:
    """The threshold of ``rule`` for ``job``: its own, else the service's default
    (for ``late`` and ``no_success``, only if it has a schedule); None: off."""
    own: float | int | None = getattr(job, RULE_OPTIONS[rule])
    if own is not None:
        return own
    if rule in _SCHEDULED_ONLY and isinstance(job.trigger, Manual):
        return None
    return defaults.of(rule)


def judged(job: Job, rule: AlertRule) -> bool:
    """Whether ``rule`` judges ``job`` in its state: ``overrunning`` always, the others
    only while it is active."""
    return rule is AlertRule.OVERRUNNING or job.state is JobState.ACTIVE


def incident_changes(
    breaches: Iterable[Breach], open_incidents: Iterable[Incident]
) -> tuple[list[Breach], list[Incident]]:
    """What an evaluation does: the breaches to open an incident for (none is open for
    their job and rule), and the open incidents to resolve (their rule holds again,
    or their job is gone). One breach per job and rule: the earliest ``since`` wins."""
    found: dict[tuple[str | None, AlertRule], Breach] = {}
    for breach in breaches:
        held = found.get(breach.key)
        if held is None or breach.since < held.since:
            found[breach.key] = breach
    opened = {(incident.job_key, incident.rule): incident for incident in open_incidents}
    to_open = [breach for key, breach in sorted(found.items(), key=_order) if key not in opened]
    to_resolve = [incident for key, incident in opened.items() if key not in found]
    return to_open, sorted(to_resolve, key=lambda incident: incident.id)


def _order(item: tuple[tuple[str | None, AlertRule], Breach]) -> tuple[str, str]:
    (job_key, rule), _ = item
    return job_key or "", rule.value
