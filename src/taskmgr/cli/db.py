"""``taskmgr db ...``, ``taskmgr healthcheck`` and ``taskmgr config show``.

The ``db`` commands work from the database URL alone (``--database-url`` or
``TASKMGR_DATABASE_URL``): they run before any application is deployed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click
from sqlalchemy.engine import Engine

from taskmgr.cli.common import (
    Target,
    emit,
    open_engine,
    open_service,
    pairs,
    settings_for,
    table,
    target_options,
)
from taskmgr.settings import TaskmgrSettings
from taskmgr.storage.sqlalchemy import migrate

__all__ = ["INCIDENTS_OPEN", "config", "db", "healthcheck"]

#: The exit code of ``taskmgr healthcheck`` while incidents are open (1: unhealthy).
INCIDENTS_OPEN = 2


def _db_settings(target: Target, table_prefix: str | None, schema: str | None) -> TaskmgrSettings:
    settings = settings_for(target)
    changes: dict[str, object] = {}
    if table_prefix is not None:
        changes["table_prefix"] = table_prefix
    if schema is not None:
        changes["db_schema"] = schema
    if not changes:
        return settings
    return TaskmgrSettings(**{**settings.model_dump(), **changes})


def db_options(function: click.decorators.FC) -> click.decorators.FC:
    function = click.option(
        "--schema", metavar="NAME", help="PostgreSQL schema (env: TASKMGR_DB_SCHEMA)."
    )(function)
    function = click.option(
        "--table-prefix", metavar="PREFIX", help="Table prefix (env: TASKMGR_TABLE_PREFIX)."
    )(function)
    return target_options(app=False)(function)


@click.group()
def db() -> None:
    """The database schema: upgrade, inspect, check, render SQL."""


@db.command("upgrade")
@db_options
@click.option("--to", "to", default="heads", show_default=True, metavar="REV")
def db_upgrade(target: Target, table_prefix: str | None, schema: str | None, to: str) -> None:
    """Migrate the schema to the newest revision (safe from several replicas at once)."""
    _migrate(target, table_prefix, schema, "upgraded", lambda e, p, s: migrate.upgrade(e, p, s, to))


@db.command("downgrade")
@db_options
@click.option(
    "--to",
    "to",
    required=True,
    metavar="REV",
    help="The revision to go back to (see `taskmgr db history`); `base` drops the tables.",
)
def db_downgrade(target: Target, table_prefix: str | None, schema: str | None, to: str) -> None:
    """Take the schema back to an older revision, to run an older taskmgr on it."""
    _migrate(
        target, table_prefix, schema, "downgraded", lambda e, p, s: migrate.downgrade(e, to, p, s)
    )


def _migrate(
    target: Target,
    table_prefix: str | None,
    schema: str | None,
    verb: str,
    step: Callable[[Engine, str, str | None], bool],
) -> None:
    settings = _db_settings(target, table_prefix, schema)
    with open_engine(settings) as engine:
        before = migrate.status(engine, settings.table_prefix, settings.db_schema)
        applied = step(engine, settings.table_prefix, settings.db_schema)
        after = migrate.status(engine, settings.table_prefix, settings.db_schema)
    data = {"from": before.current, "to": after.current, "applied": applied}
    emit(
        target,
        data,
        lambda: click.echo(
            f"{verb} {before.current or 'empty database'} -> {after.current or 'empty database'}"
            if applied
            else f"already at {after.current or 'empty database'}"
        ),
    )


def _status_data(found: migrate.SchemaStatus) -> dict[str, object]:
    return {"current": found.current, "head": found.head, "state": found.state, "ok": found.ok}


@db.command("current")
@db_options
def db_current(target: Target, table_prefix: str | None, schema: str | None) -> None:
    """The database's revision and the code's head."""
    settings = _db_settings(target, table_prefix, schema)
    with open_engine(settings) as engine:
        found = migrate.status(engine, settings.table_prefix, settings.db_schema)
    emit(
        target,
        _status_data(found),
        lambda: pairs([("current", found.current), ("head", found.head), ("state", found.state)]),
    )


@db.command("check")
@db_options
def db_check(target: Target, table_prefix: str | None, schema: str | None) -> None:
    """Exit 0 when the schema is at head, 1 otherwise (for deploy and readiness checks)."""
    settings = _db_settings(target, table_prefix, schema)
    with open_engine(settings) as engine:
        found = migrate.status(engine, settings.table_prefix, settings.db_schema)
    messages = {
        "current": f"schema is at head ({found.head})",
        "empty": f"schema is missing (head is {found.head}): run `taskmgr db upgrade`",
        "behind": f"schema is behind ({found.current}, head is {found.head}): "
        "run `taskmgr db upgrade`",
        "ahead": f"schema is ahead ({found.current} is unknown to this taskmgr, head is "
        f"{found.head}): upgrade taskmgr",
    }
    emit(target, _status_data(found), lambda: click.echo(messages[found.state]))
    if not found.ok:
        sys.exit(1)


@db.command("history")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
def db_history(as_json: bool) -> None:
    """The packaged revisions, oldest first (no database needed)."""
    revisions = migrate.history()
    target = Target(None, None, as_json)
    emit(
        target,
        [vars(r) for r in revisions],
        lambda: table(
            ["revision", "down revision", "description"],
            [
                [r.revision, r.down_revision or "-", r.description.splitlines()[0]]
                for r in revisions
            ],
        ),
    )


@db.command("sql")
@db_options
@click.option("--from", "start", metavar="REV", help="Start here (default: an empty database).")
@click.option("--to", "to", default="heads", show_default=True, metavar="REV")
@click.option(
    "--dialect",
    type=click.Choice(["postgresql", "sqlite"]),
    help="SQL dialect (default: the database URL's). Nothing is connected to.",
)
def db_sql(
    target: Target,
    table_prefix: str | None,
    schema: str | None,
    start: str | None,
    to: str,
    dialect: str | None,
) -> None:
    """Print the upgrade SQL for a DBA to review or run (Alembic's offline mode)."""
    settings = _db_settings(target, table_prefix, schema)
    if dialect is None:
        import sqlalchemy as sa

        try:
            dialect = sa.make_url(settings.url()).get_backend_name()
        except sa.exc.ArgumentError:
            raise click.UsageError("the database URL does not parse: pass --dialect") from None
    sql = migrate.offline_sql(
        dialect, settings.table_prefix, settings.db_schema, start=start, to=to
    )
    emit(target, {"dialect": dialect, "sql": sql}, lambda: click.echo(sql, nl=False))


@click.command()
@target_options()
@click.option(
    "--min-instances",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also require this many live instances (fresh heartbeats).",
)
@click.option(
    "--ignore-incidents",
    is_flag=True,
    help="Exit 0 even while incidents of the alert rules are open.",
)
def healthcheck(target: Target, min_instances: int, ignore_incidents: bool) -> None:
    """Exit 0 when healthy, 1 when not: database reachable, schema at head, work not
    overdue (and enough live instances); 2 when healthy but incidents of the alert rules
    are open (unless --ignore-incidents). For container probes and monitors."""
    with open_service(target) as service:
        health = service.health()
    overdue = health.oldest_overdue_at is not None
    healthy = health.ok and not overdue and health.live_instances >= min_instances
    alerting = health.open_incidents > 0 and not ignore_incidents
    data = {**health.model_dump(mode="json"), "healthy": healthy, "alerting": alerting}
    problems = []
    if health.error:
        problems.append(health.error.splitlines()[0])
    elif health.schema_current is False:
        problems.append("schema is not at head: run `taskmgr db upgrade`")
    if overdue:
        problems.append(f"work is {health.overdue_seconds:.0f}s overdue")
    if health.live_instances < min_instances:
        problems.append(f"{health.live_instances} live instance(s), want {min_instances}")
    incidents = f"{health.open_incidents} open incident(s): see `taskmgr incidents list`"
    emit(
        target,
        data,
        lambda: click.echo(
            "unhealthy: " + "; ".join(problems)
            if not healthy
            else f"alerting: {incidents}"
            if alerting
            else f"healthy: {health.live_instances} live instance(s)"
        ),
    )
    if not healthy:
        sys.exit(1)
    if alerting:
        sys.exit(INCIDENTS_OPEN)


@click.group()
def config() -> None:
    """taskmgr's settings."""


@config.command("show")
@target_options()
def config_show(target: Target) -> None:
    """The settings in effect (environment and options), secrets redacted.

    With --app, what the host's service runs with: its storage, database, dispatcher
    and timings as it was built, arguments and all, over the settings it was given."""
    if target.app:
        with open_service(target) as service:
            data = service.configuration
    else:
        data = {"storage": "sqlalchemy", **settings_for(target).redacted()}
    emit(target, data, lambda: pairs(sorted(data.items())))
