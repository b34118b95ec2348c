"""The service's maintenance windows: add, list and delete them. Like every command,
each checks its input completely before it writes, writes in one storage call with
its audit entry, and names who asks (``actor``) and through which door (``source``).
What a window does to the slots it covers is :mod:`taskmgr.core.windows`."""

from __future__ import annotations

from datetime import datetime, timedelta

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.window_calendar import parse_weekly
from taskmgr.core.windows import MaintenanceWindow, WindowAction, check_new_window
from taskmgr.exceptions import InvalidWindowError
from taskmgr.service.base import ServiceBase, Source

__all__ = ["WindowCommands"]


class WindowCommands(ServiceBase):
    """Maintenance windows of :class:`~taskmgr.service.SchedulerService`."""

    def add_window(
        self,
        name: str,
        *,
        job_key: str | None = None,
        action: WindowAction | str = WindowAction.SKIP,
        start: datetime | None = None,
        end: datetime | None = None,
        cron: str | None = None,
        duration: timedelta | float | None = None,
        weekly: str | None = None,
        timezone: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
    ) -> MaintenanceWindow:
        """Add a maintenance window, cluster-wide, for every job (``job_key`` None) or
        one job. One-off: ``start`` and ``end`` (aware datetimes). Recurring: ``cron``
        (its starts, in the cron dialect of jobs) and ``duration`` (seconds or a
        timedelta of wall-clock time), or ``weekly`` (``"sun 02:00-04:00"``, days as
        cron writes them), read in ``timezone`` (an IANA name, default UTC).

        ``action`` ``skip`` records each slot of a schedule inside it ``skipped`` with
        the reason ``in maintenance window '<name>'``; ``defer`` holds the slots until
        the window closes, when the job's misfire policy decides (run late, coalesced,
        or ``missed``). Manual runs, deferred tasks and retries are not held (a pause
        holds those). The window is recorded in the audit log with who and why.

        :raises InvalidWindowError: both or neither form, ``end`` not after ``start``, a
            duration not positive or longer than the time between two starts.
        :raises WindowInPastError: a one-off window whose ``end`` is not in the future.
        :raises WindowOverlapError: it overlaps a window of the same scope (both
            service-wide, or both on the job) within the next year.
        :raises WindowExistsError: the name is taken.
        :raises WindowJobNotFoundError: ``job_key`` names no job.
        :raises InvalidCronError: / :raises InvalidTimezoneError: a bad expression or
            time zone. Nothing is stored when any is raised.
        """
        audit = self._audit(AuditAction.ADD_WINDOW, actor, source)
        if weekly is not None:
            if cron is not None or duration is not None:
                raise InvalidWindowError(
                    "give weekly= or cron= and duration=, not both", field="weekly"
                )
            cron, duration = parse_weekly(weekly)
        window = MaintenanceWindow(
            name=name,
            job_key=job_key,
            action=action,
            start=start,
            end=end,
            cron=cron,
            duration=duration,
            timezone=timezone,
            reason=reason,
            created_by=audit.actor,
            created_at=audit.at,
        )
        check_new_window(window, audit.at)
        self.open()
        stored = self.storage.add_window(window, now=audit.at, audit=audit)
        self._wake()
        return stored

    def delete_window(
        self, name: str, *, actor: str | None = None, source: Source = AuditSource.PYTHON
    ) -> MaintenanceWindow:
        """Delete the window ``name`` (recorded in the audit log); the slots it would
        have covered run as usual, and the jobs it held are due at once.

        :raises WindowNotFoundError: no window has this name.
        """
        audit = self._audit(AuditAction.DELETE_WINDOW, actor, source)
        self.open()
        removed = self.storage.delete_window(name, audit=audit)
        self._wake()
        return removed

    def list_windows(self, *, open_only: bool = False) -> list[MaintenanceWindow]:
        """The maintenance windows by name; with ``open_only``, those open now."""
        self.open()
        windows = self.storage.list_windows()
        if open_only:
            now = self.clock.now()
            windows = [window for window in windows if window.is_open(now)]
        return windows
