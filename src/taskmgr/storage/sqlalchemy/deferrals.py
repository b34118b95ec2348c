"""The SQL backend's deferred runs: many in one transaction (ours or the host's), one
per idempotency key, and on PostgreSQL a single run in one statement.

A deferral takes a shared lock (``FOR KEY SHARE``) on its job: defers of one task go
side by side, while a concurrent ``delete_job`` or change of the job waits for them
(and they for it). With ``job_versions``, the job read under that lock must still be
at the version the runs were prepared from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskmgr.core.models import Execution
from taskmgr.exceptions import JobNotFoundError, StorageError
from taskmgr.storage.base import NewExecution
from taskmgr.storage.common import (
    check_deferrals,
    check_job_versions,
    execution_conflict,
    execution_from_new,
)
from taskmgr.storage.sqlalchemy.database import Database
from taskmgr.storage.sqlalchemy.engine import describe_error
from taskmgr.storage.sqlalchemy.host import after_commit, host_connection
from taskmgr.storage.sqlalchemy.notify import notify_column
from taskmgr.storage.sqlalchemy.rows import execution_from_row, execution_values

__all__ = ["DeferralOperations"]


class DeferralOperations(Database):
    """``defer_executions`` of the storage contract (see
    :class:`~taskmgr.storage.base.Storage`)."""

    def defer_executions(
        self,
        news: Sequence[NewExecution],
        *,
        transaction: object | None = None,
        on_commit: Callable[[], None] | None = None,
        job_versions: Mapping[int, int] | None = None,
    ) -> list[Execution]:
        executions = [execution_from_new(new) for new in news]
        check_deferrals(executions)
        if not executions:
            return []
        if transaction is None:
            stored = self._defer_in_one_statement(executions, job_versions)
            if stored is None:
                with self._tx("defer_executions") as conn:
                    stored = self._defer_on(conn, executions, job_versions)
            if on_commit is not None:
                on_commit()
            return stored
        conn = host_connection(transaction, self.engine)
        try:
            stored = self._defer_on(conn, executions, job_versions)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"defer_executions failed: {describe_error(exc)}") from exc
        if on_commit is not None:
            after_commit(transaction, on_commit)
        return stored

    def _defer_on(
        self,
        conn: Connection,
        executions: list[Execution],
        job_versions: Mapping[int, int] | None,
    ) -> list[Execution]:
        jobs, table = self.tables.jobs, self.tables.executions
        job_ids = sorted({e.job_id for e in executions})
        keyed = [e for e in executions if e.idempotency_key is not None]
        plain = [e for e in executions if e.idempotency_key is None]
        query = sa.select(jobs.c.id, jobs.c.version).where(jobs.c.id.in_(job_ids))
        if not self._sqlite:
            # The notification rides on this read (one round trip less per defer);
            # it is delivered at commit, once however many rows ask for it.
            query = query.add_columns(notify_column(self._channel))
            query = query.with_for_update(read=True, key_share=True)
        found: dict[int, int] = {row[0]: row[1] for row in conn.execute(query)}
        check_job_versions(found.get, job_versions)
        for execution in executions:
            if execution.job_id not in found:
                raise JobNotFoundError(execution.job_key)
        # No savepoint: a failed insert fails the whole call (in the host's transaction
        # too; on SQLite without taskmgr's engine setup, releasing a savepoint could
        # even commit the host's work), and a savepoint costs two round trips.
        try:
            if plain:
                conn.execute(sa.insert(table), [execution_values(e) for e in plain])
            if keyed:
                insert = self._statements().insert_unless_keyed
                conn.execute(insert, [execution_values(e) for e in keyed])
        except sa.exc.IntegrityError as exc:
            raise execution_conflict(executions[0]) from exc
        held: dict[tuple[int, str], Execution] = {}
        if keyed:
            c = table.c
            rows = conn.execute(
                sa.select(table).where(
                    c.job_id.in_(sorted({e.job_id for e in keyed})),
                    c.idempotency_key.in_(sorted({e.idempotency_key or "" for e in keyed})),
                )
            ).mappings()
            for row in rows:
                stored = execution_from_row(row)
                assert stored.idempotency_key is not None
                held[(stored.job_id, stored.idempotency_key)] = stored
        return [
            e if e.idempotency_key is None else held[(e.job_id, e.idempotency_key)]
            for e in executions
        ]

    # -- one run on PostgreSQL: one statement, no transaction block -------------------

    def _defer_in_one_statement(
        self, executions: list[Execution], job_versions: Mapping[int, int] | None
    ) -> list[Execution] | None:
        """The common case, a single run prepared from a known job version, written by
        one autocommitted statement (the job locked, checked and notified in it) instead
        of a transaction block: two round trips instead of five. None when it does not
        apply or inserted nothing (the job changed or is gone, the key is held): the
        transaction then tells which, and answers."""
        if self._sqlite or len(executions) != 1 or job_versions is None:
            return None
        [execution] = executions
        version = job_versions.get(execution.job_id)
        if version is None or len(job_versions) != 1:
            return None
        statement = self._statements().defer_one
        assert statement is not None  # built for PostgreSQL
        params: dict[str, Any] = {
            f"v_{name}": value for name, value in execution_values(execution).items()
        }
        params.update(b_job_id=execution.job_id, b_version=version, b_channel=self._channel)
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                inserted = conn.execute(statement, params).first()
        except sa.exc.IntegrityError as exc:
            raise execution_conflict(execution) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"defer_executions failed: {describe_error(exc)}") from exc
        return None if inserted is None else [execution]
