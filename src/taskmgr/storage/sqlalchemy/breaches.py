"""What breaks each alert rule, read by the SQL backend: one statement per rule (never
one per job), each returning only what breaks its rule, which the shared builders of
:mod:`taskmgr.storage.alerting` turn into breaches.

A job's threshold is its own column, else the service's default (bound as a literal;
for ``late`` and ``no_success`` only when the job has a schedule). The database reads
only what is older than the smallest threshold in use (a plain comparison with an
instant, which the indexes serve) and, per job, only the oldest of it; whether that is
older than the job's own threshold is decided here, in Python, exactly as the memory
backend decides it (SQLite keeps instants as text: its date arithmetic would round).

What held a job back on purpose (:mod:`taskmgr.core.alert_holds`: maintenance windows,
exclusion dates, the end of a pause of its queue or of the service) only ever makes a
breach later, so the statements stay as they are; the windows and the ends of pauses
(the ``resume`` entries of the audit log, few and indexed by their empty ``job_key``)
are read only when a statement found a candidate, and decide in Python. While a pause
of its queue or of the service holds a job, neither ``late`` nor ``no_success`` judges
it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.alert_holds import Releases, late_from, no_success_deadline, releases
from taskmgr.core.alerts import RULE_OPTIONS, AlertDefaults, AlertRule, Breach
from taskmgr.core.audit import AuditAction
from taskmgr.core.enums import SLOT_TRIGGERS, ExecutionStatus, JobState, PauseScope
from taskmgr.core.pauses import Pause
from taskmgr.core.rules import in_effect
from taskmgr.core.windows import MaintenanceWindow
from taskmgr.storage.alerting import (
    RUN_ENDS,
    PauseEnd,
    RunEnd,
    failing_breach,
    late_breach,
    no_success_breach,
    overrunning_breach,
    pause_end,
)
from taskmgr.storage.sqlalchemy.tables import Tables
from taskmgr.storage.sqlalchemy.windows import read_windows

__all__ = ["read_breaches"]

_ACTIVE = JobState.ACTIVE.value
_SCHEDULED_ONLY = (AlertRule.LATE, AlertRule.NO_SUCCESS)
#: The kinds of lateness that are slots of a schedule (a ``defer`` window holds those).
_SLOT_KINDS = frozenset({"slot", "missed"})


def _stored_dates(value: Any) -> tuple[date, ...]:
    """A job's exclusion dates as stored: a JSON list of ISO dates (NULL: none)."""
    return tuple(map(date.fromisoformat, value)) if value else ()


def _trigger_zone(spec: Any) -> str:
    """The time zone a job's slots are dated in: a cron trigger's, else UTC."""
    if isinstance(spec, dict) and spec.get("type") == "cron":
        return str(spec.get("timezone") or "UTC")
    return "UTC"


class _Reader:
    def __init__(
        self,
        conn: Connection,
        tables: Tables,
        *,
        now: datetime,
        defaults: AlertDefaults,
        pauses: Sequence[Pause] = (),
    ) -> None:
        self.conn = conn
        self.tables = tables
        self.jobs, self.executions = tables.jobs, tables.executions
        self.now = now
        self.defaults = defaults
        held = [p for p in pauses if in_effect(p, now)]
        #: A pause of the service holds every job: neither late nor no_success judges.
        self.service_paused = any(p.scope is PauseScope.SERVICE for p in held)
        self.paused_queues = sorted(p.name for p in held if p.scope is PauseScope.QUEUE and p.name)
        # a pause whose ``until`` has come ended then, whether or not a claim removed it
        self.ended: list[PauseEnd] = [
            (p.scope, p.name, p.until) for p in pauses if p.until is not None and p.until <= now
        ]
        self._windows: list[MaintenanceWindow] | None = None
        self._releases: tuple[datetime, Releases] | None = None
        j = self.jobs.c
        # the smallest threshold of each rule in use (None: the rule is off for every job)
        row = conn.execute(sa.select(*(sa.func.min(j[o]) for o in RULE_OPTIONS.values()))).one()
        self.floors: dict[AlertRule, float | None] = {}
        for rule, own in zip(RULE_OPTIONS, row, strict=True):
            found = [value for value in (own, defaults.of(rule)) if value is not None]
            self.floors[rule] = float(min(found)) if found else None

    def threshold(self, rule: AlertRule) -> sa.ColumnElement[Any]:
        j = self.jobs.c
        own = j[RULE_OPTIONS[rule]]
        default = self.defaults.of(rule)
        if default is None:
            return own
        literal = sa.literal(default, own.type)
        if rule in _SCHEDULED_ONLY:
            scheduled = j.trigger["type"].as_string() != "manual"
            return sa.case((own.is_not(None), own), (scheduled, literal), else_=sa.null())
        return sa.func.coalesce(own, literal)

    def old(self, column: sa.ColumnElement[Any], floor: float) -> sa.ColumnElement[bool]:
        """``column`` is at least ``floor`` seconds (the smallest threshold) before now."""
        return column <= self.now - timedelta(seconds=floor)

    def late_enough(self, moment: datetime, threshold: float) -> bool:
        """Whether ``moment`` is ``threshold`` seconds before now or more."""
        return self.now - moment >= timedelta(seconds=threshold)

    def free(self) -> sa.ColumnElement[bool]:
        """The jobs no pause of their queue holds."""
        if not self.paused_queues:
            return sa.true()
        j = self.jobs.c
        return sa.or_(j.queue.is_(None), j.queue.not_in(self.paused_queues))

    def holds(self, low: datetime) -> tuple[list[MaintenanceWindow], Releases]:
        """The stored windows, and the ends of pauses after ``low`` (read once each: the
        ends again only for an earlier ``low``)."""
        if self._windows is None:
            self._windows = read_windows(self.conn, self.tables)
        if self._releases is None or low < self._releases[0]:
            a = self.tables.audit.c
            resumes = sa.select(a.at, a.details).where(
                a.job_key.is_(None), a.action == AuditAction.RESUME.value, a.at > low
            )
            ends = [
                end for at, details in self.conn.execute(resumes) if (end := pause_end(at, details))
            ]
            self._releases = (low, releases([*ends, *self.ended]))
        return self._windows, self._releases[1]

    # -- the rules -------------------------------------------------------------------------

    def late(self) -> Iterator[Breach]:
        floor = self.floors.get(AlertRule.LATE)
        if floor is None or self.service_paused:
            return
        j, e = self.jobs.c, self.executions.c
        limit = self.threshold(AlertRule.LATE)
        judged = sa.and_(j.state == _ACTIVE, limit.is_not(None), self.free())
        joined = self.executions.join(self.jobs, j.id == e.job_id)

        def per_job(due: sa.ColumnElement[Any], *where: sa.ColumnElement[bool]) -> sa.Select[Any]:
            return (
                sa.select(j.job_key, j.queue, sa.func.max(limit), sa.func.min(due))
                .select_from(joined)
                .where(*where, judged, self.old(due, floor))
                .group_by(j.job_key, j.queue)
            )

        statements: list[tuple[str, sa.Select[Any]]] = [
            (
                "slot",
                sa.select(j.job_key, j.queue, limit, j.next_run_at).where(
                    judged, self.old(j.next_run_at, floor)
                ),
            ),
            ("pending", per_job(e.due_at, e.status == ExecutionStatus.PENDING.value)),
            (
                "dispatched",
                per_job(
                    e.due_at,
                    e.status == ExecutionStatus.RUNNING.value,
                    e.started_at.is_(None),
                    e.celery_task_id.is_not(None),
                ),
            ),
            (
                "missed",
                per_job(
                    e.scheduled_for,
                    e.status == ExecutionStatus.MISSED.value,
                    e.trigger.in_(sorted(t.value for t in SLOT_TRIGGERS)),
                    sa.or_(j.last_run_at.is_(None), e.scheduled_for > j.last_run_at),
                ),
            ),
        ]
        candidates: list[tuple[str, str, str | None, float, datetime]] = []
        for kind, statement in statements:
            for key, queue, threshold, due in self.conn.execute(statement):
                if self.late_enough(due, float(threshold)):  # counted from later, if held
                    candidates.append((kind, key, queue, float(threshold), due))
        if not candidates:
            return
        windows, ends = self.holds(min(c[4] for c in candidates))
        found: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
        limits: dict[str, float] = {}
        for kind, key, queue, threshold, due in candidates:
            start = late_from(
                key, due, slot=kind in _SLOT_KINDS, windows=windows, released=ends.of(queue)
            )
            if self.late_enough(start, threshold):
                found[key].append((kind, due, start))
                limits[key] = threshold
        for key in sorted(found):
            breach = late_breach(key, limits[key], found[key])
            if breach is not None:
                yield breach

    def failing(self) -> Iterator[Breach]:
        if self.floors.get(AlertRule.FAILING) is None:
            return
        j, e = self.jobs.c, self.executions.c
        later = self.executions.alias("later")
        limit = self.threshold(AlertRule.FAILING)
        position = (
            sa.func.row_number()
            .over(partition_by=e.job_id, order_by=(e.completed_at.desc(), e.id.desc()))
            .label("position")
        )
        ends = (
            sa.select(
                j.job_key,
                limit.label("threshold"),
                e.id,
                e.status,
                e.completed_at,
                e.error_type,
                e.error_message,
                position,
            )
            .select_from(self.executions.join(self.jobs, j.id == e.job_id))
            .where(
                e.status.in_([status.value for status in RUN_ENDS]),
                j.state == _ACTIVE,
                limit.is_not(None),
                ~sa.exists().where(later.c.chain_id == e.chain_id, later.c.attempt > e.attempt),
            )
            .subquery()
        )
        statement = (
            sa.select(ends)
            .where(ends.c.position <= ends.c.threshold)
            .order_by(ends.c.job_key, ends.c.position)
        )
        runs: dict[str, list[RunEnd]] = defaultdict(list)
        limits: dict[str, int] = {}
        for row in self.conn.execute(statement).mappings():
            key = row["job_key"]
            limits[key] = int(row["threshold"])
            runs[key].append(
                RunEnd(
                    row["id"],
                    ExecutionStatus(row["status"]),
                    row["completed_at"],
                    row["error_type"],
                    row["error_message"],
                )
            )
        for key in sorted(runs):
            breach = failing_breach(key, limits[key], runs[key])
            if breach is not None:
                yield breach

    def overrunning(self) -> Iterator[Breach]:
        floor = self.floors.get(AlertRule.OVERRUNNING)
        if floor is None:
            return
        j, e = self.jobs.c, self.executions.c
        limit = self.threshold(AlertRule.OVERRUNNING)
        started = sa.func.coalesce(e.started_at, e.dispatched_at, e.created_at)
        statement = (
            sa.select(j.job_key, limit, started.label("started"), e.id)
            .select_from(self.executions.join(self.jobs, j.id == e.job_id))
            .where(
                e.status == ExecutionStatus.RUNNING.value,
                limit.is_not(None),
                self.old(started, floor),
            )
        )
        found: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        limits: dict[str, float] = {}
        for key, threshold, start, execution_id in self.conn.execute(statement):
            if self.late_enough(start, float(threshold)):
                found[key].append((start, execution_id))
                limits[key] = float(threshold)
        for key in sorted(found):
            breach = overrunning_breach(key, limits[key], found[key])
            if breach is not None:
                yield breach

    def no_success(self) -> Iterator[Breach]:
        floor = self.floors.get(AlertRule.NO_SUCCESS)
        if floor is None or self.service_paused:
            return
        j, e = self.jobs.c, self.executions.c
        limit = self.threshold(AlertRule.NO_SUCCESS)
        last = (
            sa.select(sa.func.max(e.completed_at))
            .where(e.job_id == j.id, e.status == ExecutionStatus.SUCCESS.value)
            .scalar_subquery()
        )
        inner = (
            sa.select(
                j.job_key,
                j.queue,
                j.trigger,
                j.exclude_dates,
                limit.label("threshold"),
                j.updated_at,
                last.label("last_success"),
            )
            .where(j.state == _ACTIVE, limit.is_not(None), self.free())
            .subquery()
        )
        start = sa.case(
            (inner.c.last_success.is_(None), inner.c.updated_at),
            (inner.c.last_success > inner.c.updated_at, inner.c.last_success),
            else_=inner.c.updated_at,
        )
        statement = sa.select(inner).where(self.old(start, floor)).order_by(inner.c.job_key)
        candidates = []
        for row in self.conn.execute(statement).mappings():
            last_success, updated_at = row["last_success"], row["updated_at"]
            since: datetime = updated_at if last_success is None else max(last_success, updated_at)
            if self.late_enough(since, float(row["threshold"])):  # later, if held
                candidates.append((row, since))
        if not candidates:
            return
        windows, ends = self.holds(min(since for _, since in candidates))
        for row, since in candidates:
            key, threshold = row["job_key"], float(row["threshold"])
            released = ends.of(row["queue"])
            deadline = no_success_deadline(
                key,
                since if released is None else max(since, released),
                threshold,
                windows=windows,
                exclude_dates=_stored_dates(row["exclude_dates"]),
                timezone=_trigger_zone(row["trigger"]),
            )
            if deadline is not None and deadline <= self.now:
                yield no_success_breach(
                    key,
                    threshold,
                    row["last_success"],
                    row["updated_at"],
                    released_at=released,
                    since=deadline,
                )


def read_breaches(
    conn: Connection,
    tables: Tables,
    *,
    now: datetime,
    defaults: AlertDefaults,
    pauses: Sequence[Pause],
) -> list[Breach]:
    """Every breach at ``now``, read in ``conn``'s transaction: one statement per rule
    that is on for some job (plus one to know which are, and, when a rule found a
    candidate, one for the windows and one for the ends of pauses). ``pauses``: every
    stored pause (those in effect at ``now`` hold their jobs; those whose ``until`` has
    come ended then)."""
    reader = _Reader(conn, tables, now=now, defaults=defaults, pauses=pauses)
    return [
        *reader.late(),
        *reader.failing(),
        *reader.overrunning(),
        *reader.no_success(),
    ]
