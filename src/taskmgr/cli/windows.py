"""``taskmgr windows list|add|delete``: the maintenance windows, during which the slots
of schedules are skipped or held (``docs/alerting-and-maintenance.md``)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from taskmgr.cli.common import Target, emit, open_service, table, target_options, when
from taskmgr.cli.pauses import INSTANT
from taskmgr.core.audit import AuditSource
from taskmgr.core.windows import MaintenanceWindow, WindowAction

__all__ = ["windows"]


def _schedule(window: MaintenanceWindow) -> str:
    if window.cron is None:
        return f"{when(window.start)} - {when(window.end)}"
    return f"{window.cron} for {window.duration:g}s ({window.timezone})"


def _state(window: MaintenanceWindow, now: datetime) -> str:
    span = window.span_at(now)
    if span is not None:
        return f"open until {when(span[1])}"
    upcoming = window.next_span(now)
    return "over" if upcoming is None else f"opens {when(upcoming[0])}"


def _line(window: MaintenanceWindow) -> str:
    scope = "every job" if window.job_key is None else f"job {window.job_key!r}"
    return f"window {window.name!r} ({window.action.value}, {scope}): {_schedule(window)}"


@click.group()
def windows() -> None:
    """Maintenance windows: the slots of schedules inside one are skipped (recorded
    ``skipped``) or held until it closes (``defer``)."""


@windows.command("list")
@target_options()
@click.option("--open", "open_only", is_flag=True, help="Only the windows open now.")
def windows_list(target: Target, open_only: bool) -> None:
    """The maintenance windows by name, and whether each is open now."""
    with open_service(target) as service:
        found = service.list_windows(open_only=open_only)
    now = datetime.now(UTC)
    emit(
        target,
        found,
        lambda: table(
            ["name", "job", "action", "schedule", "now", "reason"],
            [
                [
                    w.name,
                    w.job_key or "(all)",
                    w.action.value,
                    _schedule(w),
                    _state(w, now),
                    (w.reason or "-")[:60],
                ]
                for w in found
            ],
        ),
    )


@windows.command("add")
@target_options()
@click.argument("name")
@click.option("--job", "job_key", default=None, help="The one job it covers (default: all).")
@click.option(
    "--action",
    type=click.Choice([a.value for a in WindowAction]),
    default=WindowAction.SKIP.value,
    show_default=True,
    help="skip: slots inside are recorded skipped; defer: they wait until it closes.",
)
@click.option("--start", type=INSTANT, default=None, help="One-off: when it opens (ISO 8601).")
@click.option("--end", type=INSTANT, default=None, help="One-off: when it closes.")
@click.option("--cron", default=None, help="Recurring: a cron expression for its starts.")
@click.option(
    "--duration", type=float, default=None, help="Recurring, with --cron: seconds it stays open."
)
@click.option("--weekly", default=None, help="Recurring: days and times, e.g. 'sun 02:00-04:00'.")
@click.option("--timezone", default=None, help="Recurring: IANA zone (default UTC).")
@click.option("--reason", default=None, help="Why (at most 500 characters).")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who added it.")
def windows_add(
    target: Target,
    name: str,
    job_key: str | None,
    action: str,
    start: datetime | None,
    end: datetime | None,
    cron: str | None,
    duration: float | None,
    weekly: str | None,
    timezone: str | None,
    reason: str | None,
    actor: str,
) -> None:
    """Add the maintenance window NAME: one-off (--start and --end) or recurring
    (--cron and --duration, or --weekly)."""
    with open_service(target) as service:
        added = service.add_window(
            name,
            job_key=job_key,
            action=action,
            start=start,
            end=end,
            cron=cron,
            duration=duration,
            weekly=weekly,
            timezone=timezone,
            reason=reason,
            actor=actor,
            source=AuditSource.CLI,
        )
    emit(target, added, lambda: click.echo(f"added {_line(added)}"))


@windows.command("delete")
@target_options()
@click.argument("name")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who deleted it.")
def windows_delete(target: Target, name: str, actor: str) -> None:
    """Delete the maintenance window NAME."""
    with open_service(target) as service:
        removed = service.delete_window(name, actor=actor, source=AuditSource.CLI)
    emit(target, removed, lambda: click.echo(f"deleted {_line(removed)}"))
