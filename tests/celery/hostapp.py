"""The host module the test workers import (``celery -A tests.celery.hostapp:app``):
a Celery app and a SchedulerService built from environment variables, like a host
project builds them from its settings."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from taskmgr import SchedulerService
from taskmgr.celery import CeleryDispatcher
from tests.celery import jobs

#: Registered on workers and schedulers alike (``canary`` only where a test says so).
FUNCTIONS = [
    jobs.witness,
    jobs.witness_async,
    jobs.echo,
    jobs.fail_first,
    jobs.fail_nul,
    jobs.fail,
    jobs.slow,
    jobs.cooperative,
    jobs.stubborn,
]


def build(
    broker: str,
    database: str,
    queue: str,
    *,
    accept_pickle: bool = False,
    with_canary: bool = False,
    **dispatcher: Any,
) -> tuple[Celery, SchedulerService]:
    app = Celery("taskmgr_tests", broker=broker, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if accept_pickle:  # a host that allows pickle for its own tasks
        app.conf.accept_content = ["json", "pickle"]
    functions: list[Any] = [*FUNCTIONS, jobs.canary] if with_canary else list(FUNCTIONS)
    dispatcher.setdefault("dispatch_timeout", 3.0)
    dispatcher.setdefault("hard_limit_grace", 1.0)
    dispatcher.setdefault("publish_backoff_max", 1.0)
    service = SchedulerService(
        database,
        jobs=functions,
        dispatcher=CeleryDispatcher(app, **dispatcher),
        poll_interval=0.2,
        heartbeat_interval=0.5,
        heartbeat_timeout=2.0,
        sweep_interval=0.5,
    )
    return app, service


if "TASKMGR_CELERY_TEST_BROKER" in os.environ:
    app, service = build(
        os.environ["TASKMGR_CELERY_TEST_BROKER"],
        os.environ["TASKMGR_CELERY_TEST_DATABASE"],
        os.environ["TASKMGR_CELERY_TEST_QUEUE"],
        accept_pickle=os.environ.get("TASKMGR_CELERY_TEST_PICKLE") == "1",
    )
    if "TASKMGR_CELERY_TEST_EVENTS" in os.environ:
        # a host's listener: it must hear of the runs this worker process executes
        events_file = os.environ["TASKMGR_CELERY_TEST_EVENTS"]

        def note(event: Any) -> None:
            with open(events_file, "a") as out:
                out.write(f"{event.kind.value} {event.execution_id}\n")

        service.add_listener(note)
