"""``taskmgr incidents``: the incidents of the alert rules (late, failing, overrunning,
silent jobs), open ones first in mind: ``taskmgr incidents list --open``."""

from __future__ import annotations

import click

from taskmgr.cli.common import Target, emit, open_service, table, target_options, when

__all__ = ["incidents"]

#: Longest message shown in a table cell (``--json`` shows it whole).
_MESSAGE_WIDTH = 70


@click.group()
def incidents() -> None:
    """Incidents of the alert rules: one per breach, open until it resolves."""


@incidents.command("list")
@target_options()
@click.option("--open", "open_only", is_flag=True, help="Only the incidents still open.")
@click.option("--job", "job_key", metavar="KEY", help="Only this job's incidents.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
def incidents_list(target: Target, open_only: bool, job_key: str | None, limit: int) -> None:
    """Incidents, newest first: job, rule, when it opened and resolved, what is wrong,
    and how its webhook delivery stands."""
    with open_service(target) as service:
        found = service.list_incidents(open_only=open_only, job_key=job_key, limit=limit)
    emit(
        target,
        found,
        lambda: table(
            ["id", "job", "rule", "opened", "resolved", "webhook", "message"],
            [
                [
                    i.id,
                    i.job_key or "-",
                    i.rule.value,
                    when(i.opened_at),
                    "open" if i.resolved_at is None else when(i.resolved_at),
                    "-" if i.notify_state is None else i.notify_state.value,
                    _short(i.message),
                ]
                for i in found
            ],
        ),
    )


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_WIDTH else text[: _MESSAGE_WIDTH - 1] + "…"
