"""The job of the alerting test on several scheduler processes
(``tests.procs.run_service --module tests.alerts.cluster_jobs``): it fails while the
file named by ``TASKMGR_TEST_FAIL_FILE`` exists."""

from __future__ import annotations

import os

from taskmgr import scheduled_job

FAIL_FILE = "TASKMGR_TEST_FAIL_FILE"
KEY = "alerts.cluster-flaky"


@scheduled_job(KEY, interval=1, misfire_grace_time=None, alert_failures=2)
def cluster_flaky() -> str:
    marker = os.environ.get(FAIL_FILE)
    if marker is not None and os.path.exists(marker):
        raise RuntimeError("the report server is down")
    return "ok"
