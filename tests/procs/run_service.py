"""Run one SchedulerService in its own process until SIGTERM (used by multi-process tests).

Usage: python -m tests.procs.run_service DATABASE_URL
Prints "ready <instance id>" once started; shuts down cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from taskmgr import SchedulerService
from tests.jobs.witness import witness


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service = SchedulerService(sys.argv[1], jobs=[witness], poll_interval=0.2)
    with service:
        print("ready", service.instance_id, flush=True)
        stop.wait()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
