"""``taskmgr jobs|executions|instances``: read and steer what is in the database."""

from __future__ import annotations

import json
from datetime import datetime

import click

from taskmgr.cli.common import Target, emit, open_service, pairs, table, target_options, when
from taskmgr.cli.pauses import INSTANT, UNTIL
from taskmgr.core.audit import AuditSource
from taskmgr.core.models import Execution, ExecutionStatus, Job, JobState
from taskmgr.core.pauses import MAX_BACKFILL_RUNS
from taskmgr.core.triggers import Cron, Date, Interval
from taskmgr.service.pausing import DEFAULT_MAX_RUNS
from taskmgr.service.tasks import DEFER_OPTIONS

__all__ = ["executions", "instances", "jobs"]


def _schedule(job: Job) -> str:
    spec = job.trigger
    if isinstance(spec, Cron):
        return f"cron {spec.expression} ({spec.timezone})"
    if isinstance(spec, Interval):
        return f"every {spec.every.total_seconds():g}s"
    if isinstance(spec, Date):
        return f"at {when(spec.at)}"
    return "when deferred"


@click.group()
def jobs() -> None:
    """List, inspect, trigger, pause, resume and backfill jobs."""


@jobs.command("list")
@target_options()
@click.option(
    "--state", type=click.Choice([s.value for s in JobState]), help="Only jobs in this state."
)
def jobs_list(target: Target, state: str | None) -> None:
    """Every job, ordered by key."""
    with open_service(target) as service:
        found = service.list_jobs(state=state)
    emit(
        target,
        found,
        lambda: table(
            ["key", "state", "schedule", "next run", "last run"],
            [
                [j.key, j.state.value, _schedule(j), when(j.next_run_at), when(j.last_run_at)]
                for j in found
            ],
        ),
    )


def _show_job(job: Job) -> None:
    per = f" per {job.concurrency_key}" if job.concurrency_key else ""
    pairs(
        [
            ("key", job.key),
            ("function", job.func),
            ("state", job.state.value),
            ("source", job.source.value),
            ("schedule", _schedule(job)),
            ("next run", when(job.next_run_at)),
            ("last run", when(job.last_run_at)),
            ("overlap", f"{job.overlap_policy.value} (max {job.max_instances}{per})"),
            ("misfire grace", job.misfire_grace_time),
            ("retries", job.max_retries),
            ("timeout", job.timeout),
            ("queue", job.queue),
            ("dispatch", job.dispatch or "default"),
            ("excluded dates", ", ".join(d.isoformat() for d in job.exclude_dates) or None),
            ("alerts", _alerts(job)),
            ("paused by", job.paused_by),
            ("paused since", None if job.paused_at is None else when(job.paused_at)),
            ("paused until", None if job.paused_until is None else when(job.paused_until)),
            ("pause reason", job.paused_reason),
            ("version", job.version),
        ]
    )


def _alerts(job: Job) -> str:
    """The job's own alert thresholds, in words (those it leaves to the service's
    defaults are not shown)."""
    own = [
        ("late after", job.alert_late_after, "s"),
        ("failures", job.alert_failures, " in a row"),
        ("max runtime", job.alert_max_runtime, "s"),
        ("no success within", job.alert_no_success_within, "s"),
    ]
    shown = [f"{name} {value:g}{unit}" for name, value, unit in own if value is not None]
    return ", ".join(shown) or "the service's"


@jobs.command("show")
@target_options()
@click.argument("job_key")
def jobs_show(target: Target, job_key: str) -> None:
    """One job in full."""
    with open_service(target) as service:
        job = service.get_job(job_key)
    emit(target, job, lambda: _show_job(job))


@jobs.command("trigger")
@target_options()
@click.argument("job_key")
@click.option("--force", is_flag=True, help="Run even if paused or busy.")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who ran it.")
def jobs_trigger(target: Target, job_key: str, force: bool, actor: str) -> None:
    """Queue one manual run now (needs --app: only registered functions run).

    A running service (``taskmgr run`` or the host's app) picks it up."""
    with open_service(target, need_app=True) as service:
        execution = service.trigger_job(job_key, actor=actor, force=force, source=AuditSource.CLI)
    emit(target, execution, lambda: click.echo(f"queued execution {execution.id} of {job_key}"))


@jobs.command("defer")
@target_options()
@click.argument("job_key")
@click.option(
    "--kwargs",
    "kwargs_json",
    default="{}",
    show_default=True,
    metavar="JSON",
    help="The run's arguments, a JSON object: --kwargs '{\"user_id\": 42}'.",
)
@click.option("--delay", type=float, default=None, help="Seconds to wait before running.")
@click.option("--idempotency-key", default=None, help="Defer at most one run per key.")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who asked.")
def jobs_defer(
    target: Target,
    job_key: str,
    kwargs_json: str,
    delay: float | None,
    idempotency_key: str | None,
    actor: str,
) -> None:
    """Defer one run of a task (or any job) with arguments (needs --app: the arguments
    are checked against the registered function). A running service picks it up."""
    try:
        kwargs = json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--kwargs") from None
    if not isinstance(kwargs, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--kwargs")
    reserved = sorted(set(kwargs) & DEFER_OPTIONS)
    if reserved:
        raise click.BadParameter(
            f"{', '.join(reserved)}: names of defer's own options", param_hint="--kwargs"
        )
    with open_service(target, need_app=True) as service:
        execution = service.defer(
            job_key, delay=delay, idempotency_key=idempotency_key, actor=actor, **kwargs
        )
    emit(target, execution, lambda: click.echo(f"deferred execution {execution.id} of {job_key}"))


@jobs.command("pause")
@target_options()
@click.argument("job_key")
@click.option("--reason", default=None, help="Why (at most 500 characters).")
@click.option(
    "--until",
    type=UNTIL,
    default=None,
    help="Resume by itself then: an ISO 8601 instant with an offset, or a duration from "
    "now (30m, 2h, 1d). Default: until resumed.",
)
@click.option("--actor", default="cli", show_default=True, help="Recorded as who paused it.")
def jobs_pause(
    target: Target, job_key: str, reason: str | None, until: datetime | None, actor: str
) -> None:
    """Stop firing a job until it is resumed (or until --until)."""
    with open_service(target) as service:
        job = service.pause_job(
            job_key, reason=reason, until=until, actor=actor, source=AuditSource.CLI
        )
    later = "" if job.paused_until is None else f" until {when(job.paused_until)}"
    emit(target, job, lambda: click.echo(f"paused {job.key}{later}"))


@jobs.command("backfill")
@target_options()
@click.argument("job_key")
@click.option("--start", type=INSTANT, required=True, help="First instant (ISO 8601, offset).")
@click.option("--end", type=INSTANT, required=True, help="Last instant, not in the future.")
@click.option(
    "--max-runs",
    type=click.IntRange(1, MAX_BACKFILL_RUNS),
    default=DEFAULT_MAX_RUNS,
    show_default=True,
    help="Refuse a range holding more slots than this.",
)
@click.option("--actor", default="cli", show_default=True, help="Recorded as who asked.")
def jobs_backfill(
    target: Target, job_key: str, start: datetime, end: datetime, max_runs: int, actor: str
) -> None:
    """Create the job's slots between --start and --end as runs (needs --app: only
    registered functions run). A running service starts them, at most max_instances
    at a time; slots that already have a row are not created again."""
    with open_service(target, need_app=True) as service:
        result = service.backfill(
            job_key, start, end, max_runs=max_runs, actor=actor, source=AuditSource.CLI
        )
    emit(
        target,
        result,
        lambda: click.echo(
            f"backfilled {result.created} of {result.slots} slot(s) of {job_key} "
            f"({result.existing} already recorded, {result.scheduled} left to the schedule)"
        ),
    )


@jobs.command("resume")
@target_options()
@click.argument("job_key")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who resumed it.")
def jobs_resume(target: Target, job_key: str, actor: str) -> None:
    """Fire a paused job again, from its next slot (needs --app: its function must be
    registered)."""
    with open_service(target, need_app=True) as service:
        job = service.resume_job(job_key, actor=actor, source=AuditSource.CLI)
    emit(target, job, lambda: click.echo(f"resumed {job.key}: next run {when(job.next_run_at)}"))


@click.group()
def executions() -> None:
    """The execution history."""


@executions.command("list")
@target_options()
@click.option("--job", "job_key", metavar="KEY", help="Only this job's executions.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in ExecutionStatus]),
    help="Only executions in this status (repeatable).",
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
def executions_list(
    target: Target, job_key: str | None, statuses: tuple[str, ...], limit: int
) -> None:
    """Executions, newest first."""
    with open_service(target) as service:
        page = service.list_executions(job_key, status=list(statuses) or None, limit=limit)
    emit(
        target,
        page.items,
        lambda: table(
            ["id", "job", "scheduled for", "attempt", "status", "ms", "error"],
            [
                [
                    e.id,
                    e.job_key,
                    when(e.scheduled_for),
                    e.attempt,
                    e.status.value,
                    "-" if e.duration_ms is None else e.duration_ms,
                    (e.error_message or "")[:60],
                ]
                for e in page.items
            ],
        ),
    )


def _show_execution(e: Execution) -> None:
    pairs(
        [
            ("id", e.id),
            ("job", e.job_key),
            ("status", e.status.value),
            ("trigger", e.trigger.value),
            ("scheduled for", when(e.scheduled_for)),
            ("attempt", e.attempt),
            ("owner", e.owner),
            ("actor", e.actor),
            ("started", when(e.started_at)),
            ("completed", when(e.completed_at)),
            ("duration ms", e.duration_ms),
            ("error", f"{e.error_type}: {e.error_message}" if e.error_type else None),
        ]
    )
    if e.traceback:
        click.echo(e.traceback.rstrip())


@executions.command("cancel")
@target_options()
@click.argument("execution_id")
@click.option("--actor", default="cli", show_default=True, help="Recorded as who cancelled.")
def executions_cancel(target: Target, execution_id: str, actor: str) -> None:
    """Cancel a pending execution (one that has not started)."""
    with open_service(target) as service:
        execution = service.cancel_execution(execution_id, actor=actor, source=AuditSource.CLI)
    emit(target, execution, lambda: click.echo(f"cancelled execution {execution.id}"))


@executions.command("show")
@target_options()
@click.argument("execution_id")
def executions_show(target: Target, execution_id: str) -> None:
    """One execution in full, its traceback included."""
    with open_service(target) as service:
        execution = service.get_execution(execution_id)
    emit(target, execution, lambda: _show_execution(execution))


@click.group()
def instances() -> None:
    """The service instances sharing the database."""


@instances.command("list")
@target_options()
def instances_list(target: Target) -> None:
    """Every known instance and its last heartbeat."""
    with open_service(target) as service:
        found = service.list_instances()
    emit(
        target,
        found,
        lambda: table(
            ["id", "mode", "status", "started", "last heartbeat"],
            [
                [i.id, i.mode, i.status.value, when(i.started_at), when(i.last_heartbeat)]
                for i in found
            ],
        ),
    )
