"""A small shop that mounts taskmgr into its own FastAPI app.

Run it from this directory::

    uvicorn app:app

then open http://127.0.0.1:8000/admin/jobs/ (user ``admin``, password from
``SHOP_ADMIN_PASSWORD``, default ``change-me``), or sign a user up::

    curl -X POST http://127.0.0.1:8000/signup -H 'Content-Type: application/json' \
         -d '{"email": "ada@example.com"}'
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import auth
import db
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from taskmgr import AsyncSchedulerService, SchedulerService
from taskmgr.fastapi import create_router, lifespan

# The shop's own async engine: taskmgr takes its URL, not its pool.
service = SchedulerService(db.engine, jobs=[jobs, jobs.rebuild_search_index])
#: The same service for ``async def`` code: its calls never block the event loop.
aservice = AsyncSchedulerService(service)
#: The referral codes a signup may give; any other is refused (and rolled back).
REFERRAL_CODES = {"FRIENDS"}


@asynccontextmanager
async def shop_lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The shop's own resources come up first and go down last...
    app.state.greeting = "welcome to the shop"
    await db.create_tables()
    # ...and taskmgr runs in between: started with the app, stopped with it.
    async with lifespan(service):
        yield
    app.state.greeting = None
    await db.engine.dispose()


app = FastAPI(title="Shop", lifespan=shop_lifespan)
app.include_router(
    create_router(
        service,
        dependencies=[Depends(auth.current_user)],  # who may look
        write_dependencies=[Depends(auth.require_admin)],  # who may act: admins only
        actor=auth.user_name,
    ),
    prefix="/admin/jobs",
    tags=["jobs"],
)


@app.get("/")
def home() -> dict[str, str]:
    return {"message": str(app.state.greeting)}


class Signup(BaseModel):
    email: str = Field(min_length=3, max_length=254)
    referral: str | None = None


@app.post("/signup", status_code=201)
async def signup(body: Signup) -> dict[str, object]:
    """Create a user and defer their welcome mail in one transaction: both are
    committed, or neither (the outbox pattern; no mail for a user that never was)."""
    try:
        async with AsyncSession(db.engine) as session, session.begin():
            user = db.User(email=body.email)
            session.add(user)
            await session.flush()  # assigns the id
            user_id = user.id
            run = await aservice.defer(jobs.send_welcome, user_id=user_id, session=session)
            if body.referral is not None and body.referral not in REFERRAL_CODES:
                # Raised inside session.begin(): the transaction rolls back, taking
                # the user row and the deferred run with it.
                raise HTTPException(422, "unknown referral code")
    except IntegrityError:  # the email is taken: nothing was written
        raise HTTPException(409, "this email is already signed up") from None
    return {"user_id": user_id, "welcome_run": run.id}
