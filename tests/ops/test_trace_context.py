"""A run asked for inside a span continues that span's trace, in this process too: the
defer span is the caller's child, the dispatch span the defer span's (through the trace
context stored with the run, whatever instance claims it), and the run span the
dispatch span's; a retry keeps the context. Log records logged inside a job carry its
execution through :class:`taskmgr.ExecutionLogFilter`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from taskmgr import (
    AsyncSchedulerService,
    ExecutionLogFilter,
    ExecutionStatus,
    SchedulerService,
    task,
)
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
logger = logging.getLogger("tests.ops.trace_context")


@task(key="traced.work", max_retries=1, retry_backoff=(1, 1, 0))
def work(n: int) -> int:
    logger.warning("working on %d", n)
    if n < 0:
        raise ValueError("negative")
    return n


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return exporter


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(clock: FakeClock) -> Iterator[SchedulerService]:
    service = make_test_service([work], clock=clock)
    service.start()  # syncs the task (no background thread: run_due() runs it)
    yield service
    service.shutdown()


def _by_execution(spans: InMemorySpanExporter, prefix: str) -> dict[str, ReadableSpan]:
    return {
        str(s.attributes["taskmgr.execution.id"]): s
        for s in spans.get_finished_spans()
        if s.name.startswith(prefix) and s.attributes and "taskmgr.execution.id" in s.attributes
    }


def test_a_deferred_run_and_its_retry_continue_the_deferring_trace(
    spans: InMemorySpanExporter, service: SchedulerService, clock: FakeClock
) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request") as request:
        ok = service.defer(work, n=1)
        failing = service.defer(work, n=-1)
    runs = service.run_due()
    clock.advance(seconds=2)
    runs += service.run_due()  # the retry, after its backoff
    retry = next(r for r in runs if r.chain_id == failing.id and r.attempt == 2)
    assert retry.trace_context == failing.trace_context is not None

    defers = _by_execution(spans, "taskmgr defer")
    dispatches = _by_execution(spans, "taskmgr dispatch")
    run_spans = _by_execution(spans, "taskmgr run")
    context = request.get_span_context()
    for execution, deferring in ((ok, ok), (failing, failing), (retry, failing)):
        defer = defers[deferring.id]
        dispatch, run = dispatches[execution.id], run_spans[execution.id]
        assert defer.parent is not None and defer.parent.span_id == context.span_id
        assert dispatch.parent is not None and dispatch.parent.span_id == defer.context.span_id
        assert run.parent is not None and run.parent.span_id == dispatch.context.span_id
        assert run.context.trace_id == context.trace_id
        assert run.kind is trace.SpanKind.INTERNAL
    assert defers[ok.id].kind is trace.SpanKind.PRODUCER
    assert defers[ok.id].attributes is not None
    assert defers[ok.id].attributes["taskmgr.defer.count"] == 1


def test_no_span_no_trace_context(service: SchedulerService) -> None:
    assert service.defer(work, n=1).trace_context is None  # no SDK installed


def test_the_log_filter_names_the_execution_a_record_was_logged_in(
    service: SchedulerService,
) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(ExecutionLogFilter(missing="-"))
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # whatever the root's level is by now
    try:
        run = service.defer(work, n=3)
        service.run_due()
        logger.warning("outside any job")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    inside, outside = records
    assert inside.getMessage() == "working on 3"
    assert inside.taskmgr_execution_id == run.id  # type: ignore[attr-defined]
    assert inside.taskmgr_job_key == "traced.work"  # type: ignore[attr-defined]
    assert inside.taskmgr_attempt == 1  # type: ignore[attr-defined]
    assert outside.taskmgr_execution_id == "-"  # type: ignore[attr-defined]
    # without `missing`, records outside a job get no field; a record's own is kept
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    plain.taskmgr_execution_id = "given"
    assert ExecutionLogFilter().filter(plain) and plain.taskmgr_execution_id == "given"
    bare = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert ExecutionLogFilter().filter(bare) and not hasattr(bare, "taskmgr_job_key")


@pytest.mark.anyio
async def test_an_async_session_defer_keeps_the_callers_trace(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    path = tmp_path / "app.db"
    storage = SQLAlchemyStorage(f"sqlite:///{path}")
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        with make_test_service([work], clock=FakeClock(START), storage=storage) as service:
            aservice = AsyncSchedulerService(service)
            tracer = trace.get_tracer("tests")
            with tracer.start_as_current_span("request") as request:
                async with AsyncSession(engine) as session, session.begin():
                    run = await aservice.defer(work, n=2, session=session)
            [done] = await aservice.run_due()
    finally:
        await engine.dispose()
        storage.close()
    assert done.status is ExecutionStatus.SUCCESS
    defer = _by_execution(spans, "taskmgr defer")[run.id]
    dispatch = _by_execution(spans, "taskmgr dispatch")[run.id]
    assert defer.parent is not None
    assert defer.parent.span_id == request.get_span_context().span_id
    assert dispatch.parent is not None and dispatch.parent.span_id == defer.context.span_id
