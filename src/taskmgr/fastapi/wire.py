"""The bodies of the list routes, serialized from the service's own models at once.

A job or an execution that the service returns was validated when it was made. A
page of them (up to 500) becomes the fields of its response model
(:class:`~taskmgr.fastapi.schemas.JobOut`, :class:`~taskmgr.fastapi.schemas.ExecutionOut`),
in the model's order, and the page is serialized by one call of pydantic's serializer:
validating every object again as a response model, then serializing the models, took
most of a page's time. The models stay the contract: the routes declare them as their
``response_model`` (the OpenAPI document), and a test checks that these bodies are the
ones the models make of the same objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pydantic_core
from fastapi import Response

from taskmgr.core.models import Execution, Job
from taskmgr.core.triggers import Cron, Date, Interval, TriggerSpec
from taskmgr.fastapi.describe import describe_trigger
from taskmgr.fastapi.schemas import ExecutionOut, JobOut

__all__ = ["JSONBody", "execution_fields", "execution_page", "job_fields", "job_page", "job_runs"]

_JOB_FIELDS = tuple(JobOut.model_fields)
_EXECUTION_FIELDS = tuple(ExecutionOut.model_fields)
_JOB_MADE = frozenset({"trigger", "schedule", "retry_backoff"})


class JSONBody(Response):
    """``application/json`` of plain values (dicts, lists, datetimes, enums), written
    as pydantic writes a response model's fields (``NaN`` and infinities as ``null``)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content, inf_nan_mode="null")


def trigger_fields(spec: TriggerSpec) -> dict[str, Any]:
    """``spec`` as the fields of its :data:`~taskmgr.fastapi.schemas.TriggerOut`."""
    if isinstance(spec, Cron):
        return {"type": "cron", "expression": spec.expression, "timezone": spec.timezone}
    if isinstance(spec, Interval):
        return {"type": "interval", "every": spec.every.total_seconds(), "start": spec.start}
    if isinstance(spec, Date):
        return {"type": "date", "at": spec.at}
    return {"type": "manual"}


def job_fields(job: Job) -> dict[str, Any]:
    """``job`` as the fields of a :class:`~taskmgr.fastapi.schemas.JobOut`."""
    backoff = job.retry_backoff
    made = {
        "trigger": trigger_fields(job.trigger),
        "schedule": describe_trigger(job.trigger),
        "retry_backoff": {"base": backoff.base, "max": backoff.max, "jitter": backoff.jitter},
    }
    return {n: made[n] if n in _JOB_MADE else getattr(job, n) for n in _JOB_FIELDS}


def execution_fields(execution: Execution) -> dict[str, Any]:
    """``execution`` as the fields of an :class:`~taskmgr.fastapi.schemas.ExecutionOut`
    (its trace context is for the dispatchers' spans, not for readers of the API)."""
    lateness = None
    if execution.started_at is not None:
        late = execution.started_at - execution.scheduled_for
        lateness = round(late.total_seconds() * 1000)
    return {n: lateness if n == "lateness_ms" else getattr(execution, n) for n in _EXECUTION_FIELDS}


def job_page(jobs: Iterable[Job], next_cursor: str | None) -> JSONBody:
    """The body of a :class:`~taskmgr.fastapi.schemas.JobPage`."""
    return JSONBody({"items": [job_fields(j) for j in jobs], "next_cursor": next_cursor})


def execution_page(executions: Iterable[Execution], next_cursor: str | None) -> JSONBody:
    """The body of an :class:`~taskmgr.fastapi.schemas.ExecutionPageOut`."""
    items = [execution_fields(e) for e in executions]
    return JSONBody({"items": items, "next_cursor": next_cursor})


def job_runs(recent: Mapping[str, Sequence[Execution]]) -> JSONBody:
    """The body of a list of :class:`~taskmgr.fastapi.schemas.JobRunsOut`."""
    return JSONBody(
        [
            {"job_key": key, "items": [execution_fields(e) for e in items]}
            for key, items in recent.items()
        ]
    )
