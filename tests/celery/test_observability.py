"""What Celery's tools and the host's telemetry see of executions run by a real worker
(``-E``, a result backend, spans exported to a file, a log format with the execution):

* Celery's event stream (what Flower and ``celery events`` read) names each task after
  its job (``shadow``) with the execution id in its arguments; a failed or timed-out
  run is a failed task, once, never retried or redelivered by Celery, while taskmgr's
  own history and retries stay as they are; the result backend holds the failures;
* the worker's execution span continues the trace of the span that deferred the run
  (through the stored run and the message's headers), and its log lines name the
  execution."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskmgr import SchedulerService
from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger
from tests.celery import jobs
from tests.celery.conftest import _delete_queue
from tests.celery.harness import Setup, Worker, all_executions, redis_db_url, wait_for
from tests.celery.hostapp import build
from tests.services import require_redis

pytestmark = pytest.mark.slow

Event = dict[str, Any]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp_path = tmp_path_factory.mktemp("observability")
    broker = redis_db_url(require_redis())
    setup = Setup(
        broker=broker,
        database=f"sqlite:///{tmp_path / 'taskmgr.db'}",
        witness=f"sqlite:///{tmp_path / 'witness.db'}",
        logs=tmp_path,
        extra_env={
            "TASKMGR_CELERY_TEST_RESULTS": broker,
            "TASKMGR_CELERY_TEST_SPANS": str(tmp_path / "spans.jsonl"),
            "TASKMGR_CELERY_TEST_LOG_EXECUTION": "1",
        },
    )
    jobs.create_witness_table(setup.witness)
    try:
        yield setup
    finally:
        _delete_queue(broker, setup.queue)


@pytest.fixture(scope="module")
def worker(setup: Setup) -> Iterator[Worker]:
    """One prefork worker sending task events (``-E``) for the module's tests."""
    started = Worker(setup, pool="prefork", concurrency=1, args=["-E"])
    try:
        _, service = build(setup.broker, setup.database, setup.queue)
        started.wait_ready(service)
        service.close()
        yield started
    finally:
        started.stop()


class EventStream:
    """Celery's events, received as ``celery events`` receives them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._conn = app.connection_for_read()
        self._receiver = app.events.Receiver(self._conn, handlers={"*": self._on})
        self._thread = threading.Thread(
            target=self._receiver.capture,
            kwargs={"limit": None, "timeout": None, "wakeup": False},
            daemon=True,
        )

    def _on(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: str, task_id: str | None = None) -> list[Event]:
        with self._lock:
            return [
                e
                for e in self.events
                if e["type"] == kind and (task_id is None or e.get("uuid") == task_id)
            ]

    def __enter__(self) -> EventStream:
        self._thread.start()
        # bound once an event of our own comes back (events sent before are not seen)
        with self.app.connection_for_write() as conn:
            probe = self.app.events.Dispatcher(conn, enabled=True)
            wait_for(
                lambda: probe.send("task-probe") or self.of("task-probe"),
                15,
                "the event receiver to listen",
                every=0.2,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)
        self._conn.release()


def _ended(service: SchedulerService, prefix: str, count: int) -> dict[str, list[Execution]]:
    """The runs of the jobs named ``prefix...`` by job key once ``count`` have ended,
    attempts in order (the module's tests share one database)."""

    def done() -> list[Execution] | None:
        found = [e for e in all_executions(service) if e.job_key.startswith(prefix)]
        return found if len(found) == count and all(e.status.is_final for e in found) else None

    by_key: dict[str, list[Execution]] = {}
    for execution in sorted(wait_for(done, 60, f"{count} runs to end"), key=lambda e: e.attempt):
        by_key.setdefault(execution.job_key, []).append(execution)
    return by_key


def test_celery_events_name_the_job_and_fail_failed_runs(setup: Setup, worker: Worker) -> None:
    app, service = build(setup.broker, setup.database, setup.queue, result_backend=setup.broker)
    service.create_job("truth.ok", jobs.echo)
    service.create_job("truth.fail", jobs.fail)
    service.create_job("truth.flaky", jobs.fail_first, max_retries=1, retry_backoff=(0.1, 0.1, 0))
    service.create_job("truth.limit", jobs.cooperative, timeout=1)
    with EventStream(app) as stream, service:
        service.defer("truth.ok", n=1)
        service.defer("truth.fail")
        service.defer("truth.flaky", n=2)
        service.defer("truth.limit", seconds=30)
        runs = _ended(service, "truth.", 5)
        executions = [e for attempts in runs.values() for e in attempts]
        wait_for(
            lambda: all(
                stream.of("task-succeeded", e.celery_task_id)
                or stream.of("task-failed", e.celery_task_id)
                for e in executions
            ),
            15,
            "the events of every task's end",
        )
    try:
        # taskmgr's own history and retries, as without events
        assert [e.status for e in runs["truth.ok"]] == [ExecutionStatus.SUCCESS]
        assert [e.status for e in runs["truth.fail"]] == [ExecutionStatus.FAILED]
        assert [(e.status, e.trigger) for e in runs["truth.flaky"]] == [
            (ExecutionStatus.FAILED, ExecutionTrigger.DEFERRED),
            (ExecutionStatus.SUCCESS, ExecutionTrigger.RETRY),
        ]
        assert [e.status for e in runs["truth.limit"]] == [ExecutionStatus.TIMEOUT]

        for execution in executions:
            task_id = execution.celery_task_id
            assert task_id is not None
            [received] = stream.of("task-received", task_id)  # once: never redelivered
            assert received["name"] == execution.job_key  # the job, not taskmgr.execute
            assert execution.id in received["kwargs"]
            assert len(stream.of("task-started", task_id)) == 1
        # Celery neither retried nor rejected anything: the retry is taskmgr's
        assert not stream.of("task-retried") and not stream.of("task-rejected")

        def ended(execution: Execution) -> tuple[str, str]:
            assert execution.celery_task_id is not None
            [event] = stream.of("task-succeeded", execution.celery_task_id) or stream.of(
                "task-failed", execution.celery_task_id
            )
            return event["type"], event.get("exception") or event.get("result") or ""

        kind, result = ended(runs["truth.ok"][0])
        assert kind == "task-succeeded" and "'status': 'success'" in result
        kind, error = ended(runs["truth.fail"][0])
        assert kind == "task-failed"
        assert "ExecutionFailedError" in error and "this job always fails" in error
        failed_attempt, retried = runs["truth.flaky"]
        kind, error = ended(failed_attempt)
        assert kind == "task-failed" and "attempt 2 is due" in error
        assert ended(retried)[0] == "task-succeeded"
        kind, error = ended(runs["truth.limit"][0])
        assert kind == "task-failed" and "timed out" in error

        # the result backend holds the failures (successes are not stored: ignore_result)
        failure = AsyncResult(runs["truth.fail"][0].celery_task_id, app=app)
        assert failure.state == "FAILURE"
        assert "this job always fails" in str(failure.result)
        assert AsyncResult(runs["truth.limit"][0].celery_task_id, app=app).state == "FAILURE"
    finally:
        service.close()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return exporter


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def test_the_worker_span_continues_the_deferring_trace_and_logs_name_the_execution(
    setup: Setup, worker: Worker, spans: InMemorySpanExporter
) -> None:
    _, service = build(setup.broker, setup.database, setup.queue)
    service.create_job("trace.job", jobs.traced, max_retries=1, retry_backoff=(0.1, 0.1, 0))
    service.create_job("trace.slot", jobs.traced, at=datetime.now(UTC) + timedelta(seconds=0.5))
    tracer = trace.get_tracer("tests")
    with service:
        with tracer.start_as_current_span("request") as request:
            ok = service.defer("trace.job", n=5)
            failing = service.defer("trace.job", n=-1)  # fails twice: a retry
        runs = _ended(service, "trace.", 4)
    service.close()
    [slot] = runs["trace.slot"]
    first, retry = (e for e in runs["trace.job"] if e.chain_id == failing.id)

    span_file = Path(worker.setup.extra_env["TASKMGR_CELERY_TEST_SPANS"])

    def worker_runs() -> dict[str, dict[str, Any]] | None:
        lines = span_file.read_text().splitlines() if span_file.exists() else []
        found = {
            span["attributes"]["taskmgr.execution.id"]: span
            for span in map(json.loads, lines)
            if span["name"].startswith("taskmgr run")
        }
        wanted = {ok.id, first.id, retry.id, slot.id}
        return found if wanted <= set(found) else None

    remote = wait_for(worker_runs, 15, "the worker's execution spans")
    local: list[ReadableSpan] = list(spans.get_finished_spans())

    def local_span(prefix: str, execution_id: str) -> ReadableSpan:
        [span] = [
            s
            for s in local
            if s.name.startswith(prefix)
            and s.attributes is not None
            and s.attributes.get("taskmgr.execution.id") == execution_id
        ]
        return span

    trace_id = _hex(request.get_span_context().trace_id, 32)
    defer = local_span("taskmgr defer", ok.id)
    assert defer.parent is not None and defer.parent.span_id == request.get_span_context().span_id
    for execution in (ok, first, retry):
        run = remote[execution.id]
        dispatch = local_span("taskmgr dispatch", execution.id)
        # request -> defer (this process) -> dispatch (the scheduler) -> run (the worker)
        assert run["trace_id"] == trace_id
        assert run["parent_id"] == _hex(dispatch.context.span_id, 16)
        assert run["kind"] == "CONSUMER"
        assert run["attributes"]["taskmgr.dispatch"] == "celery"
        assert dispatch.parent is not None
        if execution is ok:
            assert dispatch.parent.span_id == defer.context.span_id
        else:  # the failing run's own defer span, kept by its retry
            failing_defer = local_span("taskmgr defer", failing.id)
            assert dispatch.parent.span_id == failing_defer.context.span_id
    assert remote[retry.id]["attributes"]["taskmgr.execution.status"] == "failed"
    # a slot of a schedule: its dispatch span starts the trace, the worker continues it
    slot_dispatch = local_span("taskmgr dispatch", slot.id)
    assert slot_dispatch.parent is None
    assert remote[slot.id]["parent_id"] == _hex(slot_dispatch.context.span_id, 16)
    assert remote[slot.id]["trace_id"] == _hex(slot_dispatch.context.trace_id, 32)

    # the job's own log line names the execution it ran in (taskmgr's log filter)
    log = worker.output()
    assert f"execution={ok.id} traced job working on 5" in log
    assert f"execution={slot.id} traced job working on 0" in log
