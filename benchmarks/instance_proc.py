"""One scheduler instance in a process of its own, for the several-instances and
saturation scenarios: ``python -m benchmarks.instance_proc URL SCHEMA SECONDS [stdin]``.
It prints ``ready`` once started, runs SECONDS (with ``stdin``: until its standard input
closes, at most SECONDS), then prints one JSON line: its peak RSS (MB) and CPU time (s)."""

from __future__ import annotations

import json
import resource
import sys
import threading
import time

from taskmgr import InlineDispatcher, SchedulerService
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage


def noop() -> None:
    """The trivial job; its lateness is read back from the executions table."""


def main(url: str, schema: str, seconds: float, until_stdin_closes: bool = False) -> None:
    storage = SQLAlchemyStorage(url, schema=schema or None)
    service = SchedulerService(storage, jobs=[noop], dispatcher=InlineDispatcher(8))
    service.start()
    print("ready", flush=True)
    try:
        if until_stdin_closes:
            closed = threading.Event()

            def wait_for_eof() -> None:
                sys.stdin.read()
                closed.set()

            threading.Thread(target=wait_for_eof, daemon=True).start()
            closed.wait(seconds)
        else:
            time.sleep(seconds)
    finally:
        service.shutdown()
        storage.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rss_mb": round(rss, 1), "cpu_s": time.process_time()}), flush=True)


if __name__ == "__main__":
    # through the package, so the job function is named as the parent registered it
    from benchmarks import instance_proc

    instance_proc.main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:5] == ["stdin"])
