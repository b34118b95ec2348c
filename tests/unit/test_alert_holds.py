"""What windows, exclusion dates and pauses do to the ``late`` and ``no_success`` rules,
as pure functions: when a held slot's lateness counts from, how far the time a job was
held stretches its window of no success (DST days and overlapping windows included),
and the ends of pauses read from the audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from taskmgr.core.alert_holds import Releases, late_from, no_success_deadline, releases
from taskmgr.core.enums import PauseScope
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.storage.alerting import pause_end

T0 = datetime(2026, 3, 2, 1, 5, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def window(name: str, **fields: object) -> MaintenanceWindow:
    return MaintenanceWindow(name=name, created_at=T0 - DAY, **fields)


NIGHTLY = window("nightly", cron="0 2 * * *", duration=2 * 3600)  # 02:00-04:00 UTC


def test_the_time_inside_windows_that_cover_the_job_is_left_out() -> None:
    assert no_success_deadline("a", T0, 7200) == T0 + 2 * HOUR
    # 55 minutes free, two hours held, then the 65 minutes left: 05:05
    assert no_success_deadline("a", T0, 7200, windows=[NIGHTLY]) == T0 + 4 * HOUR
    other = window("other", job_key="b", start=T0, end=T0 + DAY)
    assert no_success_deadline("a", T0, 7200, windows=[other]) == T0 + 2 * HOUR
    # the job's window and a service-wide one overlapping are held once, not twice
    own = window("own", job_key="a", start=T0 + 2 * HOUR, end=T0 + 3 * HOUR + 25 * MINUTE)
    assert no_success_deadline("a", T0, 7200, windows=[NIGHTLY, own]) == T0 + 4.5 * HOUR


def test_a_job_windows_hold_all_the_time_never_breaks() -> None:
    always = window("always", cron="0 * * * *", duration=3600)
    assert no_success_deadline("a", T0, 60, windows=[always]) is None


def test_an_excluded_day_is_a_whole_day_of_the_trigger_s_zone() -> None:
    start = datetime(2026, 3, 28, 12, tzinfo=UTC)
    # 29 March 2026 in Berlin is 23 hours long (the clocks spring forward)
    dst_day = [date(2026, 3, 29)]
    found = no_success_deadline("a", start, 86400, exclude_dates=dst_day, timezone="Europe/Berlin")
    assert found == start + DAY + 23 * HOUR
    assert no_success_deadline("a", start, 86400, exclude_dates=dst_day) == start + 2 * DAY


def test_a_held_slot_is_due_when_the_last_window_holding_it_closes() -> None:
    deploy = window("deploy", job_key="a", action="defer", start=T0, end=T0 + HOUR)
    freeze = window("freeze", action="defer", start=T0 - HOUR, end=T0 + 2 * HOUR)
    slot = T0 + 10 * MINUTE
    assert late_from("a", slot, slot=True, windows=[deploy]) == T0 + HOUR
    assert late_from("a", slot, slot=True, windows=[deploy, freeze]) == T0 + 2 * HOUR
    assert late_from("b", slot, slot=True, windows=[deploy]) == slot
    assert late_from("a", slot, slot=False, windows=[deploy]) == slot  # a pending run
    skip = window("skip", start=T0, end=T0 + HOUR)
    assert late_from("a", slot, slot=True, windows=[skip]) == slot  # recorded, not held
    assert late_from("a", slot, slot=False, released=T0 + 3 * HOUR) == T0 + 3 * HOUR
    assert late_from("a", slot, slot=False, released=T0) == slot


def test_the_ends_of_pauses() -> None:
    ends = releases(
        [
            (PauseScope.QUEUE, "reports", T0),
            (PauseScope.QUEUE, "reports", T0 - HOUR),
            (PauseScope.SERVICE, None, T0 - 2 * HOUR),
            (PauseScope.QUEUE, "mail", T0 - 3 * HOUR),
        ]
    )
    assert ends.of("reports") == T0
    assert ends.of("mail") == ends.of(None) == ends.of("other") == T0 - 2 * HOUR
    assert Releases().of("reports") is None
    # a resume entry's time, or the pause's until when earlier (it ended by itself)
    pause = {"scope": "queue", "name": "reports", "until": None}
    assert pause_end(T0, {"pause": pause}) == (PauseScope.QUEUE, "reports", T0)
    ran_out = {**pause, "until": (T0 - HOUR).isoformat()}
    assert pause_end(T0, {"pause": ran_out}) == (PauseScope.QUEUE, "reports", T0 - HOUR)
    assert pause_end(T0, {"pause": {"scope": "service", "name": None}}) == (
        PauseScope.SERVICE,
        None,
        T0,
    )
    assert pause_end(T0, {"pause": {"scope": "job", "name": "a"}}) is None
    assert pause_end(T0, {"pause": {"scope": "nonsense"}}) is None
    assert pause_end(T0, {"changes": {}}) is None
