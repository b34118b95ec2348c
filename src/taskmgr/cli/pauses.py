"""``taskmgr pause|resume|pauses|queues``: pause the whole service or a queue (with who,
why and until when), resume it, and list everything paused. The instants the commands
take (``--until``, and ``jobs backfill``'s ``--start``/``--end``) are parsed here."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from taskmgr.cli.common import Target, emit, open_service, table, target_options, when
from taskmgr.core.audit import AuditSource
from taskmgr.core.pauses import Pause

__all__ = ["INSTANT", "UNTIL", "pause", "pauses", "queues", "resume"]

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhd])", re.ASCII)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Instant(click.ParamType):  # type: ignore[type-arg]
    """An aware ISO 8601 instant (``2026-01-02T09:00:00+01:00``, ``...Z``); with
    ``relative``, also a duration from now (``90s``, ``30m``, ``2h``, ``1d``)."""

    name = "instant"

    def __init__(self, *, relative: bool = False) -> None:
        self.relative = relative

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        found = _RELATIVE.fullmatch(text) if self.relative else None
        if found is not None:
            seconds = float(found.group(1)) * _UNITS[found.group(2)]
            return datetime.now(UTC) + timedelta(seconds=seconds)
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            also = " or a duration from now (30m, 2h, 1d)" if self.relative else ""
            self.fail(
                f"{text!r} is not an ISO 8601 instant with an offset "
                f"(e.g. 2026-01-02T09:00:00Z){also}",
                param,
                ctx,
            )
        return moment


#: ``--start``/``--end``: an aware instant.
INSTANT = _Instant()
#: ``--until``: an aware instant, or a duration from now.
UNTIL = _Instant(relative=True)


def _reason(function: Any) -> Any:
    return click.option("--reason", default=None, help="Why (at most 500 characters).")(function)


def _until(function: Any) -> Any:
    return click.option(
        "--until",
        type=UNTIL,
        default=None,
        help="Resume by itself then: an ISO 8601 instant with an offset, or a duration "
        "from now (30m, 2h, 1d). Default: until resumed.",
    )(function)


def _show(pause: Pause) -> str:
    return pause.describe()


@click.command()
@target_options()
@_reason
@_until
@click.option("--actor", default="cli", show_default=True, help="Recorded as who paused it.")
def pause(target: Target, reason: str | None, until: datetime | None, actor: str) -> None:
    """Pause the whole service, cluster-wide: nothing starts until it is resumed (or
    until --until). Tasks can still be deferred: they wait."""
    with open_service(target) as service:
        paused = service.pause_service(
            reason=reason, until=until, actor=actor, source=AuditSource.CLI
        )
    emit(target, paused, lambda: click.echo(_show(paused)))


@click.command()
@target_options()
@click.option("--actor", default="cli", show_default=True, help="Recorded as who resumed it.")
def resume(target: Target, actor: str) -> None:
    """End the pause of the whole service."""
    with open_service(target) as service:
        ended = service.resume_service(actor=actor, source=AuditSource.CLI)
    emit(
        target,
        ended,
        lambda: click.echo("the service was not paused" if ended is None else "resumed"),
    )


@click.group()
def queues() -> None:
    """Pause and resume the jobs of a queue (a job's ``queue`` option)."""


@queues.command("pause")
@target_options()
@click.argument("queue")
@_reason
@_until
@click.option("--actor", default="cli", show_default=True, help="Recorded as who paused it.")
def queues_pause(
    target: Target, queue: str, reason: str | None, until: datetime | None, actor: str
) -> None:
    """Pause every job of QUEUE (those created later too) until resumed or --until."""
    with open_service(target) as service:
        paused = service.pause_queue(
            queue, reason=reason, until=until, actor=actor, source=AuditSource.CLI
        )
    emit(target, paused, lambda: click.echo(_show(paused)))


@queues.command("resume")
@target_options()
@click.argument("queue")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who resumed it.")
def queues_resume(target: Target, queue: str, actor: str) -> None:
    """End the pause of QUEUE."""
    with open_service(target) as service:
        ended = service.resume_queue(queue, actor=actor, source=AuditSource.CLI)
    emit(
        target,
        ended,
        lambda: click.echo(
            f"queue {queue!r} was not paused" if ended is None else f"resumed queue {queue!r}"
        ),
    )


@click.command()
@target_options()
def pauses(target: Target) -> None:
    """Everything paused: the service, queues, jobs, with who, why and until when."""
    with open_service(target) as service:
        found = service.list_pauses()
    emit(
        target,
        found,
        lambda: table(
            ["scope", "name", "by", "since", "until", "reason"],
            [
                [
                    p.scope.value,
                    p.name or "-",
                    p.paused_by or "-",
                    when(p.paused_at),
                    when(p.until),
                    (p.reason or "-")[:60],
                ]
                for p in found
            ],
        ),
    )
