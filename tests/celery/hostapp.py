"""The host module the test workers import (``celery -A tests.celery.hostapp:app``):
a Celery app and a SchedulerService built from environment variables, like a host
project builds them from its settings."""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery
from taskmgr import SchedulerService
from taskmgr.celery import CeleryDispatcher, celery_job
from tests.celery import hosttasks, jobs

#: Registered on workers and schedulers alike (``canary`` only where a test says so).
FUNCTIONS = [
    jobs.witness,
    jobs.witness_async,
    jobs.echo,
    jobs.fail_first,
    jobs.fail_nul,
    jobs.fail,
    jobs.slow,
    jobs.held,
    jobs.cooperative,
    jobs.stubborn,
    jobs.traced,
]
#: Registered too; ``pooled_async`` runs only where TASKMGR_CELERY_TEST_ASYNC_DB is set.
ASYNC_FUNCTIONS = [jobs.pooled_async, jobs.sleepy_async]


class SpanFileExporter:
    """Writes each finished span as one JSON line to a file, so a test can read the
    spans a worker process exported (test-only: a host would export to its collector)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with open(self.path, "a") as out:
            for span in spans:
                parent = span.parent
                line = {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent_id": f"{parent.span_id:016x}" if parent is not None else None,
                    "attributes": dict(span.attributes or {}),
                    "pid": os.getpid(),
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def export_spans_to(path: str) -> None:
    """Install an OpenTelemetry SDK in this process, exporting to ``path``."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanFileExporter(path)))  # type: ignore[arg-type]
    trace.set_tracer_provider(provider)


#: The worker's log format with the execution's id (from taskmgr's log filter).
EXECUTION_LOG_FORMAT = (
    "[%(levelname)s/%(processName)s] execution=%(taskmgr_execution_id)s %(message)s"
)


def build(
    broker: str,
    database: str,
    queue: str,
    *,
    accept_pickle: bool = False,
    with_canary: bool = False,
    result_backend: str | None = None,
    default_dispatcher: str | None = None,
    **dispatcher: Any,
) -> tuple[Celery, SchedulerService]:
    """The app and the service; ``default_dispatcher="inline"`` runs the jobs that
    choose none in the scheduler's process, and those with ``dispatch="celery"`` on the
    workers (else every job goes to Celery)."""
    app = Celery("taskmgr_tests", broker=broker, backend=result_backend, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if accept_pickle:  # a host that allows pickle for its own tasks
        app.conf.accept_content = ["json", "pickle"]
    functions: list[Any] = [*FUNCTIONS, *ASYNC_FUNCTIONS]
    if with_canary:
        functions.append(jobs.canary)
    # the host's own Celery tasks, as taskmgr tasks (keys host.add, ...; no schedule)
    functions += [
        celery_job(task, retry_backoff=(0.2, 0.2, 0)) for task in hosttasks.define(app).values()
    ]
    dispatcher.setdefault("dispatch_timeout", 3.0)
    dispatcher.setdefault("hard_limit_grace", 1.0)
    dispatcher.setdefault("publish_backoff_max", 1.0)
    celery = CeleryDispatcher(app, **dispatcher)
    service = SchedulerService(
        database,
        jobs=functions,
        dispatcher=celery if default_dispatcher is None else default_dispatcher,
        dispatchers=None if default_dispatcher is None else {"celery": celery},
        poll_interval=0.2,
        heartbeat_interval=0.5,
        # short, so a killed worker's runs are found lost within seconds; not shorter:
        # on a loaded machine a heartbeat can wait seconds for the SQLite file's write
        # lock behind the workers' processes, and a peer would then declare the test's
        # own instance dead and its published runs lost (seen at 2 s)
        heartbeat_timeout=4.0,
        sweep_interval=0.5,
    )
    return app, service


if "TASKMGR_CELERY_TEST_BROKER" in os.environ:
    app, service = build(
        os.environ["TASKMGR_CELERY_TEST_BROKER"],
        os.environ["TASKMGR_CELERY_TEST_DATABASE"],
        os.environ["TASKMGR_CELERY_TEST_QUEUE"],
        accept_pickle=os.environ.get("TASKMGR_CELERY_TEST_PICKLE") == "1",
        result_backend=os.environ.get("TASKMGR_CELERY_TEST_RESULTS"),
    )
    if "TASKMGR_CELERY_TEST_SPANS" in os.environ:
        export_spans_to(os.environ["TASKMGR_CELERY_TEST_SPANS"])
    if os.environ.get("TASKMGR_CELERY_TEST_LOG_EXECUTION") == "1":
        app.conf.worker_log_format = EXECUTION_LOG_FORMAT
        app.conf.worker_task_log_format = EXECUTION_LOG_FORMAT
    if "TASKMGR_CELERY_TEST_EVENTS" in os.environ:
        # a host's listener: it must hear of the runs this worker process executes
        events_file = os.environ["TASKMGR_CELERY_TEST_EVENTS"]

        def note(event: Any) -> None:
            with open(events_file, "a") as out:
                out.write(f"{event.kind.value} {event.execution_id}\n")

        service.add_listener(note)
