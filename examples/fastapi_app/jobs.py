"""The example shop's scheduled jobs, declared where they live, like any host's."""

from __future__ import annotations

import logging
import random

from taskmgr import current_execution, scheduled_job

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
