"""Background tasks on the embedded default (SQLite, in-process dispatch): declare a
task, defer runs of it with arguments (one idempotent by key), and wait for them.

    python examples/deferred_tasks.py [DATABASE_URL]
"""

from __future__ import annotations

import sys
import time

from taskmgr import SchedulerService, task


@task("emails.welcome", max_retries=2)
def send_welcome(user_id: int, template: str = "default") -> dict[str, object]:
    # one write per line: runs print from several threads at once
    print(f"welcome mail ({template}) to user {user_id}\n", end="", flush=True)
    return {"sent_to": user_id}


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "sqlite:///tasks-example.db"
    with SchedulerService(url, jobs=[send_welcome], poll_interval=0.2) as service:
        first = service.defer(send_welcome, idempotency_key="signup-1", user_id=1)
        again = service.defer(send_welcome, idempotency_key="signup-1", user_id=1)
        assert again.id == first.id  # one run per key
        batch = service.defer_many(send_welcome, [{"user_id": n} for n in (2, 3)])
        ids = [first.id, *(e.id for e in batch)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = [service.get_execution(i) for i in ids]
            if all(run.status.is_final for run in runs):
                break
            time.sleep(0.1)
        for run in runs:
            print(run.job_key, run.kwargs, run.status.value, run.result_summary, flush=True)


if __name__ == "__main__":
    main()
