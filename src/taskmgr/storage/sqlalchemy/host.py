"""Writing inside the host application's own transaction (the outbox pattern).

The host hands taskmgr its SQLAlchemy ``Session`` or ``Connection``; taskmgr's rows
are written on that connection, so they exist if and only if the host commits, and
whatever must happen after they exist (waking the scheduler) happens after the
commit. A connection to another database than taskmgr's is refused, never written.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from taskmgr.exceptions import InvalidInputError
from taskmgr.settings import redact_url

__all__ = ["HostTransaction", "after_commit", "host_connection"]

#: What ``defer(..., session=...)`` accepts on the synchronous API.
HostTransaction = Session | Connection


def _database(url: sa.URL) -> tuple[str, str | None, int | None, str | None]:
    """What names one database, whatever the driver and the credentials."""
    backend = url.get_backend_name()
    database = url.database
    if backend == "sqlite" and database not in (None, "", ":memory:"):
        database = os.path.realpath(database)
    return backend, url.host, url.port, database


def host_connection(transaction: object, engine: Engine) -> Connection:
    """The connection of the host's ``Session`` or ``Connection``, in a transaction,
    if it is on the database of ``engine``.

    :raises InvalidInputError: it is neither, or it is bound to another database.
    """
    if isinstance(transaction, Session):
        connection = transaction.connection()
    elif isinstance(transaction, Connection):
        connection = transaction
    else:
        raise InvalidInputError(
            "must be a SQLAlchemy Session or Connection (on the awaitable API, an "
            f"AsyncSession or AsyncConnection), got {type(transaction).__name__}",
            field="session",
        )
    theirs, ours = make_url(connection.engine.url), make_url(engine.url)
    if _database(theirs) != _database(ours) or (
        ours.get_backend_name() == "sqlite" and ours.database in (None, "", ":memory:")
    ):
        raise InvalidInputError(
            f"is bound to {redact_url(theirs)}, not to taskmgr's "
            f"database {redact_url(ours)}: the run would not be "
            "written in your transaction",
            field="session",
        )
    return connection


def after_commit(transaction: object, callback: Callable[[], None]) -> None:
    """Call ``callback`` once the host's transaction commits (not if it rolls back)."""
    if isinstance(transaction, Session):
        sa.event.listen(transaction, "after_commit", lambda _session: callback(), once=True)
    elif isinstance(transaction, Connection):
        sa.event.listen(transaction, "commit", lambda _conn: callback(), once=True)
