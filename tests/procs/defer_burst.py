"""Defer one task many times at once with one idempotency key, from threads released
together at a wall-clock instant (so several such processes collide), and print the
execution ids they got, one per line.

Usage::

    python -m tests.procs.defer_burst DATABASE_URL KEY THREADS START_EPOCH
"""

from __future__ import annotations

import sys
import threading
import time

from taskmgr import SchedulerService
from tests.jobs.tasks import KEY, witness_task


def main() -> None:
    url, idempotency_key, threads, start = sys.argv[1:5]
    service = SchedulerService(url, jobs=[witness_task], background=False)
    service.open()
    barrier = threading.Barrier(int(threads))
    ids: list[str] = []
    lock = threading.Lock()

    def defer() -> None:
        barrier.wait()
        time.sleep(max(0.0, float(start) - time.time()))
        execution = service.defer(KEY, idempotency_key=idempotency_key, n=1)
        with lock:
            ids.append(execution.id)

    workers = [threading.Thread(target=defer) for _ in range(int(threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    service.close()
    print("\n".join(ids), flush=True)


if __name__ == "__main__":
    main()
