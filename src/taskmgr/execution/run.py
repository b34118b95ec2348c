"""Run one claimed execution and describe how it ended, for every dispatcher.

The rules shared by every way of running a job live here: the execution context,
what a result summary holds, how a failure is recorded, and when a retry is due.
"""

from __future__ import annotations

import json
import logging
import random
import time
import traceback as tb
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core import tracing as _tracing
from taskmgr.core.clock import Clock
from taskmgr.core.context import ExecutionContext, reset_current, set_current
from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, new_execution_id
from taskmgr.storage.base import Claimed, NewExecution, Outcome

__all__ = ["ExecutionRun", "storable_text", "summarize_result"]

logger = logging.getLogger("taskmgr.execution")

#: Largest JSON result kept as ``result_summary``; larger results keep a short repr.
MAX_RESULT_BYTES = 4096
MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 20000


#: The width of the ``error_type`` column.
MAX_ERROR_TYPE_CHARS = 255
#: What stands where text was cut.
TRUNCATED = " [truncated]"


def storable_text(text: str, limit: int, *, keep: str = "start") -> str:
    """``text`` as every database stores it: NUL (refused by PostgreSQL) and lone
    surrogates (refused by every encoder) become U+FFFD, and text longer than ``limit``
    characters is cut to ``limit`` with a marker, keeping its start (or its ``end``,
    for a traceback, whose last lines matter)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # lone surrogates: through UTF-16 with surrogatepass, then each bad unit replaced
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if len(text) <= limit:
        return text
    marker = TRUNCATED.strip()
    if keep == "end":
        return marker + " " + text[-(limit - len(marker) - 1) :]
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value, len(value))
    if isinstance(value, list):
        return [_storable_json(item) for item in value]
    if isinstance(value, dict):
        return {_storable_json(key): _storable_json(item) for key, item in value.items()}
    return value


def summarize_result(value: Any) -> Any:
    """A bounded JSON summary of a job's return value, its text storable (see
    :func:`storable_text`)."""
    if value is None:
        return None
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        encoded = None
    if encoded is not None and len(encoded) <= MAX_RESULT_BYTES:
        return _storable_json(value)
    return {"type": type(value).__qualname__, "repr": storable_text(repr(value)[:500], 500)}


#: The triggers of a schedule's slots (the runs a misfire grace time applies to).
_SLOT_TRIGGERS = frozenset({ExecutionTrigger.SCHEDULE, ExecutionTrigger.CATCHUP})


class ExecutionRun:
    """One claimed execution: its context, timing and outcome."""

    def __init__(
        self,
        claimed: Claimed,
        owner: str,
        clock: Clock,
        *,
        timeout_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.claimed = claimed
        self.owner = owner
        self.clock = clock
        #: Exceptions that mean "the time limit was reached" where something outside
        #: the job enforces it (Celery's ``SoftTimeLimitExceeded``): recorded as timeout.
        self.timeout_errors = timeout_errors
        execution = claimed.execution
        self.context = ExecutionContext(
            execution_id=execution.id,
            job_key=execution.job_key,
            scheduled_for=execution.scheduled_for,
            attempt=execution.attempt,
            trigger=execution.trigger.value,
        )
        self.started_at: datetime | None = None
        self._started = 0.0
        #: Called on the job's thread once it starts (the service's event hub).
        self.on_start: Callable[[ExecutionRun], None] | None = None
        #: The dispatcher's name and span context, for the execution's span.
        self.dispatch = "inline"
        self.trace_parent: Any = None
        self._expired = False

    @property
    def timeout(self) -> float | None:
        return self.claimed.job.timeout

    def call_sync(self, func: Callable[..., Any]) -> Outcome:
        """Run a sync function on the calling thread and return its outcome."""
        token = set_current(self.context)
        span = self._start()
        try:
            result = func(**self.claimed.execution.kwargs)
        except self.timeout_errors as exc:
            return self._traced(span, self.timed_out(), exc)
        except (Exception, SystemExit) as exc:  # a job calling sys.exit() has failed
            return self._traced(span, self.failed(exc), exc)
        finally:
            reset_current(token)
        return self._traced(span, self.succeeded(result))

    async def call_async(self, func: Callable[..., Awaitable[Any]]) -> Outcome:
        """Await an ``async def`` job, cancelling it at its timeout. Cancelled from
        outside after :meth:`expire`, it returns the timeout outcome; cancelled
        otherwise, it ends its span and lets the cancellation through."""
        import asyncio

        token = set_current(self.context)
        span = self._start()
        try:
            coro = func(**self.claimed.execution.kwargs)
            result = await asyncio.wait_for(coro, self.timeout)
        except (TimeoutError, *self.timeout_errors) as exc:  # type: ignore[misc]
            return self._traced(span, self.timed_out(), exc)
        except Exception as exc:
            return self._traced(span, self.failed(exc), exc)
        except asyncio.CancelledError as exc:
            if self._expired:  # cancelled at a time limit enforced outside the job
                return self._traced(span, self.timed_out(), exc)
            _tracing.finish(span, "cancelled", exc)
            raise
        finally:
            reset_current(token)
        return self._traced(span, self.succeeded(result))

    def expire(self) -> None:
        """The run reached a time limit enforced outside it (Celery's soft limit): the
        cancellation of its ``async def`` job that follows is its timeout."""
        self._expired = True

    def _start(self) -> tuple[Any, Any] | None:
        self.started_at = self.clock.now()
        self._started = time.monotonic()
        execution = self.claimed.execution
        if self.on_start is not None:
            try:
                self.on_start(self)
            except Exception:  # a hook must never fail a run
                logger.exception("execution start hook failed", extra=self._extra())
        span = None
        if _tracing.enabled():
            span = _tracing.start_execution(self.span_attributes(), self.trace_parent)
        logger.debug(
            "execution %s of %r started (slot %s, attempt %d)",
            execution.id,
            execution.job_key,
            execution.scheduled_for.isoformat(),
            execution.attempt,
            extra=self._extra(),
        )
        return span

    def span_attributes(self) -> dict[str, Any]:
        execution = self.claimed.execution
        return _tracing.execution_attributes(
            execution_id=execution.id,
            job_key=execution.job_key,
            scheduled_for=execution.scheduled_for,
            attempt=execution.attempt,
            dispatch=self.dispatch,
        )

    @staticmethod
    def _traced(
        span: tuple[Any, Any] | None, outcome: Outcome, error: BaseException | None = None
    ) -> Outcome:
        _tracing.finish(span, outcome.status.value, error)
        return outcome

    def _duration_ms(self) -> int | None:
        if self.started_at is None:
            return None
        return int((time.monotonic() - self._started) * 1000)

    def _extra(self) -> dict[str, Any]:
        execution = self.claimed.execution
        return {
            "taskmgr_job_key": execution.job_key,
            "taskmgr_execution_id": execution.id,
            "taskmgr_scheduled_for": execution.scheduled_for.isoformat(),
            "taskmgr_attempt": execution.attempt,
        }

    # -- outcomes ------------------------------------------------------------------

    def succeeded(self, result: Any) -> Outcome:
        return Outcome(
            execution_id=self.claimed.execution.id,
            owner=self.owner,
            status=ExecutionStatus.SUCCESS,
            started_at=self.started_at,
            completed_at=self.clock.now(),
            duration_ms=self._duration_ms(),
            result_summary=summarize_result(result),
        )

    def failed(self, exc: BaseException) -> Outcome:
        execution = self.claimed.execution
        logger.warning(
            "execution %s of %r failed: %s: %s",
            execution.id,
            execution.job_key,
            type(exc).__name__,
            exc,
            extra=self._extra(),
        )
        return self._ended(
            ExecutionStatus.FAILED,
            error_type=storable_text(
                f"{type(exc).__module__}.{type(exc).__qualname__}", MAX_ERROR_TYPE_CHARS
            ),
            error_message=storable_text(_message(exc), MAX_ERROR_CHARS),
            traceback=storable_text(
                "".join(tb.format_exception(exc)), MAX_TRACEBACK_CHARS, keep="end"
            ),
        )

    def cancelled(self, reason: str) -> Outcome:
        """The execution was claimed but never started (e.g. an immediate shutdown)."""
        return Outcome(
            execution_id=self.claimed.execution.id,
            owner=self.owner,
            status=ExecutionStatus.CANCELLED,
            started_at=None,
            completed_at=self.clock.now(),
            error_message=reason,
        )

    def too_late(self, now: datetime) -> str | None:
        """Why this run must not start at ``now``: a slot of a schedule past its job's
        misfire grace time (judged at the actual start, as the planner judges it at the
        claim); None when it may start."""
        execution = self.claimed.execution
        grace = self.claimed.job.misfire_grace_time
        if grace is None or execution.trigger not in _SLOT_TRIGGERS:
            return None
        late = (now - execution.scheduled_for).total_seconds()
        if late <= grace:
            return None
        return f"started {late:.3f}s late, beyond the misfire grace time of {grace:g}s"

    def missed(self, reason: str) -> Outcome:
        """The execution was claimed but could not start within its job's misfire grace
        time (:meth:`too_late`): it never started."""
        return Outcome(
            execution_id=self.claimed.execution.id,
            owner=self.owner,
            status=ExecutionStatus.MISSED,
            started_at=None,
            completed_at=self.clock.now(),
            error_message=reason,
        )

    def timed_out(self) -> Outcome:
        execution = self.claimed.execution
        logger.warning(
            "execution %s of %r timed out after %ss",
            execution.id,
            execution.job_key,
            self.timeout,
            extra=self._extra(),
        )
        return self._ended(
            ExecutionStatus.TIMEOUT,
            error_type="TimeoutError",
            error_message=f"did not finish within its timeout of {self.timeout}s",
        )

    def lost(self, reason: str) -> Outcome:
        """The process running the execution died (a killed Celery worker child)."""
        execution = self.claimed.execution
        logger.warning(
            "execution %s of %r lost: %s",
            execution.id,
            execution.job_key,
            reason,
            extra=self._extra(),
        )
        return self._ended(ExecutionStatus.LOST, error_type="WorkerLostError", error_message=reason)

    def _ended(
        self,
        status: ExecutionStatus,
        *,
        error_type: str,
        error_message: str,
        traceback: str | None = None,
    ) -> Outcome:
        completed_at = self.clock.now()
        return Outcome(
            execution_id=self.claimed.execution.id,
            owner=self.owner,
            status=status,
            started_at=self.started_at,
            completed_at=completed_at,
            duration_ms=self._duration_ms(),
            error_type=error_type,
            error_message=error_message,
            traceback=traceback,
            retry=next_attempt(self.claimed, completed_at),
        )


def next_attempt(claimed: Claimed, now: datetime, rand: float | None = None) -> NewExecution | None:
    """The retry of a failed, timed-out or lost attempt, when the job has retries left."""
    execution, job = claimed.execution, claimed.job
    if execution.attempt > job.max_retries:
        return None
    delay = job.retry_backoff.delay(execution.attempt, random.random() if rand is None else rand)
    due = now + timedelta(seconds=delay)
    return NewExecution(
        id=new_execution_id(),
        job_id=execution.job_id,
        job_key=execution.job_key,
        scheduled_for=execution.scheduled_for,
        attempt=execution.attempt + 1,
        chain_id=execution.chain_id,
        trigger=ExecutionTrigger.RETRY,
        status=ExecutionStatus.PENDING,
        due_at=due,
        created_at=now,
        kwargs=execution.kwargs,
        actor=execution.actor,
        # the retry takes its attempt's place in the same group
        concurrency_value=execution.concurrency_value,
        # and in the same trace
        trace_context=execution.trace_context,
    )


def _message(exc: BaseException) -> str:
    """``str(exc)``, or what can be said of an exception whose ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__qualname__}: its message could not be read>"
