"""Run one SchedulerService in its own process until SIGTERM (used by multi-process tests).

Usage::

    python -m tests.procs.run_service DATABASE_URL [--poll-interval S]
        [--heartbeat-interval S] [--heartbeat-timeout S] [--sweep-interval S]
        [--max-workers N] [--module tests.jobs.anchored ...]
        [--handover-timeout S] [--start-delay S]
        [--pause-at after_claim_commit|after_execute|after_reap --marker PATH]
        [--uncoordinated]

Registers ``tests.jobs.witness`` (``witness``, ``witness_slow``) and every
``@scheduled_job`` of each ``--module``. Prints "ready <instance id>" once started;
shuts down cleanly on SIGTERM/SIGINT and prints "stopped". Logs go to stderr at
WARNING (taskmgr's fault, reaper and fencing messages are warnings or errors).
``--pause-at``/``--marker`` and ``--uncoordinated`` wrap the storage in
``tests.faults.FaultyStorage`` (see there). ``--start-delay`` waits that long before
starting, as an application that takes long to import would.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from pathlib import Path

from taskmgr import InlineDispatcher, SchedulerService
from taskmgr.storage import SQLAlchemyStorage
from tests.faults import POINTS, FaultyStorage
from tests.jobs.witness import witness, witness_slow


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_service")
    parser.add_argument("url")
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--heartbeat-timeout", type=float, default=15.0)
    parser.add_argument("--sweep-interval", type=float, default=5.0)
    parser.add_argument("--max-workers", type=int, default=8)
    parser.add_argument("--handover-timeout", type=float, default=0.0)
    parser.add_argument("--start-delay", type=float, default=0.0)
    parser.add_argument("--module", action="append", default=[])
    parser.add_argument("--pause-at", choices=POINTS, default=None)
    parser.add_argument("--marker", type=Path, default=None)
    parser.add_argument("--uncoordinated", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    storage = SQLAlchemyStorage(args.url)
    if args.pause_at or args.uncoordinated:
        storage = FaultyStorage(
            storage, pause_at=args.pause_at, marker=args.marker, uncoordinated=args.uncoordinated
        )
    service = SchedulerService(
        storage,
        jobs=[witness, witness_slow, *(importlib.import_module(m) for m in args.module)],
        dispatcher=InlineDispatcher(max_workers=args.max_workers),
        poll_interval=args.poll_interval,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_timeout=args.heartbeat_timeout,
        sweep_interval=args.sweep_interval,
        handover_timeout=args.handover_timeout,
    )
    if not stop.wait(args.start_delay):  # else stopped before it started
        with service:
            print("ready", service.instance_id, flush=True)
            stop.wait()
    storage.close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
