"""The task routes of :func:`~taskmgr.fastapi.create_router`: defer a run of a job
with arguments (idempotent with an ``Idempotency-Key`` header) and cancel a pending
execution. Poll a run with the history routes (``GET /executions/{id}``)."""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations
# at run time, and some name closure variables (the host's ``actor`` dependency).

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request, Response
from fastapi.params import Depends as DependsParam

from taskmgr.fastapi.audit_routes import WriteSource
from taskmgr.fastapi.errors import HTTPProblem
from taskmgr.fastapi.job_routes import require_runner
from taskmgr.fastapi.parameters import WRITE, ExecutionId, JobKey, accepted_run
from taskmgr.fastapi.schemas import DeferRequest, ExecutionOut
from taskmgr.service import AsyncSchedulerService
from taskmgr.service.tasks import DEFER_OPTIONS, MAX_IDEMPOTENCY_KEY

__all__ = ["add_task_routes"]


def add_task_routes(
    router: APIRouter,
    service: AsyncSchedulerService,
    writes: list[DependsParam],
    actor_dependency: Callable[..., str | None],
) -> None:
    """Add the task routes to ``router``; ``writes`` guard them, ``actor_dependency``
    names who asks."""

    @router.post(
        "/jobs/{job_key}/defer",
        operation_id="taskmgr_defer_job",
        status_code=202,
        dependencies=writes,
        responses=WRITE,
    )
    async def defer_job(
        job_key: JobKey,
        request: Request,
        response: Response,
        who: Annotated[str | None, Depends(actor_dependency)],
        body: Annotated[DeferRequest | None, Body()] = None,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY,
                description="A second request with this key returns the first run.",
            ),
        ] = None,
    ) -> ExecutionOut:
        """Defer one run of the job (a task, or any job) with JSON arguments checked
        against its function's signature (202, ``Location`` points at the run). With an
        ``Idempotency-Key`` header, a repeated request returns the first run. 409 when
        the job is paused; 503 when nothing runs to execute it."""
        request_body = body if body is not None else DeferRequest()
        reserved = sorted(set(request_body.kwargs) & DEFER_OPTIONS)
        if reserved:
            raise HTTPProblem(
                422,
                "invalid_kwargs",
                f"argument name(s) {', '.join(reserved)} are defer's own options: "
                "a task cannot take them",
            )
        await require_runner(service)
        execution = await service.defer(
            job_key,
            run_at=request_body.run_at,
            delay=request_body.delay,
            idempotency_key=idempotency_key,
            actor=who,
            **request_body.kwargs,
        )
        return accepted_run(request, response, execution)

    @router.post(
        "/executions/{execution_id}/cancel",
        operation_id="taskmgr_cancel_execution",
        dependencies=writes,
        responses=WRITE,
    )
    async def cancel_execution(
        execution_id: ExecutionId,
        who: Annotated[str | None, Depends(actor_dependency)],
        source: WriteSource,
    ) -> ExecutionOut:
        """Cancel a pending execution (it ends ``cancelled``). 409 when it already
        started or ended."""
        cancelled = await service.cancel_execution(execution_id, actor=who, source=source)
        return ExecutionOut.of(cancelled)
