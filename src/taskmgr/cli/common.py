"""What the ``taskmgr`` commands share: the target options, the service or engine
they open, and output as human tables or ``--json``."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from taskmgr.service import SchedulerService
from taskmgr.settings import TaskmgrSettings, load_settings

__all__ = [
    "Target",
    "emit",
    "open_engine",
    "open_service",
    "settings_for",
    "table",
    "target_options",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Target:
    """Where a command works: the host's service (``--app``) or just a database."""

    app: str | None
    database_url: str | None
    as_json: bool


def target_options(*, app: bool = True) -> Callable[[F], F]:
    """``--app``, ``--database-url`` and ``--json``, gathered into a ``target``."""

    def decorate(function: F) -> F:
        options = [
            click.option(
                "--database-url",
                envvar="TASKMGR_DATABASE_URL",
                metavar="URL",
                help="SQLAlchemy URL of the database (env: TASKMGR_DATABASE_URL).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts."),
        ]
        if app:
            options.append(
                click.option(
                    "--app",
                    envvar="TASKMGR_APP",
                    metavar="MODULE:SERVICE",
                    help="The host's SchedulerService, e.g. 'myproject.jobs:service' "
                    "(env: TASKMGR_APP). Without it, the database alone is used.",
                )
            )

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            target = Target(
                kwargs.pop("app", None), kwargs.pop("database_url"), kwargs.pop("as_json")
            )
            if target.app and _given_on_command_line("database_url"):
                # The app's service has its own database: never show another one's.
                # An --app from TASKMGR_APP gives way to the --database-url typed here.
                if not _given_on_command_line("app"):
                    target = Target(None, target.database_url, target.as_json)
                else:
                    raise click.UsageError(
                        "--database-url and --app exclude each other: the app's service "
                        "uses its own database"
                    )
            return function(*args, target=target, **kwargs)

        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate


def _given_on_command_line(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source is click.core.ParameterSource.COMMANDLINE


def settings_for(target: Target) -> TaskmgrSettings:
    """The environment's settings, with ``--database-url`` over them."""
    if target.database_url is not None:
        return load_settings(database_url=target.database_url)
    return load_settings()


@contextmanager
def open_service(target: Target, *, need_app: bool = False) -> Iterator[SchedulerService]:
    """The host's service (``--app``) or one on the database alone; never started."""
    if target.app:
        from taskmgr.cli.loader import load_service

        service = load_service(target.app)
    elif need_app:
        raise click.UsageError("this command needs --app MODULE:SERVICE (or TASKMGR_APP)")
    else:
        service = SchedulerService(settings=settings_for(target), background=False)
    try:
        yield service
    finally:
        service.close()


@contextmanager
def open_engine(settings: TaskmgrSettings) -> Iterator[Any]:
    import sqlalchemy as sa

    from taskmgr.exceptions import DatabaseURLError, StorageError
    from taskmgr.settings import redact_url
    from taskmgr.storage.sqlalchemy import create_engine
    from taskmgr.storage.sqlalchemy.engine import describe_error

    try:
        engine = create_engine(settings.url())
    except DatabaseURLError:  # it says which option of which driver
        raise
    except (sa.exc.SQLAlchemyError, ValueError) as exc:
        raise StorageError(
            f"cannot use database URL {redact_url(settings.url())!r}: {describe_error(exc)}"
            if isinstance(exc, sa.exc.SQLAlchemyError)
            else f"cannot use database URL {redact_url(settings.url())!r}"
        ) from exc
    try:
        yield engine
    finally:
        engine.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def emit(target: Target, data: Any, human: Callable[[], None]) -> None:
    """``data`` as JSON with ``--json``, else the human rendering."""
    if target.as_json:
        if isinstance(data, list):
            data = [_plain(item) for item in data]
        click.echo(json.dumps(_plain(data), indent=2, default=str))
    else:
        human()


def when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S%z")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table (or a note that there is nothing to show)."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def pairs(items: Sequence[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in items)
    for name, value in items:
        click.echo(f"{name.ljust(width)}  {'-' if value is None else value}")
