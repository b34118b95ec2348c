"""``celery_job``: a Celery task the host already has, declared as a taskmgr job (by the
task object or by its name on the app), with its own options taken over by the job or
refused where they conflict with taskmgr's. Without a worker: the task's body runs in
this process (the test kit's inline dispatcher); ``test_host_tasks.py`` runs it on a
real worker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from celery import Celery, Task
from taskmgr import (
    ExecutionStatus,
    ExecutionTrigger,
    InvalidAlertError,
    InvalidFunctionError,
    InvalidKwargsError,
    InvalidPolicyError,
    JobExistsError,
    Manual,
)
from taskmgr.celery import CeleryJob, CeleryTaskConflictError, celery_job
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SEEN: list[dict[str, Any]] = []


def add(x: int, y: int = 1) -> int:
    return x + y


def bound(self: Any, n: int) -> dict[str, Any]:
    request = self.request
    SEEN.append({"id": request.id, "retries": request.retries, "kwargs": dict(request.kwargs)})
    if request.retries == 0:
        raise self.retry(exc=RuntimeError("try again"), countdown=600)
    return {"n": n}


def plain(n: int) -> int:
    return n


class ContextTask(Task):  # type: ignore[misc]
    """A host's base class that wraps every run (a Flask app context, say)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        SEEN.append({"wrapped": kwargs})
        return super().__call__(*args, **kwargs)


@pytest.fixture
def app() -> Celery:
    app = Celery("bridge", broker="memory://", set_as_current=False)
    app.task(name="t.add")(add)
    app.task(name="t.bound", bind=True, max_retries=2)(bound)
    app.task(name="t.wrapped", base=ContextTask)(plain)
    SEEN.clear()
    return app


def test_declared_by_object_or_by_name(app: Celery) -> None:
    by_object = celery_job(app.tasks["t.add"], key="sums.every", interval=60, kwargs={"x": 1})
    by_name = celery_job("t.add", app=app)
    assert isinstance(by_object, CeleryJob)
    assert by_object.registered_name == by_name.registered_name == "celery:t.add"
    nightly, task = by_object.__taskmgr_job__, by_name.__taskmgr_job__
    assert (nightly.key, nightly.func, nightly.max_retries) == ("sums.every", "celery:t.add", 0)
    assert (task.key, task.trigger, task.misfire_grace_time) == ("t.add", Manual(), None)
    assert list(by_object.__signature__.parameters) == ["x", "y"]
    # a lazy @app.task proxy is the task it stands for
    proxy = app.task(name="t.lazy")(plain)
    assert celery_job(proxy).task is app.tasks["t.lazy"]


def test_bad_declarations_are_refused_at_once(app: Celery) -> None:
    with pytest.raises(InvalidFunctionError, match="pass its app"):
        celery_job("t.add")
    with pytest.raises(InvalidFunctionError, match=r"no Celery task named 't\.missing'"):
        celery_job("t.missing", app=app)
    with pytest.raises(InvalidFunctionError, match="takes a Celery task"):
        celery_job(add)
    with pytest.raises(InvalidKwargsError, match="signature"):
        celery_job(app.tasks["t.add"], interval=60, kwargs={"z": 1})
    with pytest.raises(InvalidPolicyError, match="concurrency"):
        celery_job(app.tasks["t.add"], interval=60, kwargs={"x": 1}, concurrency=2)
    with pytest.raises(InvalidPolicyError, match="concurrency"):
        celery_job(app.tasks["t.add"], max_instances=2)


def test_alert_thresholds_and_exclusion_dates_are_options_as_on_the_decorators(
    app: Celery,
) -> None:
    nightly = celery_job(
        app.tasks["t.add"],
        key="sums.nightly",
        cron="0 2 * * *",
        kwargs={"x": 1},
        alert_failures=2,
        alert_late_after=timedelta(minutes=5),
        alert_max_runtime=600,
        alert_no_success_within=timedelta(days=2),
        exclude_dates=["2026-12-25", date(2027, 1, 1)],
    ).__taskmgr_job__
    assert (nightly.alert_failures, nightly.alert_late_after, nightly.alert_max_runtime) == (
        2,
        300.0,
        600.0,
    )
    assert nightly.alert_no_success_within == 2 * 86400.0
    assert nightly.exclude_dates == (date(2026, 12, 25), date(2027, 1, 1))
    assert celery_job("t.add", app=app, alert_failures=3).__taskmgr_job__.alert_failures == 3
    with pytest.raises(InvalidAlertError, match="alert_failures"):
        celery_job("t.add", app=app, alert_failures=0)
    with pytest.raises(InvalidPolicyError, match="a task has none"):
        celery_job("t.add", app=app, exclude_dates=["2026-12-25"])


def test_the_tasks_own_options_become_the_jobs(app: Celery) -> None:
    app.conf.task_routes = {"t.limited": {"queue": "reports"}}
    limited = app.task(name="t.limited", soft_time_limit=30, time_limit=40)
    job = celery_job(limited(plain)).__taskmgr_job__
    assert (job.timeout, job.queue, job.max_retries) == (30.0, "reports", 0)
    hard_only = app.task(name="t.hard", time_limit=20)(plain)
    assert celery_job(hard_only).__taskmgr_job__.timeout == 20.0
    assert celery_job(hard_only, timeout=20).__taskmgr_job__.timeout == 20.0
    assert celery_job(app.tasks["t.bound"]).__taskmgr_job__.max_retries == 2
    assert celery_job(app.tasks["t.bound"], max_retries=2).__taskmgr_job__.max_retries == 2
    # Celery's default max_retries (3, unset) is not the job's: taskmgr's default holds
    assert celery_job(app.tasks["t.add"]).__taskmgr_job__.max_retries == 0
    assert celery_job(app.tasks["t.add"], queue="other").__taskmgr_job__.queue == "other"


@pytest.mark.parametrize(
    ("options", "job", "field", "message"),
    [
        ({"autoretry_for": (OSError,)}, {}, "autoretry_for", "retries itself"),
        ({"rate_limit": "10/m"}, {}, "rate_limit", "max_instances"),
        ({"max_retries": None}, {}, "max_retries", "for ever"),
        ({"max_retries": 5}, {"max_retries": 1}, "max_retries", "max_retries=5, the job 1"),
        ({"soft_time_limit": 10}, {"timeout": 60}, "soft_time_limit", "timeout=60"),
        ({"time_limit": 10}, {"timeout": 5}, "time_limit", "time_limit=10"),
    ],
)
def test_conflicting_options_are_refused_with_a_clear_error(
    app: Celery, options: dict[str, Any], job: dict[str, Any], field: str, message: str
) -> None:
    conflicting = app.task(name="t.conflicting", **options)(plain)
    with pytest.raises(CeleryTaskConflictError, match=message) as refused:
        celery_job(conflicting, **job)
    assert refused.value.field == field
    assert "t.conflicting" in str(refused.value)


def test_the_body_runs_under_taskmgrs_execution_and_retries(app: Celery) -> None:
    """``self.retry()`` ends the attempt failed (Celery raises the exception, as it does
    for a task called directly); taskmgr's retry runs it again, ``retries`` one up."""
    clock = FakeClock(START)
    flaky = celery_job(app.tasks["t.bound"], retry_backoff=(1.0, 1.0, 0))
    summed = celery_job("t.add", app=app, key="sums.every", interval=60, kwargs={"x": 4})
    with make_test_service([flaky, summed], clock=clock) as service:
        deferred = service.defer(flaky, n=5)
        (first,) = service.run_due()
        assert (first.status, first.error_type, first.error_message) == (
            ExecutionStatus.FAILED,
            "builtins.RuntimeError",
            "try again",
        )
        clock.advance(timedelta(seconds=60))
        ended = {e.job_key: e for e in service.run_due()}
    retry, scheduled = ended["t.bound"], ended["sums.every"]
    assert (retry.status, retry.trigger, retry.attempt) == (
        ExecutionStatus.SUCCESS,
        ExecutionTrigger.RETRY,
        2,
    )
    assert retry.chain_id == deferred.id and retry.result_summary == {"n": 5}
    seen = [
        {"id": deferred.id, "retries": 0, "kwargs": {"n": 5}},
        {"id": retry.id, "retries": 1, "kwargs": {"n": 5}},
    ]
    assert seen == SEEN
    assert (scheduled.status, scheduled.result_summary) == (ExecutionStatus.SUCCESS, 5)
    assert app.tasks["t.bound"].request.id is None  # its request was popped


def test_a_task_with_its_own_call_is_called_through_it(app: Celery) -> None:
    with make_test_service([celery_job(app.tasks["t.wrapped"])], clock=FakeClock(START)) as svc:
        svc.defer("t.wrapped", n=3)
        (ended,) = svc.run_due()
    assert (ended.status, ended.result_summary) == (ExecutionStatus.SUCCESS, 3)
    assert SEEN == [{"wrapped": {"n": 3}}]


def test_one_task_on_several_jobs_but_one_job_per_key(app: Celery) -> None:
    daily = celery_job(app.tasks["t.add"], key="sums.daily", cron="0 1 * * *", kwargs={"x": 1})
    hourly = celery_job("t.add", app=app, key="sums.hourly", cron="0 * * * *", kwargs={"x": 2})
    service = make_test_service([daily, hourly], clock=FakeClock(START))
    assert {d.key for d in service.registry.definitions()} == {"sums.daily", "sums.hourly"}
    other = celery_job(app.tasks["t.bound"], key="sums.daily", interval=60, kwargs={"n": 1})
    with pytest.raises(JobExistsError):
        service.register(other)
    clash = celery_job(app.tasks["t.add"], key="sums.daily", cron="0 2 * * *", kwargs={"x": 1})
    with pytest.raises(JobExistsError):
        service.register(clash)
