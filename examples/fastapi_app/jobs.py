"""The example shop's scheduled jobs and its one task, declared where they live, like
any host's."""

from __future__ import annotations

import logging
import random

import db
from sqlalchemy.ext.asyncio import AsyncSession

from taskmgr import current_execution, scheduled_job, task

logger = logging.getLogger("shop.jobs")


@scheduled_job(
    "reports.nightly",
    cron="30 2 * * *",
    timezone="Europe/Berlin",
    names={"en": "Nightly sales report", "de": "Nächtlicher Umsatzbericht"},
    description="Totals yesterday's orders and mails them to the sales team.",
    kwargs={"recipients": ["sales@example.com"]},
    max_retries=2,
)
def nightly_report(recipients: list[str]) -> dict[str, object]:
    orders = random.randint(80, 120)  # stands in for a database query
    logger.info("sent the nightly report on %d orders to %s", orders, recipients)
    return {"orders": orders, "recipients": len(recipients)}


@scheduled_job(
    "catalogue.sync",
    interval=15 * 60,
    names={"en": "Catalogue sync"},
    description="Pulls prices and stock from the supplier's API.",
    timeout=120,
    max_retries=3,
    retry_backoff=(5, 60),
)
def sync_catalogue(full: bool = False) -> dict[str, object]:
    context = current_execution()
    changed = random.randint(0, 25)
    logger.info(
        "catalogue sync (full=%s, attempt %s): %d changes",
        full,
        context and context.attempt,
        changed,
    )
    return {"changed": changed, "full": full}


def rebuild_search_index(language: str = "en") -> str:
    """Not scheduled in code: operators create jobs for it through the API."""
    return f"rebuilt the {language} index"


@task("emails.welcome", max_retries=3, timeout=30, description="Mails a new user.")
async def send_welcome(user_id: int) -> dict[str, object]:
    """Deferred by ``POST /signup`` in the signup's own transaction: it runs only if
    that transaction committed, and then always finds the user's row."""
    async with AsyncSession(db.engine) as session:
        user = await session.get(db.User, user_id)
    if user is None:  # cannot happen: the run and the row were committed together
        raise LookupError(f"no user {user_id}")
    logger.info("sent the welcome mail to %s", user.email)
    return {"sent_to": user.email}
