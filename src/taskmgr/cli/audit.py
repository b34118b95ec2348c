"""``taskmgr audit``: read the audit log (who changed what, when, through which door)."""

from __future__ import annotations

import json

import click

from taskmgr.cli.common import Target, emit, open_service, table, target_options, when
from taskmgr.core.audit import AuditAction, AuditEntry

__all__ = ["audit"]

#: Longest details shown in a table cell (``--json`` shows them whole).
_DETAILS_WIDTH = 60


def _details(entry: AuditEntry) -> str:
    """An update (pause, resume): each changed field, before -> after; else the JSON."""
    changes = entry.details.get("changes")
    if isinstance(changes, dict):
        text = "; ".join(
            f"{field}: {_json(change.get('before'))} -> {_json(change.get('after'))}"
            for field, change in changes.items()
        )
    elif entry.details:
        text = _json(entry.details)
    else:
        text = "-"
    text = text or "-"
    return text if len(text) <= _DETAILS_WIDTH else text[: _DETAILS_WIDTH - 1] + "…"


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@click.group()
def audit() -> None:
    """The audit log: every change to a job or to the service's state."""


@audit.command("list")
@target_options()
@click.option("--job", "job_key", metavar="KEY", help="Only this job's entries.")
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=click.Choice([a.value for a in AuditAction]),
    help="Only entries of this action (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
def audit_list(target: Target, job_key: str | None, actions: tuple[str, ...], limit: int) -> None:
    """Audit entries, newest first (for an update: the fields it changed)."""
    with open_service(target) as service:
        page = service.list_audit(job_key, action=list(actions) or None, limit=limit)
    emit(
        target,
        page.items,
        lambda: table(
            ["id", "at", "actor", "source", "action", "job", "execution", "details"],
            [
                [
                    e.id,
                    when(e.at),
                    e.actor or "-",
                    e.source.value,
                    e.action.value,
                    e.job_key or "-",
                    e.execution_id or "-",
                    _details(e),
                ]
                for e in page.items
            ],
        ),
    )
