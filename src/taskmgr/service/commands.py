"""The service's commands: create, change, pause, resume, run now and delete jobs,
configure and run history retention. Each checks its input completely before it
writes, and writes in one storage call, so a refused command leaves nothing behind.
Each names who asks (``actor``) and through which door (``source``): the storage
records that in the audit log in the same transaction as the change. The rules they
apply live in :mod:`taskmgr.core.rules`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.definition import (
    OPTION_NAMES,
    TRIGGER_ARGS,
    build_definition,
    build_trigger,
    check_concurrency_key,
    check_kwargs_signature,
)
from taskmgr.core.models import (
    Execution,
    ExecutionTrigger,
    Job,
    JobSource,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.pauses import check_reason, check_until
from taskmgr.core.rules import (
    anchor,
    first_slot,
    manual_admission,
    option_changes,
    resume_slot,
    shown,
)
from taskmgr.core.triggers import Cron, Manual, TriggerSpec
from taskmgr.exceptions import (
    InvalidInputError,
    JobOrphanedError,
    VersionConflictError,
)
from taskmgr.scheduling.retention import (
    DEFAULT_RETENTION_CRON,
    MAX_DAYS,
    RETENTION_KEY,
    Retention,
    RetentionPolicy,
    delete_in_batches,
)
from taskmgr.scheduling.sync import add_new_job, sync_code_jobs
from taskmgr.service.base import ServiceBase, Source, requested_run, retried_while_changed
from taskmgr.storage.base import Storage

__all__ = ["JobCommands"]

#: Executions deleted per transaction by :meth:`JobCommands.cleanup_history`.
DELETE_BATCH = 1000
#: Tries of a pause whose job changes while it is paused.
_PAUSE_TRIES = 3


class JobCommands(ServiceBase):
    """The commands of :class:`~taskmgr.service.SchedulerService`."""

    def create_job(
        self,
        key: str,
        func: Callable[..., Any] | str,
        *,
        cron: str | None = None,
        interval: timedelta | float | None = None,
        at: datetime | None = None,
        trigger: TriggerSpec | Mapping[str, Any] | None = None,
        timezone: str | None = None,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
        **options: Any,
    ) -> Job:
        """Create a job at run time for a registered function (or a function object,
        which is registered). ``actor`` and ``source`` say who asked and how (the audit
        log; see :meth:`list_audit`). Options are those of ``@scheduled_job``; ``timezone``,
        ``misfire_grace_time`` and ``max_retries`` default to the service's settings.
        A task (no trigger) may take ``concurrency_key``, the name of one of its
        function's arguments: ``max_instances`` (default 1) then bounds its runs per
        value of that argument, and the overlap policy defaults to ``queue``.
        ``dispatch`` names the service's dispatcher that runs it (None: the default).

        :raises JobExistsError: the key is taken (nothing is written).
        :raises UnknownDispatcherError: ``dispatch`` names no dispatcher of the service.
        :raises InvalidInputError: any invalid argument (nothing is written).
        """
        audit = self._audit(AuditAction.CREATE, actor, source)
        name = self.registry.resolve(func)
        conf = self.settings
        spec = build_trigger(
            cron=cron,
            interval=interval,
            at=at,
            trigger=trigger,
            timezone=timezone if timezone is not None else conf.timezone,
        )
        for option in ("misfire_grace_time", "max_retries"):
            if option not in options and getattr(conf, option) is not None:
                options[option] = getattr(conf, option)
        if isinstance(spec, Manual) and options.get("concurrency_key") is not None:
            # bounded per argument value: the runs of a busy value wait (max_instances
            # per value, 1 unless given)
            options.setdefault("overlap_policy", OverlapPolicy.QUEUE)
        if isinstance(spec, Manual) and not {"max_instances", "overlap_policy"} & set(options):
            # a task made at run time starts every due run, as ``@task()`` does
            options["overlap_policy"] = OverlapPolicy.ALLOW
        definition = build_definition(key=key, func=name, trigger=spec, options=options)
        check_kwargs_signature(
            self.registry.get(name), definition.kwargs, partial=isinstance(spec, Manual)
        )
        check_concurrency_key(self.registry.get(name), definition.concurrency_key)
        self._router.check(definition.dispatch)
        self.open()
        job = add_new_job(
            self.storage,
            definition,
            source=JobSource.API,
            fingerprint=None,
            now=self.clock.now(),
            audit=audit,
        )
        self._wake()
        return shown(job)

    def update_job(
        self,
        key: str,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
        **changes: Any,
    ) -> Job:
        """Change a job. Accepts a new trigger (``cron=``/``interval=``/``at=``/
        ``trigger=``, ``timezone=``), ``func=`` and any ``@scheduled_job`` option but
        ``enabled`` (use :meth:`pause_job`/:meth:`resume_job`). A new schedule applies
        from now. With ``expected_version``, refuses if the job changed meanwhile. The
        audit log records the fields that changed, before and after; a call that
        changes nothing records nothing.
        """
        unknown = set(changes) - set(OPTION_NAMES) - set(TRIGGER_ARGS) - {"timezone", "func"}
        unknown |= {"enabled"} & set(changes)
        if unknown:
            raise InvalidInputError(
                f"cannot be changed with update_job: {', '.join(sorted(unknown))}", field="update"
            )
        audit = self._audit(AuditAction.UPDATE, actor, source)
        self.open()
        job = self.storage.get_job(key)
        trigger_args = {k: changes.pop(k) for k in (*TRIGGER_ARGS, "timezone") if k in changes}
        spec = job.trigger
        if set(trigger_args) - {"timezone"}:
            spec = build_trigger(**trigger_args)
        elif "timezone" in trigger_args:
            if not isinstance(job.trigger, Cron):
                raise InvalidInputError("only cron jobs have a time zone", field="timezone")
            spec = Cron(job.trigger.expression, timezone=trigger_args["timezone"])
        name = self.registry.resolve(changes.pop("func")) if "func" in changes else job.func
        options = {field: getattr(job, field) for field in OPTION_NAMES if field != "enabled"}
        options.update(changes)
        definition = build_definition(key=key, func=name, trigger=spec, options=options)
        if name in self.registry:
            check_kwargs_signature(
                self.registry.get(name), definition.kwargs, partial=isinstance(spec, Manual)
            )
            check_concurrency_key(self.registry.get(name), definition.concurrency_key)
        if "dispatch" in changes:
            self._router.check(definition.dispatch)
        now = self.clock.now()
        updates = option_changes(job, definition)
        if spec is not job.trigger:  # a trigger was given: it applies from now
            anchored = anchor(definition.trigger, now)
            if anchored != job.trigger:
                updates["trigger"] = anchored
                updates["next_run_at"] = first_slot(anchored, now)
        if not updates:
            return shown(job)
        updated = self.storage.update_job(
            key, updates, now=now, expected_version=expected_version, audit=audit
        )
        self._wake()
        return shown(updated)

    def delete_job(
        self, key: str, *, actor: str | None = None, source: Source = AuditSource.PYTHON
    ) -> None:
        """Delete a job. Its pending executions are cancelled; its history and its
        audit log are kept."""
        audit = self._audit(AuditAction.DELETE, actor, source)
        self.open()
        self.storage.delete_job(key, now=self.clock.now(), audit=audit)

    def pause_job(
        self,
        key: str,
        *,
        reason: str | None = None,
        until: datetime | None = None,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
    ) -> Job:
        """Stop firing the job: no slot of its schedule runs while it is paused (its
        pending retries and queued runs are cancelled when they come due; a manual
        run, a deferred run or a backfilled slot still can). The job keeps who paused
        it (``actor``), why (``reason``, at most 500 characters), since when and until
        when: at ``until`` (an aware datetime in the future) it resumes by itself, once
        for the whole cluster, recorded in the audit log by ``taskmgr`` (source
        ``schedule``), going on from its first slot at or after ``until``. See
        :meth:`resume_job` for what a resume does. Pausing a paused job replaces its
        reason and until (and who paused it); if neither differs, nothing is recorded.

        :raises PauseUntilPastError: ``until`` is not in the future (nothing is stored).
        :raises JobOrphanedError: the job is orphaned.
        """
        audit = self._audit(AuditAction.PAUSE, actor, source)
        reason = check_reason(reason)
        until = check_until(until, audit.at)
        self.open()
        for attempt in range(_PAUSE_TRIES):
            job = self.storage.get_job(key)
            if job.state is JobState.ORPHANED:
                raise JobOrphanedError(f"job {key!r} is orphaned: its function is not registered")
            if job.state is JobState.PAUSED and (job.paused_reason, job.paused_until) == (
                reason,
                until,
            ):
                return shown(job)
            changes: dict[str, Any] = {
                "state": JobState.PAUSED,
                "paused_by": audit.actor,
                "paused_reason": reason,
                "paused_at": job.paused_at if job.state is JobState.PAUSED else None,
                "paused_until": until,
            }
            changes["paused_at"] = changes["paused_at"] or audit.at  # since when: kept
            try:
                paused = self.storage.update_job(
                    key, changes, now=audit.at, expected_version=job.version, audit=audit
                )
            except VersionConflictError:  # changed meanwhile (resumed at its until?)
                if attempt == _PAUSE_TRIES - 1:
                    raise
                continue
            self._wake()  # the loop wakes up at its until
            return shown(paused)
        raise AssertionError("unreachable")

    def resume_job(
        self, key: str, *, actor: str | None = None, source: Source = AuditSource.PYTHON
    ) -> Job:
        """Fire the job again. A recurring schedule goes on from now: the slots that
        fell while it was paused are not run. A one-shot ``at=`` job whose time passed
        while it was paused keeps its slot, and its misfire policy decides: it runs
        once within ``misfire_grace_time``, else it is recorded as ``missed`` with the
        reason. A one-shot job that already ran does not run again."""
        audit = self._audit(AuditAction.RESUME, actor, source)
        self.open()
        job = self.storage.get_job(key)
        if job.state is JobState.ACTIVE:
            return shown(job)
        if job.func not in self.registry:
            raise JobOrphanedError(
                f"job {key!r} cannot resume: function {job.func!r} is not registered"
            )
        now = self.clock.now()
        updated = self.storage.update_job(
            key,
            {"state": JobState.ACTIVE, "next_run_at": resume_slot(job, now)},
            now=now,
            audit=audit,
        )
        self._wake()
        return shown(updated)

    def trigger_job(
        self,
        job_key: str,
        *,
        kwargs: Mapping[str, Any] | None = None,
        actor: str | None = None,
        force: bool = False,
        source: Source = AuditSource.PYTHON,
    ) -> Execution:
        """Run the job now, once, outside its schedule, as a ``manual`` execution.

        ``kwargs`` are merged over the job's. The overlap policy applies unless
        ``force``: ``skip`` refuses with :class:`JobBusyError` while ``max_instances``
        runs are active, ``queue`` waits for a free run, ``allow`` starts anyway.

        :raises JobPausedError: the job is paused and ``force`` is not set.
        :raises JobOrphanedError: its function is not registered.
        """
        audit = self._audit(AuditAction.TRIGGER, actor, source, {"force": bool(force)})

        def write(fresh: bool) -> Execution:
            # one transaction: the job as last read, written only if still that version
            job = self._known_job(job_key, force=force, fresh=fresh)
            merged = self._arguments(job, kwargs or {})
            now = self.clock.now()
            queued, limited = manual_admission(job.overlap_policy, force=force)
            return self.storage.add_execution(
                requested_run(
                    job,
                    ExecutionTrigger.MANUAL,
                    merged,
                    due=now,
                    now=now,
                    queued=queued,
                    actor=actor,
                    concurrency_value=self._group(job, merged),
                ),
                max_active=job.max_instances if limited else None,
                audit=audit,
                job_version=job.version,
            )

        execution = retried_while_changed(write)
        self._wake()
        return execution

    # -- history retention -----------------------------------------------------------

    def set_retention(
        self,
        days: float | None,
        *,
        failed_days: float | None = None,
        cron: str | None = None,
        every: float | None = None,
        batch_size: int = 500,
        max_seconds: float = 60.0,
        audit_days: float | None = None,
        incident_days: float | None = None,
    ) -> None:
        """Delete finished executions ``days`` after they completed (failed, timed-out
        and lost ones after ``failed_days``, default ``days``), with the built-in job
        ``taskmgr.retention`` (hourly unless ``cron=``/``every=`` seconds). A job with a
        ``retention`` of its own keeps its executions that long instead. The same job
        deletes audit entries older than ``audit_days`` (default: the
        ``audit_retention_days`` setting, 400), and incidents resolved more than
        ``incident_days`` ago (default: the ``incident_retention_days`` setting, 400;
        open incidents are never deleted), and records what each run removed.
        ``None`` turns it off (the job is then orphaned at the next start). Call it
        before ``start()`` on every process that may run jobs (Celery workers too)."""
        if days is None:
            self.registry.unregister_builtin(RETENTION_KEY, RETENTION_KEY)
            return
        policy = RetentionPolicy(
            days=days,
            failed_days=failed_days if failed_days is not None else days,
            batch_size=batch_size,
            cron=cron if cron is not None or every is not None else DEFAULT_RETENTION_CRON,
            every=every,
            max_seconds=max_seconds,
            audit_days=audit_days if audit_days is not None else self.settings.audit_retention_days,
            incident_days=(
                incident_days
                if incident_days is not None
                else self.settings.incident_retention_days
            ),
        )
        job = Retention(self._opened_storage, self.clock, max_seconds=max_seconds)
        self.registry.register_builtin(RETENTION_KEY, job, policy.definition())
        if self.running:
            sync_code_jobs(self.storage, self.registry, self.clock.now(), orphan_missing=False)
            self._wake()

    def cleanup_history(
        self,
        retention_days: float,
        *,
        actor: str | None = None,
        source: Source = AuditSource.PYTHON,
    ) -> int:
        """Delete finished executions completed more than ``retention_days`` ago, in
        small batches, whatever the jobs' own retention. Pending and running executions
        are never deleted. The audit log records how many were deleted (action
        ``retention``)."""
        if (
            isinstance(retention_days, bool)
            or not isinstance(retention_days, int | float)
            or not math.isfinite(retention_days)
            or not 0 <= retention_days <= MAX_DAYS
        ):
            raise InvalidInputError(
                f"must be a number of days in 0-{MAX_DAYS}, got {retention_days!r}",
                field="retention_days",
            )
        audit = self._audit(AuditAction.RETENTION, actor, source)
        self.open()
        cutoff = audit.at - timedelta(days=retention_days)
        deleted, _ = delete_in_batches(
            self.storage, completed_before=cutoff, batch_size=DELETE_BATCH
        )
        details = {"retention_days": retention_days, "deleted": deleted}
        self.storage.record_audit(dataclasses.replace(audit, details=details))
        return deleted

    def _opened_storage(self) -> Storage:
        self.open()
        return self.storage
