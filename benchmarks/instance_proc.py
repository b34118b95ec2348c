"""One scheduler instance in a process of its own, for the several-instances scenario:
``python -m benchmarks.instance_proc URL SCHEMA SECONDS``."""

from __future__ import annotations

import sys
import time

from taskmgr import InlineDispatcher, SchedulerService
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage


def noop() -> None:
    """The trivial job; its lateness is read back from the executions table."""


def main(url: str, schema: str, seconds: float) -> None:
    storage = SQLAlchemyStorage(url, schema=schema or None)
    service = SchedulerService(storage, jobs=[noop], dispatcher=InlineDispatcher(8))
    service.start()
    try:
        time.sleep(seconds)
    finally:
        service.shutdown()
        storage.close()


if __name__ == "__main__":
    # through the package, so the job function is named as the parent registered it
    from benchmarks import instance_proc

    instance_proc.main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
