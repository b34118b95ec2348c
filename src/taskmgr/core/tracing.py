"""OpenTelemetry spans around defers, dispatches and executions, through
``opentelemetry-api``.

A no-op unless the host installs an SDK (``trace.set_tracer_provider``): while the
global provider is the API's proxy or no-op provider, :func:`enabled` is false and no
span object is created on the hot path. ``opentelemetry-api`` itself is optional:
without it, tracing is off and ``import taskmgr`` still works.

Context crosses two gaps. A run asked for now (a defer, a manual run) stores the W3C
trace context of the caller's span (``traceparent``/``tracestate``) with the run, so
the dispatch span of whichever instance claims it later is its child; and a message to
a Celery worker carries the dispatch span's context in its headers (the host's
propagator), so the worker's execution span is the dispatch span's child.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised only without opentelemetry-api
    trace = None  # type: ignore[assignment]
    otel_context = None  # type: ignore[assignment]
    propagate = None  # type: ignore[assignment]

from taskmgr.version import __version__

__all__ = [
    "consumer_parent",
    "current_context",
    "defer_span",
    "deferred",
    "dispatch_span",
    "enabled",
    "execution_attributes",
    "finish",
    "message_headers",
    "start_execution",
]

TRACER_NAME = "taskmgr"
#: Longest ``tracestate`` stored with a run (the W3C limit for propagation is 512).
MAX_TRACESTATE = 512

if trace is not None:
    _OFF: tuple[type, ...] = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    _W3C = TraceContextTextMapPropagator()


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


def _valid(context: Any) -> bool:
    return bool(trace.get_current_span(context).get_span_context().is_valid)


def current_context() -> dict[str, str] | None:
    """The W3C trace context of the caller's current span, to store with a run asked
    for now (its dispatch span becomes that span's child); None when tracing is off or
    no span is current."""
    if not enabled() or not _valid(None):
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    if len(carrier.get("tracestate", "")) > MAX_TRACESTATE:
        del carrier["tracestate"]
    return carrier or None


def _stored(stored: Mapping[str, Any] | None) -> Any:
    """The context a run stored (see :func:`current_context`), or None."""
    if not stored:
        return None
    carrier = {key: value for key, value in stored.items() if isinstance(value, str)}
    context = _W3C.extract(carrier)
    return context if _valid(context) else None


@contextmanager
def defer_span(job_key: str, count: int) -> Iterator[Any]:
    """A span around deferring ``count`` runs of ``job_key``; the runs store its context.
    Yields the span (None when tracing is off)."""
    if not enabled():
        yield None
        return
    attributes = {"taskmgr.job.key": job_key, "taskmgr.defer.count": count}
    with _tracer().start_as_current_span(
        f"taskmgr defer {job_key}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span


def deferred(span: Any, execution_ids: list[str]) -> None:
    """Name the execution a defer span wrote, when it wrote one."""
    if span is not None and len(execution_ids) == 1:
        span.set_attribute("taskmgr.execution.id", execution_ids[0])


@contextmanager
def dispatch_span(
    attributes: dict[str, Any],
    *,
    producer: bool = False,
    stored: Mapping[str, Any] | None = None,
) -> Iterator[Any]:
    """A span around handing one execution to its runner, child of the context the run
    ``stored`` (when it has one); yields the span context to parent the execution span
    on (None when tracing is off)."""
    if not enabled():
        yield None
        return
    kind = trace.SpanKind.PRODUCER if producer else trace.SpanKind.INTERNAL
    name = f"taskmgr dispatch {attributes['taskmgr.job.key']}"
    with _tracer().start_as_current_span(
        name, context=_stored(stored), kind=kind, attributes=attributes
    ) as span:
        yield trace.set_span_in_context(span)


def message_headers() -> dict[str, str]:
    """The current context as message headers, in the format of the host's propagator
    (W3C ``traceparent``/``tracestate`` by default); empty when tracing is off."""
    carrier: dict[str, str] = {}
    if enabled() and _valid(None):
        propagate.inject(carrier)
    return carrier


def consumer_parent(headers: Mapping[str, Any], stored: Mapping[str, Any] | None) -> Any:
    """The parent of an execution span in a worker: the span an instrumentation made
    current (e.g. Celery's own), else the context the message's ``headers`` carry, else
    the one the run ``stored``; None when tracing is off or there is none."""
    if not enabled():
        return None
    if _valid(None):
        return otel_context.get_current()
    fields = propagate.get_global_textmap().fields
    carrier = {key: headers[key] for key in fields if isinstance(headers.get(key), str)}
    context = propagate.extract(carrier) if carrier else None
    if context is not None and _valid(context):
        return context
    return _stored(stored)


def start_execution(attributes: dict[str, Any], parent: Any = None) -> tuple[Any, Any] | None:
    """Start the span of one execution and make it current (so the job's own spans
    nest under it). Returns what :func:`finish` needs, or None when tracing is off.

    A CONSUMER span when its parent is in another process (or it has none), else an
    INTERNAL child of the local dispatch span."""
    if not enabled():
        return None
    remote = parent is None or trace.get_current_span(parent).get_span_context().is_remote
    kind = trace.SpanKind.CONSUMER if remote else trace.SpanKind.INTERNAL
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
