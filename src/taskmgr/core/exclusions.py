"""Exclusion dates: a job's option naming days (holidays, say) on which the slots of
its schedule are recorded ``skipped`` instead of run. A slot's date is read in its
trigger's time zone (a cron trigger's ``timezone``, else UTC); the planner applies
the rule (``docs/alerting-and-maintenance.md``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from taskmgr.exceptions import InvalidPolicyError

__all__ = ["MAX_EXCLUDE_DATES", "check_exclude_dates", "excluded_date"]

#: Most exclusion dates one job keeps.
MAX_EXCLUDE_DATES = 1000


def check_exclude_dates(value: object) -> tuple[date, ...]:
    """Exclusion dates as a job keeps them: sorted, each once. Accepts dates (not
    datetimes) and ISO strings ``YYYY-MM-DD``; None is none.

    :raises InvalidPolicyError: anything else, or more than :data:`MAX_EXCLUDE_DATES`.
    """
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidPolicyError(
            f"must be a list of dates (YYYY-MM-DD), got {type(value).__name__}",
            field="exclude_dates",
        )
    days: set[date] = set()
    for index, item in enumerate(value):
        if isinstance(item, str):
            try:
                item = date.fromisoformat(item) if len(item) == 10 else None
            except ValueError:
                item = None
        if not isinstance(item, date) or isinstance(item, datetime):
            raise InvalidPolicyError(
                "must be a date or an ISO date YYYY-MM-DD", field=f"exclude_dates[{index}]"
            )
        days.add(item)
        if len(days) > MAX_EXCLUDE_DATES:
            raise InvalidPolicyError(f"at most {MAX_EXCLUDE_DATES} dates", field="exclude_dates")
    return tuple(sorted(days))


def excluded_date(exclude_dates: Sequence[date], timezone: str, slot: datetime) -> date | None:
    """The date of ``slot`` in ``timezone`` if it is one of ``exclude_dates``."""
    if not exclude_dates:
        return None
    day = slot.astimezone(ZoneInfo(timezone)).date()
    return day if day in exclude_dates else None
