"""OpenTelemetry spans around dispatches and executions, through ``opentelemetry-api``.

A no-op unless the host installs an SDK (``trace.set_tracer_provider``): while the
global provider is the API's proxy or no-op provider, :func:`enabled` is false and no
span object is created on the hot path. ``opentelemetry-api`` itself is optional:
without it, tracing is off and ``import taskmgr`` still works.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
except ImportError:  # pragma: no cover - exercised only without opentelemetry-api
    trace = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]

from taskmgr.version import __version__

__all__ = ["dispatch_span", "enabled", "execution_attributes", "finish", "start_execution"]

TRACER_NAME = "taskmgr"

if trace is not None:
    _OFF: tuple[type, ...] = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def enabled() -> bool:
    """Whether a real tracer provider (an SDK) is installed."""
    return trace is not None and not isinstance(trace.get_tracer_provider(), _OFF)


def execution_attributes(
    *, execution_id: str, job_key: str, scheduled_for: datetime, attempt: int, dispatch: str
) -> dict[str, Any]:
    return {
        "taskmgr.execution.id": execution_id,
        "taskmgr.job.key": job_key,
        "taskmgr.execution.scheduled_for": scheduled_for.isoformat(),
        "taskmgr.execution.attempt": attempt,
        "taskmgr.dispatch": dispatch,
    }


def _tracer() -> Any:
    return trace.get_tracer(TRACER_NAME, __version__)


@contextmanager
def dispatch_span(attributes: dict[str, Any], *, producer: bool = False) -> Iterator[Any]:
    """A span around handing one execution to its runner; yields the span context to
    parent the execution span on (None when tracing is off)."""
    if not enabled():
        yield None
        return
    kind = trace.SpanKind.PRODUCER if producer else trace.SpanKind.INTERNAL
    name = f"taskmgr dispatch {attributes['taskmgr.job.key']}"
    with _tracer().start_as_current_span(name, kind=kind, attributes=attributes) as span:
        yield trace.set_span_in_context(span)


def start_execution(attributes: dict[str, Any], parent: Any = None) -> tuple[Any, Any] | None:
    """Start the span of one execution and make it current (so the job's own spans
    nest under it). Returns what :func:`finish` needs, or None when tracing is off."""
    if not enabled():
        return None
    kind = trace.SpanKind.CONSUMER if parent is None else trace.SpanKind.INTERNAL
    name = f"taskmgr run {attributes['taskmgr.job.key']}"
    span = _tracer().start_span(name, context=parent, kind=kind, attributes=attributes)
    token = otel_context.attach(trace.set_span_in_context(span))
    return span, token


def finish(handle: tuple[Any, Any] | None, status: str, error: BaseException | None = None) -> None:
    """End an execution span with the execution's final status."""
    if handle is None:
        return
    span, token = handle
    try:
        span.set_attribute("taskmgr.execution.status", status)
        if error is not None:
            span.record_exception(error)
        if status != "success":
            description = f"{type(error).__name__}: {error}" if error is not None else status
            span.set_status(trace.Status(trace.StatusCode.ERROR, description))
        span.end()
    finally:
        otel_context.detach(token)
