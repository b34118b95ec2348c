"""The app the HTTP benchmark serves (``uvicorn benchmarks.http_app:app``): taskmgr's
router under ``/tm`` and bare FastAPI endpoints under ``/bare`` that run the same SQL
by hand (no service, no models, no validation of stored rows), on one database."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from taskmgr import InlineDispatcher, SchedulerService
from taskmgr.fastapi import create_router, lifespan


def noop() -> None:
    """The job the triggered runs execute."""


def _json(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def build(database: str) -> FastAPI:
    service = SchedulerService(database, jobs=[noop], dispatcher=InlineDispatcher(4))
    app = FastAPI(lifespan=lifespan(service))
    app.include_router(
        create_router(service, public=True, writes="readers", dashboard=False), prefix="/tm"
    )
    engine = sa.create_engine(database, pool_size=8)
    jobs_sql = sa.text("SELECT * FROM taskmgr_jobs ORDER BY job_key LIMIT 51")
    executions_sql = sa.text(
        "SELECT * FROM taskmgr_executions ORDER BY created_at DESC, id DESC LIMIT 51"
    )
    find_sql = sa.text("SELECT id, kwargs FROM taskmgr_jobs WHERE job_key = :key")
    insert_sql = sa.text(
        "INSERT INTO taskmgr_executions (id, job_id, job_key, scheduled_for, attempt, "
        "chain_id, trigger, status, due_at, queued, kwargs, created_at) VALUES (:id, "
        ":job_id, :key, :now, 1, :id, 'manual', 'pending', :now, false, '{}', :now)"
    )

    @app.get("/bare/jobs")
    def bare_jobs() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return [_json(row) for row in conn.execute(jobs_sql).mappings()]

    @app.get("/bare/executions")
    def bare_executions() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            return [_json(row) for row in conn.execute(executions_sql).mappings()]

    @app.post("/bare/jobs/{key}/trigger", status_code=202)
    def bare_trigger(key: str) -> dict[str, Any]:
        now = datetime.now(UTC)
        if engine.dialect.name == "sqlite":
            now = now.replace(tzinfo=None)
        with engine.begin() as conn:
            job = conn.execute(find_sql, {"key": key}).one()
            execution_id = str(uuid.uuid4())
            conn.execute(insert_sql, {"id": execution_id, "job_id": job.id, "key": key, "now": now})
        return {"id": execution_id, "job_key": key, "status": "pending"}

    return app


app = (
    build(os.environ["TASKMGR_BENCH_DATABASE"]) if "TASKMGR_BENCH_DATABASE" in os.environ else None
)
