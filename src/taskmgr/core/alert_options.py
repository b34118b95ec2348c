"""The alert options of a job and of the service, and their checks.

A job (``@scheduled_job``, ``@task``, ``create_job``, ``update_job``) and the service
(``AlertSettings``, the ``TASKMGR_ALERT_*`` settings) take the same four thresholds:

* ``alert_late_after``: seconds after its time a slot (or a run) may still not have
  started;
* ``alert_failures``: how many finished runs in a row may fail;
* ``alert_max_runtime``: seconds a run may go on;
* ``alert_no_success_within``: seconds the job may go without a successful run (the
  dead-man rule).

None turns a rule off (a job: inherits the service's). A threshold that is not
positive is refused with :class:`~taskmgr.exceptions.InvalidAlertError` naming it.
This module imports no model, so the job definition can use its checks.
"""

from __future__ import annotations

from typing import Any

from taskmgr.core.validation import bounded_seconds
from taskmgr.exceptions import InvalidAlertError

__all__ = [
    "ALERT_OPTIONS",
    "MAX_ALERT_FAILURES",
    "MAX_ALERT_SECONDS",
    "alert_count",
    "alert_seconds",
    "checked_alert_option",
]

#: The job options of the alert rules, in the order the docs list them.
ALERT_OPTIONS = (
    "alert_late_after",
    "alert_failures",
    "alert_max_runtime",
    "alert_no_success_within",
)
#: Longest alert threshold accepted (seconds): one year, as a job's ``timeout``.
MAX_ALERT_SECONDS = 366 * 86400.0
#: Largest ``alert_failures`` accepted.
MAX_ALERT_FAILURES = 1000


def alert_seconds(value: Any, field: str) -> float | None:
    """A threshold in seconds (a number or a timedelta) as a float, or None.

    :raises InvalidAlertError: not a positive duration of at most a year.
    """
    return bounded_seconds(
        value,
        field=field,
        most=MAX_ALERT_SECONDS,
        error=InvalidAlertError,
        kinds="None, a number of seconds or a timedelta",
        bound=f"more than 0 and at most {MAX_ALERT_SECONDS:.0f} seconds (366 days)",
    )


def alert_count(value: Any, field: str = "alert_failures") -> int | None:
    """A number of failed runs in a row, or None.

    :raises InvalidAlertError: not an integer in 1-1000.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAlertError(f"must be None or an integer, got {value!r}", field=field)
    if not 1 <= value <= MAX_ALERT_FAILURES:
        raise InvalidAlertError(
            f"must be an integer in 1-{MAX_ALERT_FAILURES}, got {value!r}", field=field
        )
    return value


def checked_alert_option(name: str, value: Any) -> float | int | None:
    """``value`` checked as the alert option ``name`` (one of :data:`ALERT_OPTIONS`)."""
    if name == "alert_failures":
        return alert_count(value, name)
    return alert_seconds(value, name)
