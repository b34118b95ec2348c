"""The live execution table that ``taskmgr demo`` prints: each execution once, when it
has ended, read back through the public history API like any host would."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import click

from taskmgr.core.models import Execution, ExecutionStatus
from taskmgr.exceptions import ExecutionNotFoundError
from taskmgr.service import SchedulerService

__all__ = ["LiveTable", "header"]

#: Executions of earlier runs shown when the demo starts.
HISTORY_SHOWN = 5
_PAGE = 500

# (heading, width); a negative width aligns right. The error column takes the rest.
_COLUMNS = (
    ("TIME", 8),
    ("JOB", 20),
    ("ATTEMPT", -7),
    ("TRIGGER", 8),
    ("STATUS", 9),
    ("DURATION", -8),
    ("ERROR", 0),
)
_ERROR_WIDTH = 70


class LiveTable:
    """Prints each execution once, when it has ended (a final status)."""

    def __init__(self, service: SchedulerService) -> None:
        self.service = service
        self._printed: set[str] = set()
        self._watched: set[str] = set()  # known, not ended yet
        self._counts: dict[str, int] = {}

    def show_history(self, where: str) -> None:
        total = 0
        latest: list[Execution] = []
        cursor = None
        while True:
            page = self.service.list_executions(limit=_PAGE, cursor=cursor)
            latest = latest or page.items[:HISTORY_SHOWN]
            for execution in page.items:
                total += 1
                ended = execution.status.is_final
                (self._printed if ended else self._watched).add(execution.id)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if not total:
            _echo(f"no history yet in {where}: this is the first run")
            return
        _echo(f"history from previous runs: {total} executions in {where}; the last {len(latest)}:")
        _echo(header())
        for execution in reversed(latest):
            _echo(_row(execution))

    def poll(self) -> None:
        ended = [e for e in self._new() if e.status.is_final]
        for execution_id in sorted(self._watched):
            try:
                execution = self.service.get_execution(execution_id)
            except ExecutionNotFoundError:  # deleted by a history cleanup
                self._watched.discard(execution_id)
                continue
            if execution.status.is_final:
                ended.append(execution)
        for execution in ended:
            self._watched.discard(execution.id)
            self._printed.add(execution.id)
            self._counts[execution.status.value] = self._counts.get(execution.status.value, 0) + 1
        ended.sort(key=lambda e: (e.completed_at or e.created_at, e.scheduled_for))
        for line in _lines(ended):
            _echo(line)

    def _new(self) -> list[Execution]:
        """Executions created since the last poll (newest first until a known one)."""
        found: list[Execution] = []
        cursor = None
        while True:
            page = self.service.list_executions(limit=_PAGE, cursor=cursor)
            for execution in page.items:
                if execution.id in self._printed or execution.id in self._watched:
                    return found
                found.append(execution)
                if not execution.status.is_final:
                    self._watched.add(execution.id)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    def summary(self) -> str:
        total = sum(self._counts.values())
        if not total:
            return "no execution ended in this run"
        parts = ", ".join(f"{n} {status}" for status, n in sorted(self._counts.items()))
        return f"{total} executions ended in this run ({parts})"


def _lines(ended: Sequence[Execution]) -> Iterator[str]:
    """One line per execution; the ``missed`` slots of one job in one poll (a catch-up
    after the demo was stopped) share a line so a long outage does not flood the screen."""
    missed: dict[str, list[Execution]] = {}
    for execution in ended:
        if execution.status is ExecutionStatus.MISSED:
            missed.setdefault(execution.job_key, []).append(execution)
    for execution in ended:
        group = missed.get(execution.job_key)
        if execution.status is not ExecutionStatus.MISSED or group is None:
            yield _row(execution)
        elif len(group) == 1 or execution is group[-1]:
            yield _row(execution) if len(group) == 1 else _missed_row(group)


def header() -> str:
    return _format(name for name, _ in _COLUMNS)


def _row(execution: Execution) -> str:
    return _format(
        (
            _clock(execution.completed_at or execution.created_at),
            execution.job_key,
            str(execution.attempt),
            execution.trigger.value,
            execution.status.value,
            _duration(execution.duration_ms),
            _error(execution),
        )
    )


def _missed_row(group: Sequence[Execution]) -> str:
    first, last = group[0], group[-1]
    note = (
        f"{len(group)} slots {_clock(first.scheduled_for)}..{_clock(last.scheduled_for)}; "
        f"last: {last.error_message or 'missed'}"
    )
    return _format(
        (
            _clock(last.completed_at or last.created_at),
            last.job_key,
            "-",
            last.trigger.value,
            last.status.value,
            "",
            note,
        )
    )


def _format(cells: Iterator[str] | Sequence[str]) -> str:
    out = []
    for (_, width), cell in zip(_COLUMNS, cells, strict=True):
        if width == 0:
            out.append(_fit(cell, _ERROR_WIDTH))
        elif width < 0:
            out.append(_fit(cell, -width).rjust(-width))
        else:
            out.append(_fit(cell, width).ljust(width))
    return "  ".join(out).rstrip()


def _fit(text: str, width: int) -> str:
    text = " ".join(text.split())  # tracebacks and messages may hold newlines
    return text if len(text) <= width else text[: width - 1] + "…"


def _clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def _duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _error(execution: Execution) -> str:
    if execution.error_type is None:
        return execution.error_message or ""
    name = execution.error_type.rsplit(".", 1)[-1]
    return f"{name}: {execution.error_message}" if execution.error_message else name


def _echo(text: str) -> None:
    click.echo(text)  # flushes, so the table shows up live under a pipe too
