"""A plain script with two scheduled jobs and an embedded service.

Run it from anywhere; it keeps its history in ``plain_script.db`` in the current
directory (or in ``TASKMGR_DATABASE_URL``)::

    python examples/plain_script.py        # runs for 5 seconds
    python examples/plain_script.py 30     # runs for 30 seconds
"""

from __future__ import annotations

import os
import sys
import time

from taskmgr import SchedulerService, current_execution, scheduled_job


@scheduled_job("example.heartbeat", interval=1)
def heartbeat() -> str:
    context = current_execution()
    assert context is not None  # always set while a job runs
    return f"alive at {context.scheduled_for:%H:%M:%S}"


@scheduled_job("example.report", cron="* * * * *", max_retries=1)
def report() -> dict[str, int]:
    return {"rows": 42}


def main() -> int:
    seconds = float(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("EXAMPLE_SECONDS", "5"))
    url = os.environ.get("TASKMGR_DATABASE_URL", "sqlite:///plain_script.db")

    service = SchedulerService(url, jobs=[heartbeat, report])
    with service:  # start(); on exit shutdown() waits for running jobs
        print(f"running for {seconds:g}s...", flush=True)
        time.sleep(seconds)

    try:
        page = service.list_executions(limit=10)  # newest first; the history stays in the DB
        print(f"{'scheduled for':<26} {'job':<18} {'status':<8} result / error")
        for execution in reversed(page.items):
            detail = execution.result_summary or execution.error_message or ""
            print(
                f"{execution.scheduled_for.isoformat(timespec='seconds'):<26} "
                f"{execution.job_key:<18} {execution.status.value:<8} {detail}"
            )
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
