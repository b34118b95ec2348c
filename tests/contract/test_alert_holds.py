"""Contract: what holds a job back on purpose raises no alert, on every backend with the
same answers. A slot a ``defer`` window holds is late only ``alert_late_after`` after
the window closes; the dead-man rule leaves out the time inside the windows that cover
a job and on its exclusion dates; a pause of its queue or of the service holds ``late``
and ``no_success`` (their incidents resolve), and once it has ended both count from its
end. Resolved incidents are deleted by age (the retention's), open ones never."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from taskmgr.core.alerts import AlertDefaults, AlertRule, Incident, NotifyState
from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.enums import ExecutionStatus, ExecutionTrigger, PauseScope
from taskmgr.core.pauses import Pause
from taskmgr.core.triggers import Cron, Interval
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.storage.base import AuditRecord, Storage

from .helpers import MINUTE, T0, add_job, new_execution

SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
OFF = AlertDefaults()
EVERY_MINUTE = Interval(MINUTE, start=T0 - 60 * MINUTE)


def window(name: str, **fields: object) -> MaintenanceWindow:
    fields.setdefault("created_at", T0 - DAY)
    return MaintenanceWindow(name=name, **fields)


def evaluate(storage: Storage, now: datetime) -> dict[tuple[str | None, AlertRule], Incident]:
    """The open incidents after an evaluation at ``now``."""
    assert storage.evaluate_alerts(now=now, defaults=OFF) is not None
    return {(i.job_key, i.rule): i for i in storage.list_incidents(limit=50, open_only=True)}


def resume(storage: Storage, scope: PauseScope, name: str | None, at: datetime) -> None:
    record = AuditRecord(action=AuditAction.RESUME, source=AuditSource.API, at=at, actor="ops")
    assert storage.delete_pause(scope, name, audit=record) is not None


# -- late ------------------------------------------------------------------------------


def test_a_slot_a_defer_window_holds_is_late_only_after_the_window_closes(
    storage: Storage,
) -> None:
    close = T0 + 10 * MINUTE
    add_job(storage, "held", next_run_at=T0 - 5 * MINUTE, trigger=EVERY_MINUTE, alert_late_after=30)
    add_job(storage, "free", next_run_at=T0 - 5 * MINUTE, alert_late_after=30)
    storage.add_window(
        window("deploy", job_key="held", action="defer", start=T0 - 6 * MINUTE, end=close),
        now=T0 - 6 * MINUTE,
    )
    # the held slot is 5 minutes old, and not late: it is due when the window closes
    assert set(evaluate(storage, T0)) == {("free", AlertRule.LATE)}
    assert ("held", AlertRule.LATE) not in evaluate(storage, close + 29 * SECOND)
    # nobody took it once the window closed: late from the close on
    incident = evaluate(storage, close + 30 * SECOND)[("held", AlertRule.LATE)]
    assert incident.since == close + 30 * SECOND
    assert incident.details["kind"] == "slot"
    assert incident.details["held_until"] == "2026-03-01T12:10:00.123456Z"
    assert "held until 2026-03-01T12:10:00.123456Z" in incident.message


def test_a_slot_missed_after_a_defer_window_counts_from_its_close(storage: Storage) -> None:
    close = T0 - 10 * MINUTE
    held = add_job(storage, "held", next_run_at=T0 + HOUR, alert_late_after=60)
    before = add_job(storage, "before", next_run_at=T0 + HOUR, alert_late_after=60)
    storage.add_window(
        window("deploy", action="defer", start=T0 - HOUR, end=close), now=T0 - 2 * HOUR
    )
    for job, slot in ((held, T0 - 30 * MINUTE), (before, T0 - 90 * MINUTE)):
        missed = new_execution(
            job,
            scheduled_for=slot,
            status=ExecutionStatus.MISSED,
            trigger=ExecutionTrigger.SCHEDULE,
            completed_at=close,
        )
        storage.add_execution(missed)
    # a slot before the window is late from its time; one the window held, from its close
    found = evaluate(storage, close + 59 * SECOND)
    assert set(found) == {("before", AlertRule.LATE)}
    assert found["before", AlertRule.LATE].since == T0 - 89 * MINUTE
    incident = evaluate(storage, close + MINUTE)[("held", AlertRule.LATE)]
    assert (incident.details["kind"], incident.since) == ("missed", close + MINUTE)


def test_a_pause_of_the_queue_or_service_holds_late_and_no_success_until_it_ends(
    storage: Storage,
) -> None:
    job = add_job(
        storage,
        "report",
        next_run_at=T0 + 10 * DAY,
        queue="reports",
        alert_late_after=30,
        alert_no_success_within=3600,
        now=T0 - 2 * HOUR,
    )
    storage.add_execution(new_execution(job, scheduled_for=T0 - HOUR, due_at=T0 - HOUR))
    broken = {("report", AlertRule.LATE), ("report", AlertRule.NO_SUCCESS)}
    assert set(evaluate(storage, T0)) == broken

    # paused: not expected to run, its incidents resolve (a paused job's do too)
    storage.set_pause(Pause(scope=PauseScope.QUEUE, name="reports", paused_at=T0))
    assert evaluate(storage, T0 + SECOND) == {}
    assert evaluate(storage, T0 + DAY) == {}
    # resumed: the run still waits an hour later, but lateness counts from the resume,
    # and the job gets a whole window of no success from it
    resumed = T0 + DAY
    resume(storage, PauseScope.QUEUE, "reports", resumed)
    assert evaluate(storage, resumed + 29 * SECOND) == {}
    late = evaluate(storage, resumed + 30 * SECOND)[("report", AlertRule.LATE)]
    assert late.since == resumed + 30 * SECOND
    assert late.details["held_until"] == "2026-03-02T12:00:00.123456Z"
    assert ("report", AlertRule.NO_SUCCESS) not in evaluate(storage, resumed + 3599 * SECOND)
    dead = evaluate(storage, resumed + HOUR)[("report", AlertRule.NO_SUCCESS)]
    assert dead.since == resumed + HOUR
    assert "since a pause that held it ended at 2026-03-02T12:00:00.123456Z" in dead.message

    # the service's pause holds every job; one whose until has come ended then, even
    # before a claim removed it
    until = resumed + 2 * HOUR
    storage.set_pause(
        Pause(scope=PauseScope.SERVICE, name=None, paused_at=resumed + HOUR, until=until)
    )
    assert evaluate(storage, until - SECOND) == {}
    assert evaluate(storage, until + 29 * SECOND) == {}
    assert set(evaluate(storage, until + 30 * SECOND)) == {("report", AlertRule.LATE)}
    assert set(evaluate(storage, until + HOUR)) == broken


# -- no_success --------------------------------------------------------------------------


def test_no_success_leaves_out_the_time_inside_the_job_s_windows(storage: Storage) -> None:
    created = T0 - MINUTE
    add_job(storage, "nightly", next_run_at=T0 + DAY, alert_no_success_within=3600, now=created)
    add_job(storage, "other", next_run_at=T0 + DAY, alert_no_success_within=3600, now=created)
    # an hour of a skip window on the job, an overlapping half hour of a service-wide one
    storage.add_window(
        window("db", job_key="nightly", start=created + 30 * MINUTE, end=created + 90 * MINUTE),
        now=created,
    )
    storage.add_window(
        window("all", action="defer", start=created + 80 * MINUTE, end=created + 110 * MINUTE),
        now=created,
    )
    # "other": its hour of free time ends at 60 minutes, before "all" opens
    found = evaluate(storage, created + 61 * MINUTE)
    assert found["other", AlertRule.NO_SUCCESS].since == created + HOUR
    assert ("nightly", AlertRule.NO_SUCCESS) not in found
    # "nightly": held from 30 to 110 minutes, so its hour of free time ends at 140
    assert ("nightly", AlertRule.NO_SUCCESS) not in evaluate(storage, created + 139 * MINUTE)
    incident = evaluate(storage, created + 140 * MINUTE)[("nightly", AlertRule.NO_SUCCESS)]
    assert incident.since == created + 140 * MINUTE
    assert incident.details["held_seconds"] == 80 * 60
    assert "not counting 4800 s inside maintenance windows" in incident.message


def test_no_success_leaves_out_the_job_s_excluded_days(storage: Storage) -> None:
    created = T0 - MINUTE  # 2026-03-01 11:59 UTC; the 2nd is excluded, whole
    add_job(
        storage,
        "daily",
        next_run_at=T0 + DAY,
        alert_no_success_within=86400,
        exclude_dates=[date(2026, 3, 2)],
        now=created,
    )
    assert evaluate(storage, created + DAY + HOUR) == {}
    assert evaluate(storage, created + 2 * DAY - SECOND) == {}
    incident = evaluate(storage, created + 2 * DAY)[("daily", AlertRule.NO_SUCCESS)]
    assert incident.since == created + 2 * DAY
    assert incident.details["held_seconds"] == 86400


def test_an_excluded_day_is_read_in_the_trigger_s_time_zone(storage: Storage) -> None:
    created = T0 - MINUTE  # 11:59 UTC; the 2nd in Berlin begins at 23:00 UTC on the 1st
    for key, trigger in (
        ("utc", EVERY_MINUTE),
        ("berlin", Cron("0 9 * * *", timezone="Europe/Berlin")),
    ):
        add_job(
            storage,
            key,
            next_run_at=T0 + DAY,
            trigger=trigger,
            alert_no_success_within=12 * 3600,
            exclude_dates=[date(2026, 3, 2)],
            now=created,
        )
    found = evaluate(storage, created + 12 * HOUR)  # 23:59 UTC on the 1st
    assert set(found) == {("utc", AlertRule.NO_SUCCESS)}
    # 11 free hours until 23:00 UTC, held 24 hours, the last hour: 23:59 UTC on the 2nd
    assert ("berlin", AlertRule.NO_SUCCESS) not in evaluate(storage, created + 36 * HOUR - SECOND)
    incident = evaluate(storage, created + 36 * HOUR)[("berlin", AlertRule.NO_SUCCESS)]
    assert incident.since == created + 36 * HOUR


# -- retention of incidents ------------------------------------------------------------------


def test_resolved_incidents_are_deleted_by_age_never_open_or_undelivered_ones(
    storage: Storage,
) -> None:
    for key in ("a", "b", "c", "d"):
        add_job(storage, key, next_run_at=T0 - MINUTE, alert_late_after=1)
    ids = {key: incident.id for (key, _), incident in evaluate(storage, T0).items()}
    for key in ("a", "b"):
        storage.update_job(key, {"next_run_at": T0 + DAY}, now=T0)
    assert set(evaluate(storage, T0 + HOUR)) == {("c", AlertRule.LATE), ("d", AlertRule.LATE)}
    storage.update_job("c", {"next_run_at": T0 + DAY}, now=T0)
    changes = storage.evaluate_alerts(now=T0 + 2 * HOUR, defaults=OFF, notify=True)
    assert changes is not None
    [told] = changes.resolved  # its resolution is still to be told
    assert told.notify_state is NotifyState.PENDING

    def left() -> list[str | None]:
        return sorted(i.job_key for i in storage.list_incidents(limit=10))  # type: ignore[type-var]

    assert storage.delete_incidents(resolved_before=T0 + HOUR, limit=10) == 0  # not before
    assert storage.delete_incidents(resolved_before=T0 + 3 * HOUR, limit=1) == 1  # oldest first
    assert left() == ["b", "c", "d"]
    assert storage.delete_incidents(resolved_before=T0 + 3 * HOUR, limit=10) == 1
    # c waits for its delivery, d is open: both stay, however old
    assert storage.delete_incidents(resolved_before=T0 + 1000 * DAY, limit=10) == 0
    assert left() == ["c", "d"]
    assert storage.claim_notification(told.id, attempts=0, now=T0 + 3 * HOUR, until=T0 + 4 * HOUR)
    assert storage.finish_notification(told.id, attempt=1, now=T0 + 3 * HOUR)
    assert storage.delete_incidents(resolved_before=T0 + 1000 * DAY, limit=10) == 1
    assert [i.id for i in storage.list_incidents(limit=10)] == [ids["d"]]
