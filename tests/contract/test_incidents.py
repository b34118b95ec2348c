"""Contract: the alert rules evaluated by the storage, the incidents they open and
resolve (one open incident per job and rule, however many evaluate), and the webhook
deliveries of their changes, on every backend with the same answers."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from taskmgr.core.alerts import AlertDefaults, AlertRule, Incident, NotifyState
from taskmgr.core.enums import ExecutionStatus, ExecutionTrigger, JobState, PauseScope
from taskmgr.core.pauses import Pause
from taskmgr.core.triggers import Manual
from taskmgr.exceptions import InvalidInputError
from taskmgr.storage.base import ExecutionFilter, Outcome, Storage
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage, migrate
from tests.conftest import OpenStorage

from .helpers import MINUTE, T0, add_job, new_execution, running

OWNER = "instance-a"
SECOND = timedelta(seconds=1)
OFF = AlertDefaults()


def finished(
    storage: Storage,
    job_key: str,
    status: ExecutionStatus,
    *,
    at: datetime,
    error: str | None = None,
    retry: bool = False,
    chain_of: str | None = None,
    attempt: int = 1,
) -> str:
    """A run of ``job_key`` that ran and ended with ``status`` at ``at`` (its retry
    inserted pending with ``retry``); returns its id."""
    job = storage.get_job(job_key)
    execution = storage.add_execution(
        running(
            job,
            OWNER,
            scheduled_for=at - MINUTE,
            created_at=at - MINUTE,
            attempt=attempt,
            chain_id=chain_of,
            trigger=ExecutionTrigger.MANUAL if attempt == 1 else ExecutionTrigger.RETRY,
        )
    )
    follow = None
    if retry:
        follow = new_execution(
            job,
            scheduled_for=at - MINUTE,
            attempt=attempt + 1,
            chain_id=execution.chain_id,
            trigger=ExecutionTrigger.RETRY,
            due_at=at + MINUTE,
            created_at=at,
        )
    [applied] = storage.record_outcomes(
        [
            Outcome(
                execution_id=execution.id,
                owner=OWNER,
                status=status,
                started_at=at - MINUTE,
                completed_at=at,
                error_type=None if error is None else "builtins.ValueError",
                error_message=error,
                retry=follow,
            )
        ]
    )
    assert applied
    return execution.id


def opened(storage: Storage, now: datetime, defaults: AlertDefaults = OFF) -> list[Incident]:
    changes = storage.evaluate_alerts(now=now, defaults=defaults)
    assert changes is not None
    return list(changes.opened)


def resolved(storage: Storage, now: datetime, defaults: AlertDefaults = OFF) -> list[Incident]:
    changes = storage.evaluate_alerts(now=now, defaults=defaults)
    assert changes is not None
    assert list(changes.opened) == []
    return list(changes.resolved)


# -- the rules -------------------------------------------------------------------------


def test_failing_counts_the_last_runs_and_a_success_resolves(storage: Storage) -> None:
    add_job(storage, "nightly", next_run_at=T0 + MINUTE, alert_failures=3)
    finished(storage, "nightly", ExecutionStatus.FAILED, at=T0 - 9 * MINUTE, error="old")
    finished(storage, "nightly", ExecutionStatus.SUCCESS, at=T0 - 8 * MINUTE)
    finished(storage, "nightly", ExecutionStatus.TIMEOUT, at=T0 - 7 * MINUTE)
    last = finished(storage, "nightly", ExecutionStatus.FAILED, at=T0 - 6 * MINUTE, error="no")
    assert opened(storage, T0) == []  # two failures since the success
    # a failed attempt whose retry is still to come does not count yet
    finished(
        storage, "nightly", ExecutionStatus.FAILED, at=T0 - 5 * MINUTE, error="again", retry=True
    )
    assert opened(storage, T0) == []
    third = finished(storage, "nightly", ExecutionStatus.LOST, at=T0 - 4 * MINUTE)
    [incident] = opened(storage, T0)
    assert (incident.job_key, incident.rule) == ("nightly", AlertRule.FAILING)
    assert incident.opened_at == T0 and incident.resolved_at is None
    assert incident.since == T0 - 4 * MINUTE
    assert incident.message == "the last 3 runs failed (latest: lost)"
    assert incident.details == {"threshold": 3, "execution_id": third, "error": "lost"}
    assert incident.notify_state is None and incident.notify_attempts == 0
    assert last != third
    assert opened(storage, T0 + SECOND) == []  # still breaking: no second incident
    finished(storage, "nightly", ExecutionStatus.SUCCESS, at=T0 + MINUTE)
    [done] = resolved(storage, T0 + 2 * MINUTE)
    assert done.id == incident.id and done.resolved_at == T0 + 2 * MINUTE
    assert storage.list_incidents(limit=10) == [done]


def test_a_failing_message_names_the_latest_error(storage: Storage) -> None:
    add_job(storage, "etl", next_run_at=T0 + MINUTE, alert_failures=1)
    run = finished(storage, "etl", ExecutionStatus.FAILED, at=T0 - MINUTE, error="x" * 300)
    [incident] = opened(storage, T0)
    assert incident.message == f"the last run failed (latest: ValueError: {'x' * 188})"
    assert incident.details["execution_id"] == run


def test_late_slots_pending_runs_and_missed_slots(storage: Storage) -> None:
    add_job(storage, "unclaimed", next_run_at=T0 - 31 * SECOND, alert_late_after=30)
    add_job(storage, "on-time", next_run_at=T0 - 20 * SECOND, alert_late_after=30)
    waiting = add_job(storage, "waiting", next_run_at=T0 + MINUTE, alert_late_after=30)
    storage.add_execution(new_execution(waiting, scheduled_for=T0 - MINUTE))
    storage.add_execution(new_execution(waiting, scheduled_for=T0 - 2 * MINUTE))
    skipped = add_job(storage, "skipped", next_run_at=T0 + MINUTE, alert_late_after=30)
    storage.add_execution(
        new_execution(
            skipped,
            scheduled_for=T0 - 5 * MINUTE,
            status=ExecutionStatus.MISSED,
            trigger=ExecutionTrigger.SCHEDULE,
            completed_at=T0 - 5 * MINUTE,
        )
    )
    found = {i.job_key: i for i in opened(storage, T0)}
    assert sorted(found) == ["skipped", "unclaimed", "waiting"]
    assert found["unclaimed"].since == T0 - SECOND
    assert found["unclaimed"].message == (
        "the slot of 2026-03-01T11:59:29.123456Z was not taken 30 s after its time"
    )
    assert found["waiting"].details == {
        "threshold": 30.0,
        "kind": "pending",
        "due": "2026-03-01T11:58:00.123456Z",
    }
    assert found["skipped"].details["kind"] == "missed"
    # the slot is taken, the runs start: late no more
    storage.update_job("unclaimed", {"next_run_at": T0 + MINUTE}, now=T0)
    for execution in storage.list_executions(_filter("waiting", ExecutionStatus.PENDING), limit=10):
        storage.cancel_pending(execution.id, now=T0, message="gave up")
    assert sorted(i.job_key for i in resolved(storage, T0 + SECOND)) == ["unclaimed", "waiting"]


def test_a_paused_queue_holds_late_slots_but_not_running_ones(storage: Storage) -> None:
    add_job(storage, "held", next_run_at=T0 - MINUTE, queue="reports", alert_late_after=30)
    add_job(storage, "free", next_run_at=T0 - MINUTE, queue="other", alert_late_after=30)
    storage.set_pause(Pause(scope=PauseScope.QUEUE, name="reports", paused_at=T0 - 2 * MINUTE))
    assert [i.job_key for i in opened(storage, T0)] == ["free"]
    storage.set_pause(Pause(scope=PauseScope.SERVICE, name=None, paused_at=T0))
    assert [i.job_key for i in resolved(storage, T0)] == ["free"]


def test_overrunning_runs_and_their_end(storage: Storage) -> None:
    job = add_job(storage, "long", next_run_at=T0 + MINUTE, alert_max_runtime=600)
    short = storage.add_execution(
        running(job, OWNER, created_at=T0 - 5 * MINUTE, dispatched_at=T0 - 5 * MINUTE)
    )
    long = storage.add_execution(
        running(job, OWNER, created_at=T0 - 11 * MINUTE, dispatched_at=T0 - 11 * MINUTE)
    )
    [incident] = opened(storage, T0)
    assert incident.rule is AlertRule.OVERRUNNING
    assert incident.since == T0 - MINUTE
    assert incident.details["execution_id"] == long.id
    storage.record_outcomes(
        [
            Outcome(long.id, OWNER, ExecutionStatus.SUCCESS, T0 - 11 * MINUTE, T0),
        ]
    )
    assert [i.id for i in resolved(storage, T0 + SECOND)] == [incident.id]
    assert short.id != long.id  # still running, within its bound


def test_no_success_counts_from_the_last_success_or_change(storage: Storage) -> None:
    add_job(storage, "silent", next_run_at=T0 + MINUTE, alert_no_success_within=3600)
    created = storage.get_job("silent").updated_at
    assert opened(storage, created + timedelta(seconds=3599)) == []
    [incident] = opened(storage, created + timedelta(seconds=3601))
    assert incident.rule is AlertRule.NO_SUCCESS
    assert incident.details == {"threshold": 3600.0, "last_success_at": None}
    finished(storage, "silent", ExecutionStatus.SUCCESS, at=created + timedelta(seconds=3700))
    [done] = resolved(storage, created + timedelta(seconds=3701))
    assert done.id == incident.id


def test_the_service_s_defaults_apply_to_jobs_without_their_own(storage: Storage) -> None:
    made = T0 - 10 * MINUTE
    add_job(storage, "scheduled", next_run_at=made, now=made)
    add_job(storage, "a-task", next_run_at=None, trigger=Manual(), now=made)
    add_job(storage, "own", next_run_at=made, alert_late_after=3600, now=made)
    add_job(storage, "paused", next_run_at=made, state=JobState.PAUSED, now=made)
    defaults = AlertDefaults(late_after=60, no_success_within=60)
    found = sorted((i.job_key, i.rule.value) for i in opened(storage, T0, defaults))
    # the task has no slot and no rhythm; "own" is late only after an hour; the paused
    # job is not expected to run
    assert found == [
        ("own", "no_success"),
        ("scheduled", "late"),
        ("scheduled", "no_success"),
    ]
    # the defaults turned off: those incidents resolve
    assert len(resolved(storage, T0, OFF)) == 3


def test_a_deleted_job_s_incidents_resolve(storage: Storage) -> None:
    add_job(storage, "gone", next_run_at=T0 - MINUTE, alert_late_after=1)
    assert len(opened(storage, T0)) == 1
    storage.delete_job("gone", now=T0)
    [incident] = resolved(storage, T0 + SECOND)
    assert incident.job_key == "gone"


# -- one incident per breach -------------------------------------------------------------


def test_evaluations_racing_on_several_handles_open_one_incident(
    open_storage: OpenStorage,
) -> None:
    handles = [open_storage() for _ in range(4)]
    add_job(handles[0], "late", next_run_at=T0 - MINUTE, alert_late_after=1)
    start = threading.Barrier(len(handles))
    results: list[object] = []

    def evaluate(storage: Storage) -> None:
        start.wait()
        results.append(storage.evaluate_alerts(now=T0, defaults=OFF))

    threads = [threading.Thread(target=evaluate, args=(h,)) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == len(handles)
    opened_ids = [i.id for r in results if r is not None for i in r.opened]  # type: ignore[attr-defined]
    assert len(opened_ids) == 1
    assert len(handles[0].list_incidents(limit=10)) == 1


def test_the_database_holds_one_open_incident_per_job_and_rule(storage: Storage) -> None:
    if not isinstance(storage, SQLAlchemyStorage):
        pytest.skip("a unique index of the SQL schema")
    add_job(storage, "late", next_run_at=T0 - MINUTE, alert_late_after=1)
    [incident] = opened(storage, T0)
    table = storage.tables.incidents
    row = {
        "job_key": "late",
        "rule": "late",
        "since": T0,
        "opened_at": T0,
        "message": "a second one",
        "details": {},
        "notify_attempts": 0,
    }
    with pytest.raises(sa.exc.IntegrityError), storage.engine.begin() as conn:
        conn.execute(sa.insert(table).values(row))
    with storage.engine.begin() as conn:  # a resolved one does not count
        conn.execute(sa.insert(table).values({**row, "resolved_at": T0}))
    assert [i.id for i in storage.list_incidents(limit=10, open_only=True)] == [incident.id]


def test_an_evaluation_skips_while_another_holds_the_alert_lock(storage: Storage) -> None:
    if not isinstance(storage, SQLAlchemyStorage) or storage.sqlite:
        pytest.skip("PostgreSQL's advisory lock (SQLite's writers queue on its write lock)")
    add_job(storage, "late", next_run_at=T0 - MINUTE, alert_late_after=1)
    key = migrate.lock_key(storage.table_prefix, storage.schema) + 2
    with storage.engine.connect() as other, other.begin():
        other.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        assert storage.evaluate_alerts(now=T0, defaults=OFF) is None
    assert storage.list_incidents(limit=10) == []
    assert len(opened(storage, T0)) == 1


# -- deliveries --------------------------------------------------------------------------


def test_a_delivery_is_claimed_once_fenced_and_retried(storage: Storage) -> None:
    add_job(storage, "late", next_run_at=T0 - MINUTE, alert_late_after=1)
    changes = storage.evaluate_alerts(now=T0, defaults=OFF, notify=True)
    assert changes is not None
    [incident] = changes.opened
    assert (incident.notify_state, incident.notify_attempts) == (NotifyState.PENDING, 0)
    assert incident.notify_next_at == T0
    assert storage.due_notifications(now=T0 - SECOND, limit=10) == []
    assert [i.id for i in storage.due_notifications(now=T0, limit=10)] == [incident.id]

    lease = T0 + MINUTE
    claimed = storage.claim_notification(incident.id, attempts=0, now=T0, until=lease)
    assert claimed is not None and claimed.notify_attempts == 1 and claimed.notify_next_at == lease
    assert storage.claim_notification(incident.id, attempts=0, now=T0, until=lease) is None
    assert storage.due_notifications(now=T0, limit=10) == []  # leased
    retry_at = T0 + 5 * SECOND
    assert storage.finish_notification(
        incident.id, attempt=1, now=T0, error="HTTP 500", retry_at=retry_at
    )
    [again] = storage.due_notifications(now=retry_at, limit=10)
    assert (again.notify_error, again.notify_attempts) == ("HTTP 500", 1)
    assert storage.claim_notification(incident.id, attempts=1, now=retry_at, until=lease)
    # a sender of attempt 1 that comes back late changes nothing: attempt 2 is out
    assert not storage.finish_notification(incident.id, attempt=1, now=retry_at)
    assert storage.finish_notification(incident.id, attempt=2, now=retry_at)
    [done] = storage.list_incidents(limit=1)
    assert (done.notify_state, done.notified_at, done.notify_error) == (
        NotifyState.DELIVERED,
        retry_at,
        None,
    )

    # the resolution is a new delivery to make; giving up leaves it failed
    storage.update_job("late", {"next_run_at": T0 + MINUTE}, now=T0)
    changes = storage.evaluate_alerts(now=T0 + MINUTE, defaults=OFF, notify=True)
    assert changes is not None
    [ended] = changes.resolved
    assert (ended.notify_state, ended.notify_attempts) == (NotifyState.PENDING, 0)
    assert storage.claim_notification(ended.id, attempts=0, now=T0 + MINUTE, until=lease)
    assert storage.finish_notification(
        ended.id, attempt=1, now=T0 + MINUTE, error="timed out", retry_at=None
    )
    [failed] = storage.list_incidents(limit=1)
    assert failed.notify_state is NotifyState.FAILED and failed.notify_next_at is None
    assert storage.due_notifications(now=T0 + 9 * MINUTE, limit=10) == []


def test_a_delivery_interrupted_by_the_resolution_is_not_marked_delivered(
    storage: Storage,
) -> None:
    add_job(storage, "late", next_run_at=T0 - MINUTE, alert_late_after=1)
    changes = storage.evaluate_alerts(now=T0, defaults=OFF, notify=True)
    assert changes is not None
    [incident] = changes.opened
    assert storage.claim_notification(incident.id, attempts=0, now=T0, until=T0 + MINUTE)
    storage.update_job("late", {"next_run_at": T0 + MINUTE}, now=T0)
    assert storage.evaluate_alerts(now=T0 + SECOND, defaults=OFF, notify=True)
    # the opening's attempt ends after the resolution: it does not touch the new one
    assert not storage.finish_notification(incident.id, attempt=1, now=T0 + SECOND)
    [pending] = storage.due_notifications(now=T0 + SECOND, limit=10)
    assert pending.resolved_at is not None and pending.notify_attempts == 0


# -- reads -------------------------------------------------------------------------------


def test_incidents_are_listed_newest_first_by_job_open_or_not(storage: Storage) -> None:
    for key in ("a", "b", "c"):
        add_job(storage, key, next_run_at=T0 - MINUTE, alert_late_after=1)
    made = opened(storage, T0)
    assert [i.job_key for i in made] == ["a", "b", "c"]
    storage.update_job("b", {"next_run_at": T0 + MINUTE}, now=T0)
    resolved(storage, T0)
    ids = [i.id for i in made]
    assert [i.id for i in storage.list_incidents(limit=10)] == ids[::-1]
    assert [i.job_key for i in storage.list_incidents(limit=10, open_only=True)] == ["c", "a"]
    assert [i.id for i in storage.list_incidents(limit=10, job_key="b")] == [ids[1]]
    assert [i.id for i in storage.list_incidents(limit=1, before=ids[2])] == [ids[1]]
    assert storage.list_incidents(limit=0) == []


@pytest.mark.parametrize(
    "arguments",
    [{"limit": -1}, {"limit": 10, "before": 0}, {"limit": 10, "job_key": "no spaces"}],
)
def test_bad_incident_reads_are_refused(storage: Storage, arguments: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        storage.list_incidents(**arguments)  # type: ignore[arg-type]


def _filter(job_key: str, status: ExecutionStatus) -> ExecutionFilter:
    return ExecutionFilter(job_key=job_key, statuses=(status,))
