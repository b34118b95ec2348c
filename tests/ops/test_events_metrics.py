"""Listeners, Prometheus metrics and OpenTelemetry spans, driven by a fake clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from taskmgr import ExecutionStatus, ExecutionTrigger, SchedulerService
from taskmgr.execution.events import EventKind, ExecutionEvent
from taskmgr.prometheus import TaskmgrCollector
from taskmgr.testing import FakeClock, make_test_service
from tests.ops import jobs

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
OK = "tests.ops.jobs.ok"
BOOM = "tests.ops.jobs.boom"
SEND = "tests.ops.jobs.send"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(clock: FakeClock) -> Iterator[SchedulerService]:
    service = make_test_service([jobs.ok, jobs.boom], clock=clock)
    yield service
    service.shutdown()


def drive(service: SchedulerService, clock: FakeClock) -> None:
    """One on-time slot of each job, then an outage: 4 slots missed, one run."""
    clock.advance(seconds=60)
    service.run_due()
    clock.advance(seconds=300)
    service.run_due()


def test_listeners_get_each_kind_and_a_raising_one_breaks_nothing(
    service: SchedulerService, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[ExecutionEvent] = []
    failures: list[ExecutionEvent] = []

    def broken(event: ExecutionEvent) -> None:
        raise ValueError("listener bug")

    service.add_listener(broken)
    service.add_listener(seen.append)
    service.add_listener(failures.append, kinds=["failed"])
    service.start()
    with caplog.at_level(logging.ERROR, logger="taskmgr.events"):
        drive(service, clock)
        wait_for(lambda: len(seen) == 16)

    kinds = [(e.job_key, e.kind) for e in seen]
    for key in (OK, BOOM):
        assert kinds.count((key, EventKind.STARTED)) == 2
        assert kinds.count((key, EventKind.MISSED)) == 4
    assert kinds.count((OK, EventKind.SUCCEEDED)) == 2
    assert kinds.count((BOOM, EventKind.FAILED)) == 2
    assert [e.kind for e in failures] == [EventKind.FAILED] * 2
    failed = failures[0]
    assert failed.error_type == "builtins.RuntimeError"
    assert failed.scheduled_for == START + timedelta(seconds=60)
    assert failed.attempt == 1
    stored = service.get_execution(failed.execution_id)
    assert stored.status is ExecutionStatus.FAILED
    # every run happened and was recorded although a listener raised on each event
    history = service.list_executions(OK, limit=50).items
    assert sorted(e.status.value for e in history) == ["missed"] * 4 + ["success"] * 2
    errors = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(errors) == 16
    assert errors[0].taskmgr_execution_id  # type: ignore[attr-defined]

    service.remove_listener(broken)
    service.remove_listener(seen.append)
    service.remove_listener(failures.append)
    clock.advance(seconds=60)
    service.run_due()
    assert len(seen) == 16


def test_prometheus_counts_after_a_run(service: SchedulerService, clock: FakeClock) -> None:
    registry = CollectorRegistry()
    collector = TaskmgrCollector(service, registry=registry)
    service.start()
    drive(service, clock)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    wait_for(
        lambda: (
            value("taskmgr_executions_total", job=BOOM, status="failed") == 2
            and value("taskmgr_executions_total", job=OK, status="success") == 2
        )
    )
    assert value("taskmgr_executions_total", job=OK, status="success") == 2
    assert value("taskmgr_executions_total", job=OK, status="missed") == 4
    assert value("taskmgr_missed_total", job=BOOM) == 4
    assert value("taskmgr_execution_duration_seconds_count", job=OK) == 2
    assert value("taskmgr_execution_start_delay_seconds_count", job=OK) == 2
    assert value("taskmgr_execution_start_delay_seconds_sum", job=OK) == 0.0
    # from the database
    assert value("taskmgr_history_executions", job=OK, status="success") == 2
    assert value("taskmgr_history_executions", job=BOOM, status="missed") == 4
    last = START + timedelta(seconds=360)
    assert value("taskmgr_job_last_success_timestamp_seconds", job=OK) == last.timestamp()
    assert value("taskmgr_job_last_success_timestamp_seconds", job=BOOM) is None
    next_run = START + timedelta(seconds=420)
    assert value("taskmgr_job_next_run_timestamp_seconds", job=OK) == next_run.timestamp()
    assert value("taskmgr_jobs", state="active") == 2
    assert value("taskmgr_instances_live") == 0  # no heartbeat thread: stale by now
    assert value("taskmgr_metrics_database_error") == 0

    collector.close()
    assert value("taskmgr_jobs", state="active") is None


def test_prometheus_queue_gauges_and_defer_to_start_latency(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    with make_test_service([jobs.ok, jobs.send], clock=clock) as service:
        TaskmgrCollector(service, registry=registry)
        seen: list[ExecutionEvent] = []
        service.add_listener(seen.append, kinds=["started"])

        def value(name: str, job: str) -> float | None:
            return registry.get_sample_value(name, {"job": job})

        assert value("taskmgr_queue_depth", SEND) == 0  # a drained queue reads 0
        first = service.defer(jobs.send, to="a")
        service.defer(jobs.send, to="b")
        service.defer(jobs.send, delay=600, to="later")
        clock.advance(seconds=30)
        assert value("taskmgr_queue_depth", SEND) == 2  # the delayed one is not due
        assert value("taskmgr_queue_oldest_pending_age_seconds", SEND) == 30.0
        assert value("taskmgr_queue_depth", OK) == 0
        assert value("taskmgr_queue_oldest_pending_age_seconds", OK) == 0.0

        assert len(service.run_due()) == 2
        assert service.events.flush()
        started = next(e for e in seen if e.execution_id == first.id)
        assert started.trigger is ExecutionTrigger.DEFERRED
        assert started.created_at == START
        assert value("taskmgr_queue_depth", SEND) == 0
        assert value("taskmgr_execution_defer_to_start_seconds_count", SEND) == 2
        assert value("taskmgr_execution_defer_to_start_seconds_sum", SEND) == 60.0
        # scheduled slots are not deferred tasks
        clock.advance(seconds=30)
        assert len(service.run_due()) == 1
        assert service.events.flush()
        assert value("taskmgr_execution_start_delay_seconds_count", OK) == 1
        assert value("taskmgr_execution_defer_to_start_seconds_count", OK) is None


def test_nothing_registered_at_import() -> None:
    from prometheus_client import REGISTRY

    names = {m.name for m in REGISTRY.collect()}
    assert not any(name.startswith("taskmgr") for name in names)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return exporter


def test_spans_with_attributes(
    spans: InMemorySpanExporter, service: SchedulerService, clock: FakeClock
) -> None:
    service.start()
    clock.advance(seconds=60)
    done = service.run_due()
    by_key = {e.job_key: e for e in done}
    finished = spans.get_finished_spans()
    runs = {
        s.attributes["taskmgr.job.key"]: s for s in finished if s.name.startswith("taskmgr run")
    }
    dispatches = [s for s in finished if s.name.startswith("taskmgr dispatch")]
    assert set(runs) == {OK, BOOM}
    assert len(dispatches) == 2
    for key, span in runs.items():
        execution = by_key[key]
        assert span.attributes is not None
        assert span.attributes["taskmgr.execution.id"] == execution.id
        assert span.attributes["taskmgr.execution.scheduled_for"] == (
            execution.scheduled_for.isoformat()
        )
        assert span.attributes["taskmgr.execution.attempt"] == 1
        assert span.attributes["taskmgr.dispatch"] == "inline"
        parent = next(
            d
            for d in dispatches
            if d.attributes and d.attributes["taskmgr.execution.id"] == execution.id
        )
        assert span.parent is not None
        assert span.parent.span_id == parent.context.span_id
    assert runs[OK].status.is_ok
    assert runs[BOOM].status.status_code is trace.StatusCode.ERROR
    assert runs[BOOM].events[0].name == "exception"
    assert runs[BOOM].attributes["taskmgr.execution.status"] == "failed"


def test_no_spans_without_an_sdk(service: SchedulerService, clock: FakeClock) -> None:
    from taskmgr.core import tracing as _tracing

    assert not _tracing.enabled()
    service.start()
    clock.advance(seconds=60)
    assert len(service.run_due()) == 2
