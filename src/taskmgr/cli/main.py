"""The ``taskmgr`` command (click).

Every command reports a :class:`~taskmgr.exceptions.TaskmgrError` as one line on
stderr and exits 1; usage errors exit 2 (click's convention). The operator commands
(``jobs``, ``executions``, ``instances``, ``audit``, ``db``, ``healthcheck``,
``config``) live in ``cli/jobs.py``, ``cli/audit.py`` and ``cli/db.py``;
``docs/cli.md`` describes them all. ``taskmgr demo`` runs the jobs of
:mod:`taskmgr.cli.demo` in an embedded service and prints each execution as it ends,
reading them back through the public history API like any host would.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click
from pydantic import ValidationError

from taskmgr.cli.table import LiveTable, header
from taskmgr.exceptions import TaskmgrError
from taskmgr.service import SchedulerService
from taskmgr.version import __version__

__all__ = ["main"]

DEMO_DATABASE_URL = "sqlite:///taskmgr-demo.db"
#: How often the demo reads the history for executions that ended.
POLL_INTERVAL = 0.5


class _Group(click.Group):
    """A group that turns taskmgr errors into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TaskmgrError as exc:
            # one line: driver messages chained into the error may span several
            lines = str(exc).strip().splitlines()
            raise click.ClickException(lines[0] if lines else type(exc).__name__) from exc
        except ValidationError as exc:  # a TASKMGR_* variable that does not validate
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise click.ClickException(f"setting {where}: {error['msg']}") from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="taskmgr")
def main() -> None:
    """taskmgr: durable scheduled jobs, fired once per slot across many processes."""
    from taskmgr.cli.loader import make_cwd_importable

    make_cwd_importable()  # the host's modules: --app, and a celery_app setting


@main.command()
@click.option(
    "--database-url",
    envvar="TASKMGR_DATABASE_URL",
    default=DEMO_DATABASE_URL,
    show_default=True,
    metavar="URL",
    help="SQLAlchemy URL of the demo's database (env: TASKMGR_DATABASE_URL). "
    "Give the demo a database of its own: jobs it does not declare are marked orphaned.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop after SECONDS (default: run until Ctrl-C or SIGTERM).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    envvar="TASKMGR_DEMO_PORT",
    help="Serve the dashboard and the JSON API on 127.0.0.1:PORT (env: TASKMGR_DEMO_PORT).",
)
@click.option("--no-dashboard", is_flag=True, help="Do not serve the dashboard.")
def demo(database_url: str, duration: float | None, port: int, no_dashboard: bool) -> None:
    """Run a few example jobs and print every execution as it ends.

    The history is kept in the database: run the demo again and it shows what the
    previous runs did before it continues. With the ``fastapi`` extra installed, the
    dashboard is served on 127.0.0.1 while the demo runs.
    """
    from taskmgr.cli import demo as _demo

    service = SchedulerService(database_url)
    server = None
    try:
        service.register(_demo)
        table = LiveTable(service)
        with _stop_signals() as stop:
            table.show_history(_display_url(database_url))
            service.start()
            if not no_dashboard:
                server = _serve_dashboard(service, port)
            until = "" if duration is None else f" for {duration:g}s"
            _echo(
                f"\nrunning {len(service.registry.definitions())} demo jobs{until}; "
                "press Ctrl-C to stop\n"
            )
            _echo(header())
            deadline = None if duration is None else time.monotonic() + duration
            while not stop:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    stop.append("duration reached")
                    break
                time.sleep(POLL_INTERVAL if left is None else min(POLL_INTERVAL, left))
                table.poll()
            if server is not None:
                server.stop()
                server = None
            # shutdown waits for running executions and records them; print them too
            service.shutdown(wait=True)
            table.poll()
        _echo(f"\nstopped ({stop[0]}): {table.summary()}")
        _echo(f"the history is kept in {_display_url(database_url)}: run the demo again to see it")
    finally:
        if server is not None:
            server.stop()
        service.close()


def _serve_dashboard(service: SchedulerService, port: int) -> Any:
    """The dashboard on 127.0.0.1 (the demo's API is open, so never another interface),
    or a note saying why not; the demo runs either way."""
    try:
        from taskmgr.fastapi import BackgroundServer
    except ImportError:
        _echo("dashboard: not served (pip install 'taskmgr[fastapi]' to see it)")
        return None
    try:
        # A local demo: anyone who can reach 127.0.0.1 may look and act.
        server = BackgroundServer(service, "127.0.0.1", port, public=True, writes="readers").start()
    except OSError as exc:
        _echo(f"dashboard: not served ({exc}; choose another with --port)")
        return None
    _echo(f"dashboard: {server.url}")
    return server


@main.command()
@click.option(
    "--app",
    "app",
    envvar="TASKMGR_APP",
    required=True,
    metavar="MODULE:SERVICE",
    help="Where the host's SchedulerService is, e.g. 'myproject.jobs:service' "
    "(env: TASKMGR_APP). A function returning one works too.",
)
def run(app: str) -> None:
    """Run a service in the foreground, as a process of its own.

    For hosts that do not embed the service in their web processes. It fires the
    jobs the service registers until SIGTERM or Ctrl-C, then shuts down cleanly:
    running executions finish and are recorded first.
    """
    from taskmgr.cli.loader import load_service

    service = load_service(app)
    service.mode = "standalone"
    with _stop_signals() as stop:
        service.start()
        try:
            _echo(
                f"taskmgr instance {service.instance_id} running {len(service.registry)} "
                "registered function(s); press Ctrl-C to stop"
            )
            while not stop:
                time.sleep(0.2)  # signal handlers only record; the main thread acts
            _echo(f"stopping ({stop[0]}): waiting for running executions")
        finally:
            service.shutdown(wait=True)
    _echo("stopped")


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "--app",
    "app",
    envvar="TASKMGR_APP",
    required=True,
    metavar="MODULE:SERVICE",
    help="Where the host's SchedulerService is, built with "
    "dispatcher=CeleryDispatcher(celery_app) (env: TASKMGR_APP).",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(app: str, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker for the service's Celery app.

    A thin wrapper around ``celery -A <module> worker``: anything after the options is
    handed to Celery as it is (e.g. ``taskmgr worker --app proj.jobs:service
    --concurrency 4 --queues reports``). Without ``--queues``, the worker consumes the
    dispatcher's queue (or the app's default queue).
    """
    from taskmgr.cli.loader import load_service

    service = load_service(app)
    # the default dispatcher, else the first Celery one a job can choose
    celery = [
        d
        for d in (service.dispatcher, *service.dispatchers.values())
        if getattr(d, "app", None) is not None and getattr(d, "task", None) is not None
    ]
    if not celery:
        raise click.ClickException(
            f"{app!r} does not dispatch to Celery: build it with "
            "SchedulerService(..., dispatcher=CeleryDispatcher(celery_app)) or "
            "dispatchers={'celery': CeleryDispatcher(celery_app)}"
        )
    dispatcher = celery[0]
    celery_app = dispatcher.app  # type: ignore[attr-defined]
    argv = ["worker", *celery_args]
    queue = getattr(dispatcher, "queue", None)
    if queue is not None and not any(
        arg in ("-Q", "--queues") or arg.startswith("--queues=") for arg in celery_args
    ):
        argv += ["--queues", queue]
    celery_app.worker_main(argv=argv)


def _add_operator_commands() -> None:
    from taskmgr.cli.audit import audit
    from taskmgr.cli.db import config, db, healthcheck
    from taskmgr.cli.incidents import incidents
    from taskmgr.cli.jobs import executions, instances, jobs
    from taskmgr.cli.pauses import pause, pauses, queues, resume
    from taskmgr.cli.windows import windows

    for command in (jobs, executions, instances, audit, incidents, db, healthcheck, config):
        main.add_command(command)
    for command in (queues, pause, resume, pauses, windows):
        main.add_command(command)


_add_operator_commands()


def _display_url(url: str) -> str:
    from taskmgr.settings import redact_url

    shown = redact_url(url)
    return "the database" if shown == "<unparseable URL>" else shown


def _echo(text: str) -> None:
    click.echo(text)  # flushes, so the table shows up live under a pipe too


@contextmanager
def _stop_signals() -> Iterator[list[str]]:
    """SIGINT and SIGTERM ask the demo to stop; the list receives the reason."""
    stop: list[str] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        # only record it: the main loop sees it within one poll and shuts down cleanly
        if not stop:
            stop.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
