"""The pause and backfill routes of :func:`~taskmgr.fastapi.create_router`: pause and
resume a queue or the whole service, list everything paused, and backfill a job's
past slots. (A job's own pause is ``POST /jobs/{key}/pause``, in :mod:`.job_routes`.)"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time, and some name closure variables (the host's ``actor`` dependency).

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from fastapi.params import Depends as DependsParam

from taskmgr.core.pauses import MAX_QUEUE_NAME, Pause
from taskmgr.fastapi.audit_routes import WriteSource
from taskmgr.fastapi.parameters import READ, WRITE, JobKey
from taskmgr.fastapi.schemas.common import OutModel
from taskmgr.fastapi.schemas.pauses import (
    BackfillOut,
    BackfillRequest,
    PauseOut,
    PauseRequest,
    PausesOut,
)
from taskmgr.service import AsyncSchedulerService

__all__ = ["ResumeOut", "add_pause_routes"]

#: A queue's name in a path: one path segment (a queue whose name holds ``/`` is paused
#: from Python or the command line).
QUEUE_NAME_PATTERN = r"^[^\x00/]*$"
QueueName = Annotated[
    str, Path(min_length=1, max_length=MAX_QUEUE_NAME, pattern=QUEUE_NAME_PATTERN)
]


class ResumeOut(OutModel):
    """What a resume ended (null: nothing was paused; nothing is recorded then)."""

    ended: PauseOut | None


def _ended(pause: Pause | None) -> ResumeOut:
    return ResumeOut(ended=None if pause is None else PauseOut.of(pause))


def add_pause_routes(
    router: APIRouter,
    service: AsyncSchedulerService,
    writes: list[DependsParam],
    actor_dependency: Callable[..., Any],
) -> None:
    """Add the pause and backfill routes to ``router``; ``writes`` guard those that
    change something, ``actor_dependency`` (sync or ``async``) names who asks (the audit
    log)."""

    @router.get("/pauses", operation_id="taskmgr_list_pauses", responses=READ)
    async def list_pauses() -> PausesOut:
        """Everything paused now, with who, why, since when and until when."""
        return PausesOut(items=[PauseOut.of(pause) for pause in await service.list_pauses()])

    @router.post(
        "/pause", operation_id="taskmgr_pause_service", dependencies=writes, responses=WRITE
    )
    async def pause_service(
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
        body: Annotated[PauseRequest | None, Body()] = None,
    ) -> PauseOut:
        """Pause the whole service, cluster-wide: nothing starts until it is resumed (or
        until ``until``); runs asked for meanwhile wait. 422 ``until_in_past`` for an
        ``until`` that is not in the future."""
        request = body if body is not None else PauseRequest()
        pause = await service.pause_service(
            reason=request.reason, until=request.until, actor=who, source=source
        )
        return PauseOut.of(pause)

    @router.post(
        "/resume", operation_id="taskmgr_resume_service", dependencies=writes, responses=WRITE
    )
    async def resume_service(
        who: Annotated[str | None, Depends(actor_dependency)], source: WriteSource
    ) -> ResumeOut:
        """End the pause of the whole service (idempotent)."""
        return _ended(await service.resume_service(actor=who, source=source))

    @router.post(
        "/queues/{queue}/pause",
        operation_id="taskmgr_pause_queue",
        dependencies=writes,
        responses=WRITE,
    )
    async def pause_queue(
        queue: QueueName,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
        body: Annotated[PauseRequest | None, Body()] = None,
    ) -> PauseOut:
        """Pause every job whose ``queue`` is this one (those created later too):
        their slots pass unrun and their pending runs wait, until resumed or ``until``."""
        request = body if body is not None else PauseRequest()
        pause = await service.pause_queue(
            queue, reason=request.reason, until=request.until, actor=who, source=source
        )
        return PauseOut.of(pause)

    @router.post(
        "/queues/{queue}/resume",
        operation_id="taskmgr_resume_queue",
        dependencies=writes,
        responses=WRITE,
    )
    async def resume_queue(
        queue: QueueName,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> ResumeOut:
        """End the pause of a queue (idempotent)."""
        return _ended(await service.resume_queue(queue, actor=who, source=source))

    @router.post(
        "/jobs/{job_key}/backfill",
        operation_id="taskmgr_backfill_job",
        dependencies=writes,
        responses=WRITE,
    )
    async def backfill_job(
        job_key: JobKey,
        body: BackfillRequest,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> BackfillOut:
        """Create the job's slots in ``[start, end]`` (in the past) as pending runs
        (trigger ``backfill``), each started once, at most ``max_instances`` at a time;
        slots that already have a row are not created again. 422 ``invalid_backfill``
        for an empty or future range or a task, ``backfill_too_large`` for a range of
        more than ``max_runs`` slots."""
        result = await service.backfill(
            job_key, body.start, body.end, max_runs=body.max_runs, actor=who, source=source
        )
        return BackfillOut.of(result)
