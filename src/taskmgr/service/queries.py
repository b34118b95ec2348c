"""The service's read side: jobs, upcoming fire times, the history, the queues of
pending and running executions, the audit log, the instances of the cluster and a
health summary for probes. Nothing here writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from taskmgr.core.audit import AuditAction, AuditPage
from taskmgr.core.failures import FAILURE_STATUSES, FailureGroup
from taskmgr.core.models import (
    Execution,
    ExecutionPage,
    ExecutionStatus,
    ExecutionTrigger,
    Health,
    Instance,
    Job,
    JobQueue,
    JobState,
)
from taskmgr.core.rules import shown
from taskmgr.core.validation import ensure_aware
from taskmgr.exceptions import InvalidInputError
from taskmgr.service.arguments import (
    check_limit,
    decode_audit_cursor,
    decode_cursor,
    encode_audit_cursor,
    encode_cursor,
)
from taskmgr.service.arguments import status as status_of
from taskmgr.service.base import ServiceBase
from taskmgr.settings import redact_text
from taskmgr.storage.base import AuditFilter, ExecutionFilter, FailureFilter
from taskmgr.storage.inputs import member

__all__ = ["MAX_PREVIEW", "Queries"]

EnumT = TypeVar("EnumT", ExecutionStatus, ExecutionTrigger)

MAX_PREVIEW = 1000
#: Most jobs one ``recent_executions`` call reads.
MAX_RECENT_JOBS = 500


class Queries(ServiceBase):
    """The queries of :class:`~taskmgr.service.SchedulerService`."""

    def get_job(self, key: str) -> Job:
        """The job ``key``. :raises JobNotFoundError: no such job.

        As every job the service returns, a paused or orphaned one has no
        ``next_run_at`` (it fires nothing; see ``core.rules.next_run``)."""
        self.open()
        return shown(self.storage.get_job(key))

    def list_jobs(
        self,
        *,
        state: JobState | str | None = None,
        after: str | None = None,
        limit: int | None = None,
        text: str | None = None,
    ) -> list[Job]:
        """Jobs ordered by key; ``after`` is the last key of the previous page. With
        ``text``, only jobs whose key, description or a display name contains it (ASCII
        letters compared without case), searched by the database."""
        if limit is not None:
            check_limit(limit)
        try:
            states = (JobState(state),) if state is not None else ()
        except ValueError:
            allowed = ", ".join(s.value for s in JobState)
            raise InvalidInputError(
                f"must be one of {allowed}, got {state!r}", field="state"
            ) from None
        self.open()
        found = self.storage.list_jobs(states=states, after_key=after, limit=limit, text=text)
        return [shown(job) for job in found]

    def preview(self, job_key: str, n: int = 5) -> list[datetime]:
        """The job's next ``n`` fire times after now (UTC)."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PREVIEW:
            raise InvalidInputError(f"must be an integer in 1-{MAX_PREVIEW}, got {n!r}", field="n")
        job = self.get_job(job_key)
        return job.trigger.next_fire_times(self.clock.now(), n)

    def list_executions(
        self,
        job_key: str | None = None,
        status: ExecutionStatus | str | Sequence[ExecutionStatus | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        trigger: ExecutionTrigger | str | Sequence[ExecutionTrigger | str] | None = None,
        chain_id: str | None = None,
    ) -> ExecutionPage:
        """Executions newest first. ``status`` and ``trigger`` keep one or any of
        several; ``since``/``until`` bound the scheduled time; ``chain_id`` keeps the
        attempts of one run (its first attempt's id); ``cursor`` is the
        ``next_cursor`` of the previous page."""
        check_limit(limit)
        filters = ExecutionFilter(
            job_key=job_key,
            statuses=_several(status, status_of),
            triggers=_several(trigger, _trigger),
            since=ensure_aware(since, "since") if since is not None else None,
            until=ensure_aware(until, "until") if until is not None else None,
            chain_id=chain_id,
        )
        before = decode_cursor(cursor) if cursor is not None else None
        self.open()
        items = self.storage.list_executions(filters, limit=limit + 1, before=before)
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor(items[-1])
        return ExecutionPage(items=items, next_cursor=next_cursor)

    def recent_executions(
        self, job_keys: Sequence[str], per_job: int = 20
    ) -> dict[str, list[Execution]]:
        """The newest ``per_job`` executions (1-100) of each job of ``job_keys`` (at most
        500; repeats are read once), newest first, by job key; a key with no executions
        (or no job) maps to an empty list. One call for what a dashboard shows of many
        jobs: each job's runs are one indexed read, like ``list_executions(job_key)``."""
        if isinstance(per_job, bool) or not isinstance(per_job, int) or not 1 <= per_job <= 100:
            raise InvalidInputError(
                f"must be an integer in 1-100, got {per_job!r}", field="per_job"
            )
        if isinstance(job_keys, str) or not all(isinstance(key, str) for key in job_keys):
            raise InvalidInputError("must be a sequence of job keys", field="job_keys")
        keys = list(dict.fromkeys(job_keys))
        if len(keys) > MAX_RECENT_JOBS:
            raise InvalidInputError(
                f"at most {MAX_RECENT_JOBS} jobs, got {len(keys)}", field="job_keys"
            )
        self.open()
        return {
            key: self.storage.list_executions(ExecutionFilter(job_key=key), limit=per_job)
            for key in keys
        }

    def failure_groups(
        self,
        job_key: str | None = None,
        status: ExecutionStatus | str | Sequence[ExecutionStatus | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[FailureGroup]:
        """What failed, across jobs: the failed attempts (``status``: one or several
        of failed, timeout, lost; default all three) completed between ``since`` and
        ``until`` (inclusive), of one job or of every job, grouped by job, status and
        error type, the most recently seen group first; at most ``limit`` groups. Each
        group counts its attempts and its runs (an attempt and its retries are one
        run) and shows its first and last time and its latest attempt's message. The
        database groups them (one statement).

        :raises InvalidInputError: a status that is not a failure status, a bad
            ``limit`` (an :class:`InvalidDatetimeError` for a naive or out-of-range
            bound).
        """
        check_limit(limit)
        statuses = _several(status, status_of) or FAILURE_STATUSES
        if job_key is not None and not isinstance(job_key, str):
            raise InvalidInputError("must be a job key", field="job_key")
        filters = FailureFilter(
            job_key=job_key,
            statuses=statuses,
            since=ensure_aware(since, "since") if since is not None else None,
            until=ensure_aware(until, "until") if until is not None else None,
        )
        self.open()
        return self.storage.failure_groups(filters, limit=limit)

    def list_audit(
        self,
        job_key: str | None = None,
        action: AuditAction | str | Sequence[AuditAction | str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AuditPage:
        """The audit log, newest first: every change to a job or to the service's state,
        with who made it, when and through which door. ``job_key`` keeps one job's
        entries (a deleted job's too), ``action`` one or more actions, ``since``/
        ``until`` bound the time of the change (inclusive); ``cursor`` is the
        ``next_cursor`` of the previous page.

        :raises InvalidInputError: an unknown action, a bad limit or cursor (an
            :class:`InvalidDatetimeError` for a naive or out-of-range bound).
        """
        check_limit(limit)
        if action is None:
            actions: tuple[AuditAction, ...] = ()
        elif isinstance(action, str):
            actions = (member(AuditAction, action, "action"),)
        else:
            actions = tuple(member(AuditAction, a, "action") for a in action)
        if job_key is not None and not isinstance(job_key, str):
            raise InvalidInputError("must be a job key", field="job_key")
        filters = AuditFilter(
            job_key=job_key,
            actions=actions,
            since=ensure_aware(since, "since") if since is not None else None,
            until=ensure_aware(until, "until") if until is not None else None,
        )
        before = decode_audit_cursor(cursor) if cursor is not None else None
        self.open()
        items = self.storage.list_audit(filters, limit=limit + 1, before=before)
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_audit_cursor(items[-1].id)
        return AuditPage(items=items, next_cursor=next_cursor)

    def get_execution(self, execution_id: str) -> Execution:
        """One execution by id. :raises ExecutionNotFoundError: no such execution."""
        self.open()
        return self.storage.get_execution(execution_id)

    def job_queues(self) -> list[JobQueue]:
        """Per job with work not yet ended, its pending executions (``due``: those
        whose due time has come, by this service's clock), its running ones and the
        earliest due time of the due ones; ordered by job key. Reads only executions
        that have not ended, in one statement."""
        self.open()
        return self.storage.job_queues(now=self.clock.now())

    def list_instances(self) -> list[Instance]:
        """The instances of the cluster (running, stopped, dead) still on record."""
        self.open()
        return self.storage.list_instances()

    def health(self, *, overdue_after: float | None = None) -> Health:
        """Database reachability, live instances, overdue work, the pauses of queues
        and of the whole service in effect and the open incidents, for probes.

        Work counts as overdue when its due time is more than ``overdue_after``
        seconds past (default: twice the poll interval plus a second). Never raises
        for a database failure: it reports it.
        """
        threshold = overdue_after if overdue_after is not None else 2 * self.poll_interval + 1
        try:
            self.open()
            now = self.clock.now()
            live = sum(
                1
                for instance in self.storage.list_instances()
                if self.liveness.is_live(instance, now)
            )
            due = self.storage.next_due_at()
            schema_current = self.storage.schema_current()
            pauses = self.storage.list_pauses(now=now)
            incidents = len(self.storage.list_incidents(open_only=True, limit=1000))
        except Exception as exc:
            return Health(
                database=False,
                running=self.running,
                live_instances=0,
                error=redact_text(f"{type(exc).__name__}: {exc}"),
            )
        late = (now - due).total_seconds() if due is not None else 0.0
        overdue = late > threshold
        return Health(
            database=True,
            running=self.running,
            live_instances=live,
            schema_current=schema_current,
            oldest_overdue_at=due if overdue else None,
            overdue_seconds=late if overdue else 0.0,
            pauses=pauses,
            open_incidents=incidents,
        )


def _several(
    value: EnumT | str | Sequence[EnumT | str] | None, convert: Callable[[EnumT | str], EnumT]
) -> tuple[EnumT, ...]:
    """One value or several, as members (none: an empty tuple)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (convert(value),)
    return tuple(convert(v) for v in value)


def _trigger(value: ExecutionTrigger | str) -> ExecutionTrigger:
    return member(ExecutionTrigger, value, "trigger")
