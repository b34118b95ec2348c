"""Contract: adding, reading, listing, updating and deleting jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from taskmgr.core.models import (
    ExecutionStatus,
    JobSource,
    JobState,
    OverlapPolicy,
    RetryBackoff,
)
from taskmgr.core.triggers import Cron, Date, Interval
from taskmgr.exceptions import (
    InvalidInputError,
    JobExistsError,
    JobNotFoundError,
    VersionConflictError,
)
from taskmgr.storage.base import ExecutionFilter, Storage

from .helpers import MINUTE, T0, add_job, definition, new_execution, running


def test_add_job_round_trips_every_field(storage: Storage) -> None:
    created = storage.add_job(
        definition(
            "reports.daily",
            trigger=Cron("30 6 * * 1-5", timezone="Europe/Berlin"),
            names={"en": "Daily report", "ar": "التقرير اليومي"},
            description="Sends the report",
            kwargs={"to": ["a@example.com"], "depth": {"n": 1.5, "ok": True, "none": None}},
            max_instances=3,
            overlap_policy=OverlapPolicy.QUEUE,
            misfire_grace_time=None,
            coalesce=False,
            max_retries=4,
            retry_backoff=RetryBackoff(base=2.0, max=60.0, jitter=0.25),
            timeout=12.5,
            queue="reports",
        ),
        source=JobSource.API,
        state=JobState.PAUSED,
        next_run_at=T0,
        fingerprint="abc123",
        now=T0 - MINUTE,
    )
    assert created.id > 0
    assert created.version == 1
    assert created.created_at == created.updated_at == T0 - MINUTE
    assert created.last_run_at is None

    loaded = storage.get_job("reports.daily")
    assert loaded == created
    assert loaded.trigger == Cron("30 6 * * 1-5", timezone="Europe/Berlin")
    assert loaded.names["ar"] == "التقرير اليومي"
    assert loaded.kwargs == {"to": ["a@example.com"], "depth": {"n": 1.5, "ok": True, "none": None}}
    assert loaded.retry_backoff == RetryBackoff(base=2.0, max=60.0, jitter=0.25)
    assert loaded.state is JobState.PAUSED and loaded.source is JobSource.API
    assert loaded.next_run_at == T0 and loaded.next_run_at.tzinfo is not None


@pytest.mark.parametrize(
    "trigger",
    [
        Interval(timedelta(seconds=90), start=datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
        Date(datetime(2026, 5, 1, 9, 30, tzinfo=UTC)),
        Cron("*/5 * * * *"),
    ],
    ids=["interval", "date", "cron"],
)
def test_trigger_specs_round_trip(storage: Storage, trigger: object) -> None:
    add_job(storage, "t", trigger=trigger)
    assert storage.get_job("t").trigger == trigger


def test_job_ids_are_distinct(storage: Storage) -> None:
    ids = {add_job(storage, f"job-{n}").id for n in range(3)}
    assert len(ids) == 3


def test_duplicate_key_raises_and_writes_nothing(storage: Storage) -> None:
    first = add_job(storage, "dup", description="first")
    with pytest.raises(JobExistsError) as info:
        add_job(storage, "dup", description="second", source=JobSource.API)
    assert info.value.job_key == "dup"
    assert storage.get_job("dup") == first
    assert [job.key for job in storage.list_jobs()] == ["dup"]


def test_get_missing_job(storage: Storage) -> None:
    with pytest.raises(JobNotFoundError) as info:
        storage.get_job("nope")
    assert info.value.job_key == "nope"


def test_list_jobs_orders_by_key_and_filters(storage: Storage) -> None:
    add_job(storage, "c", state=JobState.PAUSED, source=JobSource.API)
    add_job(storage, "a")
    add_job(storage, "b", state=JobState.ORPHANED)
    add_job(storage, "d", source=JobSource.API)

    assert [j.key for j in storage.list_jobs()] == ["a", "b", "c", "d"]
    assert [j.key for j in storage.list_jobs(states=[JobState.ACTIVE])] == ["a", "d"]
    assert [j.key for j in storage.list_jobs(states=[JobState.PAUSED, JobState.ORPHANED])] == [
        "b",
        "c",
    ]
    assert [j.key for j in storage.list_jobs(source=JobSource.API)] == ["c", "d"]
    assert [j.key for j in storage.list_jobs(states=[JobState.ACTIVE], source=JobSource.API)] == [
        "d"
    ]


def test_list_jobs_keyset_pagination(storage: Storage) -> None:
    keys = [f"job-{n:02d}" for n in range(7)]
    for key in reversed(keys):
        add_job(storage, key)
    seen: list[str] = []
    after = None
    while True:
        page = storage.list_jobs(after_key=after, limit=3)
        assert len(page) <= 3
        if not page:
            break
        seen += [job.key for job in page]
        after = page[-1].key
    assert seen == keys
    assert [j.key for j in storage.list_jobs(after_key="job-04")] == ["job-05", "job-06"]


def test_update_job_applies_changes_and_bumps_version(storage: Storage) -> None:
    job = add_job(storage, "u")
    later = T0 + timedelta(hours=1)
    updated = storage.update_job(
        "u",
        {
            "trigger": Cron("0 * * * *"),
            "description": "hourly now",
            "kwargs": {"x": 1},
            "max_instances": 2,
            "overlap_policy": OverlapPolicy.ALLOW,
            "retry_backoff": RetryBackoff(base=5.0, max=50.0, jitter=0.0),
            "state": JobState.PAUSED,
            "next_run_at": later,
            "misfire_grace_time": None,
            "fingerprint": None,
        },
        now=T0,
    )
    assert updated.version == job.version + 1
    assert updated.updated_at == T0
    assert updated.created_at == job.created_at
    assert updated.trigger == Cron("0 * * * *")
    assert updated.overlap_policy is OverlapPolicy.ALLOW
    assert updated.state is JobState.PAUSED
    assert updated.retry_backoff == RetryBackoff(base=5.0, max=50.0, jitter=0.0)
    assert updated.misfire_grace_time is None and updated.fingerprint is None
    assert storage.get_job("u") == updated

    again = storage.update_job("u", {"state": "active"}, now=T0 + MINUTE)
    assert again.version == job.version + 2
    assert again.state is JobState.ACTIVE


def test_update_job_expected_version(storage: Storage) -> None:
    add_job(storage, "v")
    storage.update_job("v", {"description": "one"}, now=T0, expected_version=1)
    with pytest.raises(VersionConflictError):
        storage.update_job("v", {"description": "stale"}, now=T0, expected_version=1)
    job = storage.get_job("v")
    assert job.description == "one" and job.version == 2
    assert storage.update_job("v", {"description": "two"}, now=T0, expected_version=2).version == 3


def test_update_job_refuses_unknown_or_missing(storage: Storage) -> None:
    add_job(storage, "w")
    with pytest.raises(JobNotFoundError):
        storage.update_job("missing", {"description": "x"}, now=T0)
    with pytest.raises(InvalidInputError):
        storage.update_job("w", {"job_key": "other"}, now=T0)
    with pytest.raises(InvalidInputError):
        storage.update_job("w", {"version": 99}, now=T0)
    assert storage.get_job("w").version == 1


def test_update_keeps_the_instant_of_aware_datetimes(storage: Storage) -> None:
    add_job(storage, "tz")
    plus_two = timezone(timedelta(hours=2))
    when = datetime(2026, 3, 1, 14, 0, 0, 999999, tzinfo=plus_two)
    job = storage.update_job("tz", {"next_run_at": when}, now=T0)
    assert storage.get_job("tz").next_run_at == when == job.next_run_at


def test_delete_job_cancels_pending_and_keeps_history(storage: Storage) -> None:
    job = add_job(storage, "gone")
    keep = add_job(storage, "kept")
    pending = storage.add_execution(new_execution(job, scheduled_for=T0))
    run = storage.add_execution(running(job, "owner-1", scheduled_for=T0 + MINUTE))
    done = storage.add_execution(
        new_execution(
            job,
            scheduled_for=T0 - MINUTE,
            status=ExecutionStatus.SUCCESS,
            completed_at=T0 - MINUTE,
        )
    )
    other = storage.add_execution(new_execution(keep, scheduled_for=T0))

    later = T0 + timedelta(seconds=5)
    storage.delete_job("gone", now=later)

    with pytest.raises(JobNotFoundError):
        storage.get_job("gone")
    cancelled = storage.get_execution(pending.id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.completed_at == later
    assert storage.get_execution(run.id).status is ExecutionStatus.RUNNING
    assert storage.get_execution(done.id) == done
    assert storage.get_execution(other.id).status is ExecutionStatus.PENDING
    assert storage.get_job("kept") == keep
    history = storage.list_executions(ExecutionFilter(job_key="gone"), limit=10)
    assert {e.id for e in history} == {pending.id, run.id, done.id}

    with pytest.raises(JobNotFoundError):
        storage.delete_job("gone", now=later)
    # The key is free again.
    assert add_job(storage, "gone").id != job.id


def _named(storage: Storage, key: str, *, description: str | None = None, **names: str) -> None:
    storage.add_job(
        definition(key, names=names, description=description),
        source=JobSource.API,
        state=JobState.ACTIVE,
        next_run_at=T0,
        fingerprint=None,
        now=T0,
    )


def test_list_jobs_searches_key_description_and_names_in_the_database(storage: Storage) -> None:
    _named(storage, "billing.invoices", en="Monthly INVOICES")
    _named(storage, "reports.nightly", description="Sends the 100% report_x", de="Bericht")
    _named(storage, "sync.catalogue", ja="毎晩のレポート", fr="Écritures")
    _named(storage, "zzz.other", en="Nothing")

    def keys(text: str, **options: object) -> list[str]:
        return [job.key for job in storage.list_jobs(text=text, **options)]  # type: ignore[arg-type]

    assert keys("INVOICE") == ["billing.invoices"]  # a name, ASCII case ignored
    assert keys("Reports.") == ["reports.nightly"]  # the key
    assert keys("100%") == keys("report_x") == ["reports.nightly"]  # LIKE wildcards are text
    assert keys("bericht") == ["reports.nightly"]
    assert keys("レポート") == ["sync.catalogue"]
    assert keys("Écrit") == ["sync.catalogue"]
    assert keys("écrit") == []  # beyond ASCII, case counts: the same on every database
    assert keys("en") == ["reports.nightly"]  # "Sends"; a language code is no name
    assert keys("") == ["billing.invoices", "reports.nightly", "sync.catalogue", "zzz.other"]
    # the filter is applied before the limit and the keyset position
    assert keys("o", limit=2) == ["billing.invoices", "reports.nightly"]
    assert keys("o", after_key="billing.invoices", limit=1) == ["reports.nightly"]
    assert keys("n", states=[JobState.PAUSED]) == []


@pytest.mark.parametrize("text", ["a\x00b", "x" * 201, 5])
def test_list_jobs_refuses_a_search_text_the_database_cannot_take(
    storage: Storage, text: object
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        storage.list_jobs(text=text)  # type: ignore[arg-type]
    assert raised.value.field == "text"
