"""Defer runs of ``witness.task`` (single and bulk) without running any, recording each
execution id once its ``defer`` returned, until the test SIGKILLs this process.

Usage::

    python -m tests.procs.defer_until_killed DATABASE_URL IDS_PATH MODE
        [--singles N] [--batches M] [--batch-size B]

It opens the storage like a web process that only defers (no scheduler loop, no
instance): the runs are started by the other processes of the test. Each run gets
its own ``n`` (0, 1, 2, ...). ``IDS_PATH`` gets one line per execution whose
``defer``/``defer_many`` returned, written unbuffered right after the call, so a
SIGKILL loses at most the ids of the call in flight. Stdout gets ``batch FIRST_N
COUNT`` before each ``defer_many``, and ``parked`` when the process waits to be
killed. ``MODE``:

``returned``
    ``--batches`` rounds of ``--singles`` single defers then one ``defer_many`` of
    ``--batch-size`` runs; then it parks: every defer returned.
``in_batch``
    As ``returned``, then one more ``defer_many`` that parks inside its transaction,
    after its rows were inserted and just before its COMMIT.
``in_singles``
    Single defers one after the other, without end: the test kills it among them.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from taskmgr import SchedulerService
from taskmgr.storage import SQLAlchemyStorage
from tests.jobs.tasks import KEY, witness_task

MODES = ("returned", "in_batch", "in_singles")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="defer_until_killed")
    parser.add_argument("url")
    parser.add_argument("ids_path")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--singles", type=int, default=50)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    return parser.parse_args(argv)


def park() -> None:
    print("parked", flush=True)
    threading.Event().wait()  # until the test kills this process


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    storage = SQLAlchemyStorage(args.url)
    service = SchedulerService(storage, jobs=[witness_task], background=False)
    service.open()
    ids = os.open(args.ids_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    counter = 0

    def record(execution_ids: Sequence[str]) -> None:
        # one write per call: lines of a call that returned are never half there
        os.write(ids, "".join(f"{i}\n" for i in execution_ids).encode())

    def single() -> None:
        nonlocal counter
        execution = service.defer(KEY, n=counter)
        counter += 1
        record([execution.id])

    def batch() -> None:
        nonlocal counter
        first, counter = counter, counter + args.batch_size
        print(f"batch {first} {args.batch_size}", flush=True)
        executions = service.defer_many(
            KEY, [{"n": n} for n in range(first, first + args.batch_size)]
        )
        record([e.id for e in executions])

    print("started", flush=True)
    if args.mode == "in_singles":
        while True:
            single()
    for _ in range(args.batches):
        for _ in range(args.singles):
            single()
        batch()
    if args.mode == "in_batch":
        inserted = threading.Event()

        def after_execute(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            if "INSERT INTO TASKMGR_EXECUTIONS" in statement.upper():
                inserted.set()

        def before_commit(conn: Any) -> None:
            if inserted.is_set():  # the defer_many below, its rows in, not committed
                park()

        sa.event.listen(storage.engine, "after_cursor_execute", after_execute)
        sa.event.listen(storage.engine, "commit", before_commit)
        batch()
        raise AssertionError("the last defer_many committed: the hook did not park it")
    park()


if __name__ == "__main__":
    main()
