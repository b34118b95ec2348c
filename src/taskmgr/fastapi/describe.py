"""A trigger in words, for the dashboard and the ``schedule`` field of a job.

Covers the shapes people write most; anything else is shown as the expression
itself, which is never wrong.
"""

from __future__ import annotations

from taskmgr.core.triggers import Cron, Date, Interval, Manual, TriggerSpec

__all__ = ["describe_trigger"]

_DAYS = {
    "0": "Sunday",
    "1": "Monday",
    "2": "Tuesday",
    "3": "Wednesday",
    "4": "Thursday",
    "5": "Friday",
    "6": "Saturday",
    "7": "Sunday",
    "SUN": "Sunday",
    "MON": "Monday",
    "TUE": "Tuesday",
    "WED": "Wednesday",
    "THU": "Thursday",
    "FRI": "Friday",
    "SAT": "Saturday",
}
_WEEKDAYS = {"1-5", "MON-FRI"}


def _plural(count: int, unit: str) -> str:
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


def _every(seconds: float) -> str:
    if not seconds.is_integer():
        return f"every {seconds:g} seconds"
    whole = int(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if whole % size == 0:
            return _plural(whole // size, unit)
    return _plural(whole, "second")


def _cron(expression: str) -> str | None:
    fields = expression.split()
    if len(fields) != 5:
        return None  # a macro such as @daily
    minute, hour, dom, month, dow = fields
    if month != "*":
        return None
    if (minute, hour, dom, dow) == ("*", "*", "*", "*"):
        return "every minute"
    if minute.startswith("*/") and minute[2:].isdigit() and (hour, dom, dow) == ("*", "*", "*"):
        return _plural(int(minute[2:]), "minute")
    if not minute.isdigit():
        return None
    if (hour, dom, dow) == ("*", "*", "*"):
        return f"every hour at minute {int(minute)}"
    if not hour.isdigit():
        return None
    at = f"{int(hour):02d}:{int(minute):02d}"
    if dom == "*" and dow == "*":
        return f"every day at {at}"
    if dom == "*" and dow.upper() in _WEEKDAYS:
        return f"weekdays at {at}"
    if dom == "*" and dow.upper() in _DAYS:
        return f"every {_DAYS[dow.upper()]} at {at}"
    if dow == "*" and dom.isdigit():
        return f"day {int(dom)} of every month at {at}"
    return None


def describe_trigger(spec: TriggerSpec) -> str:
    """E.g. ``"every 5 minutes"``, ``"weekdays at 09:00 (Europe/Berlin)"``."""
    if isinstance(spec, Interval):
        return _every(spec.every.total_seconds())
    if isinstance(spec, Manual):
        return "when deferred (no schedule)"
    if isinstance(spec, Date):
        return f"once at {spec.at.isoformat().replace('+00:00', 'Z')}"
    assert isinstance(spec, Cron)
    words = _cron(spec.expression)
    text = words if words is not None else f"cron {spec.expression}"
    return f"{text} ({spec.timezone})"
