"""Jobs of the alerting tests, switched by the module's flags: one that fails while
told to, one that runs until released, one that always succeeds, and a few with one
threshold each. (A scheduler process runs ``tests.alerts.cluster_jobs`` instead.)"""

from __future__ import annotations

import threading

from taskmgr import scheduled_job, task

#: ``flaky`` raises while this is set (in-process tests).
FAILING = threading.Event()
#: ``slow`` runs until this is set.
RELEASE = threading.Event()


@scheduled_job("alerts.flaky", interval=1, misfire_grace_time=None, alert_failures=2)
def flaky() -> str:
    if FAILING.is_set():
        raise RuntimeError("the report server is down")
    return "ok"


@scheduled_job("alerts.slow", interval=3600, misfire_grace_time=None, alert_max_runtime=30)
def slow() -> str:
    RELEASE.wait(30)
    return "done"


@scheduled_job("alerts.steady", interval=60, misfire_grace_time=None)
def steady() -> str:
    return "ok"


@scheduled_job("alerts.hourly", interval=3600, alert_late_after=30)
def hourly() -> None:
    return None


@scheduled_job("alerts.missable", interval=60, misfire_grace_time=5, alert_late_after=10)
def missable() -> None:
    return None


@scheduled_job("alerts.daily", cron="0 3 * * *", alert_no_success_within=3600)
def daily() -> None:
    return None


@task("alerts.a-task")
def a_task() -> None:
    return None
