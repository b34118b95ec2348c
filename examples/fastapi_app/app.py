"""A small shop that mounts taskmgr into its own FastAPI app.

Run it from this directory::

    uvicorn app:app

then open http://127.0.0.1:8000/admin/jobs/ (user ``admin``, password from
``SHOP_ADMIN_PASSWORD``, default ``change-me``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import auth
from fastapi import Depends, FastAPI

import jobs
from taskmgr import SchedulerService
from taskmgr.fastapi import create_router, lifespan

service = SchedulerService(
    os.environ.get("TASKMGR_DATABASE_URL", "sqlite:///shop.db"),
    jobs=[jobs, jobs.rebuild_search_index],
)


@asynccontextmanager
async def shop_lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The shop's own resources come up first and go down last...
    app.state.greeting = "welcome to the shop"
    # ...and taskmgr runs in between: started with the app, stopped with it.
    async with lifespan(service):
        yield
    app.state.greeting = None


app = FastAPI(title="Shop", lifespan=shop_lifespan)
app.include_router(
    create_router(
        service,
        dependencies=[Depends(auth.current_user)],
        write_dependencies=[Depends(auth.require_admin)],
        actor=auth.user_name,
    ),
    prefix="/admin/jobs",
    tags=["jobs"],
)


@app.get("/")
def home() -> dict[str, str]:
    return {"message": str(app.state.greeting)}
