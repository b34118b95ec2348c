"""``SQLAlchemyStorage``: the storage contract on SQLite and PostgreSQL.

Every method is one short transaction. Claims take row locks without waiting
(``FOR UPDATE SKIP LOCKED``) on PostgreSQL and the database write lock
(``BEGIN IMMEDIATE``) on SQLite, so what a claim reads stays true until it commits:
the compare-and-set on ``next_run_at`` is decided on the locked row and written with
the same condition, and the unique slot key backs it up. Work is set-based: a claim
costs a fixed number of statements however many slots it carries.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    Instance,
    InstanceStatus,
    Job,
    JobDefinition,
    JobSource,
    JobState,
)
from taskmgr.exceptions import (
    ConflictError,
    ExecutionNotFoundError,
    JobBusyError,
    JobExistsError,
    JobNotFoundError,
    ServiceStateError,
    StorageError,
    TaskmgrError,
    VersionConflictError,
)
from taskmgr.storage.base import (
    Claimed,
    ExecutionFilter,
    HistorySummary,
    NewExecution,
    Outcome,
    Planner,
    Storage,
)
from taskmgr.storage.common import (
    FINAL_STATUSES,
    apply_job_changes,
    execution_from_new,
    job_from_definition,
    lost_message,
)
from taskmgr.storage.sqlalchemy import migrate
from taskmgr.storage.sqlalchemy.claim import OUTCOME_COLUMNS, Statements, statements
from taskmgr.storage.sqlalchemy.engine import create_engine, describe_error
from taskmgr.storage.sqlalchemy.notify import ChangeListener, channel_name, send_notify
from taskmgr.storage.sqlalchemy.rows import (
    execution_from_row,
    execution_values,
    job_from_row,
    job_values,
)
from taskmgr.storage.sqlalchemy.tables import Tables, build_tables

__all__ = ["DEFAULT_URL", "SQLAlchemyStorage"]

DEFAULT_URL = "sqlite:///taskmgr.db"
_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,19}")
_RUNNING = ExecutionStatus.RUNNING.value
_NOBODY = object()
_PENDING = ExecutionStatus.PENDING.value


class SQLAlchemyStorage(Storage):
    """Jobs, executions and instances in SQL tables named ``<table_prefix>jobs`` etc.

    :param url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``);
        default: env ``TASKMGR_DATABASE_URL``, else ``sqlite:///taskmgr.db``.
    :param engine: use this engine instead (it is left open by :meth:`close`). It is
        used as it is; :func:`~taskmgr.storage.sqlalchemy.create_engine` makes one with
        the settings taskmgr relies on (SQLite WAL and busy timeout).
    :param table_prefix: lowercase, starts with a letter, at most 20 characters.
    :param schema: a PostgreSQL schema for the tables (it must exist).
    :param auto_migrate: on :meth:`open`, upgrade a schema that is behind this taskmgr
        instead of raising :class:`~taskmgr.exceptions.SchemaBehindError`. An empty
        database is always created at the newest revision; one migrated by a newer
        taskmgr is always refused (:class:`~taskmgr.exceptions.SchemaAheadError`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        table_prefix: str = "taskmgr_",
        schema: str | None = None,
        auto_migrate: bool = False,
    ) -> None:
        if url is not None and engine is not None:
            raise ValueError("pass either url or engine, not both")
        if _PREFIX.fullmatch(table_prefix) is None:
            raise ValueError(
                f"table_prefix {table_prefix!r} must be 1-20 characters: a lowercase letter, "
                "then lowercase letters, digits or '_'"
            )
        self._url = url or os.environ.get("TASKMGR_DATABASE_URL") or DEFAULT_URL
        self._given_engine = engine
        self._engine: Engine | None = None
        self._prefix = table_prefix
        self._schema = schema
        self.auto_migrate = auto_migrate
        self.tables: Tables = build_tables(table_prefix, schema)
        self._sqlite = False
        self._open_lock = threading.Lock()
        # SQLite has one writer at a time; queueing this process's writers here is
        # cheaper than letting them spin in SQLite's busy handler.
        self._write_lock = threading.Lock()
        # per thread: the next due time read at the end of that thread's last claim
        self._next_due_hints = threading.local()
        self._channel = channel_name(table_prefix, schema)
        self._listener: ChangeListener | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise ServiceStateError("the storage is not open: call open() first")
        return self._engine

    def __repr__(self) -> str:
        return f"SQLAlchemyStorage({self._safe_url()!r})"

    def _safe_url(self) -> str:
        """The URL without its password (or as given, when it does not even parse)."""
        if self._given_engine is not None:
            return self._given_engine.url.render_as_string(hide_password=True)
        try:
            return sa.make_url(self._url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "<unparseable URL>"

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        with self._open_lock:
            if self._engine is not None:
                return
            try:
                engine = self._given_engine or create_engine(self._url)
            except sa.exc.SQLAlchemyError as exc:
                raise StorageError(
                    f"cannot use database URL {self._safe_url()!r}: {describe_error(exc)}"
                ) from exc
            try:
                migrate.prepare(engine, self._prefix, self._schema, auto_migrate=self.auto_migrate)
            except BaseException:
                if self._given_engine is None:
                    engine.dispose()
                raise
            self._sqlite = engine.dialect.name == "sqlite"
            self._engine = engine

    def close(self) -> None:
        with self._open_lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
            engine, self._engine = self._engine, None
            if engine is not None and self._given_engine is None:
                engine.dispose()

    def after_fork(self) -> None:
        # A forked child must not use (or close) the parent's pooled connections, and a
        # lock another thread of the parent held at fork time would never be released.
        self._open_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._listener = None
        if self._engine is not None:
            self._engine.dispose(close=False)

    @contextmanager
    def _tx(self, what: str, *, write: bool = True) -> Iterator[Connection]:
        """One transaction; commits when the block ends without an exception."""
        engine = self.engine
        sqlite = self._sqlite
        try:
            with self._write_lock if sqlite and write else nullcontext(), engine.connect() as conn:
                if sqlite:
                    # Take the write lock up front: a deferred transaction that reads and
                    # then writes can fail with SQLITE_BUSY without waiting.
                    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.commit()
        except TaskmgrError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"{what} failed: {describe_error(exc)}") from exc

    def _lock(self, query: sa.Select[Any], *, skip_locked: bool = False) -> sa.Select[Any]:
        if self._sqlite:
            return query  # BEGIN IMMEDIATE already holds the database's write lock
        return query.with_for_update(skip_locked=skip_locked)

    def _changed(self, conn: Connection) -> None:
        """Tell listening processes (delivered when the transaction commits)."""
        if not self._sqlite:
            send_notify(conn, self._channel)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        if self._sqlite:
            return super().subscribe(callback)  # no cross-process signal: polling
        with self._open_lock:
            if self._listener is None:
                self._listener = ChangeListener(self.engine, self._channel)
            listener = self._listener
        return listener.subscribe(callback)

    def schema_current(self) -> bool:
        return (
            migrate.current_revision(self.engine, self._prefix, self._schema)
            == migrate.head_revision()
        )

    def database_now(self) -> datetime:
        if self._sqlite:
            return super().database_now()  # an embedded database: the host's clock
        with self._tx("database_now", write=False) as conn:
            value = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    # -- jobs ----------------------------------------------------------------

    def add_job(
        self,
        definition: JobDefinition,
        *,
        source: JobSource,
        state: JobState,
        next_run_at: datetime | None,
        fingerprint: str | None,
        now: datetime,
    ) -> Job:
        # Build (and so validate) the model before writing; the id comes from the insert.
        draft = job_from_definition(
            definition,
            job_id=0,
            source=source,
            state=state,
            next_run_at=next_run_at,
            fingerprint=fingerprint,
            now=now,
        )
        jobs = self.tables.jobs
        values = job_values(draft)
        del values["id"]
        with self._tx("add_job") as conn:
            exists = conn.execute(sa.select(jobs.c.id).where(jobs.c.job_key == draft.key))
            if exists.first() is not None:
                raise JobExistsError(draft.key)
            try:
                with conn.begin_nested():
                    inserted = conn.execute(sa.insert(jobs).values(values)).inserted_primary_key
            except sa.exc.IntegrityError as exc:
                # Another process inserted the same key after our check.
                raise JobExistsError(draft.key) from exc
            self._changed(conn)
        assert inserted is not None
        return draft.model_copy(update={"id": int(inserted[0])})

    def get_job(self, key: str) -> Job:
        jobs = self.tables.jobs
        with self._tx("get_job", write=False) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_key == key)).mappings().first()
        if row is None:
            raise JobNotFoundError(key)
        return job_from_row(row)

    def list_jobs(
        self,
        *,
        states: Sequence[JobState] = (),
        source: JobSource | None = None,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        jobs = self.tables.jobs
        query = sa.select(jobs).order_by(jobs.c.job_key)
        if states:
            query = query.where(jobs.c.state.in_([JobState(s).value for s in states]))
        if source is not None:
            query = query.where(jobs.c.source == JobSource(source).value)
        if after_key is not None:
            query = query.where(jobs.c.job_key > after_key)
        if limit is not None:
            query = query.limit(limit)
        with self._tx("list_jobs", write=False) as conn:
            # converted while fetching: never all rows and all models in memory at once
            return [job_from_row(row) for row in conn.execute(query).mappings()]

    def update_job(
        self,
        key: str,
        changes: Mapping[str, Any],
        *,
        now: datetime,
        expected_version: int | None = None,
    ) -> Job:
        jobs = self.tables.jobs
        with self._tx("update_job") as conn:
            row = conn.execute(self._lock(sa.select(jobs).where(jobs.c.job_key == key)))
            current = row.mappings().first()
            if current is None:
                raise JobNotFoundError(key)
            job = job_from_row(current)
            if expected_version is not None and job.version != expected_version:
                raise VersionConflictError(
                    f"job {key!r} is at version {job.version}, not {expected_version}"
                )
            updated = apply_job_changes(job, changes, now=now)
            values = job_values(updated)
            for column in ("id", "job_key", "created_at"):
                del values[column]
            result = conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job.id, jobs.c.version == job.version)
                .values(values)
            )
            if result.rowcount != 1:  # the row lock makes this unreachable; keep the guard
                raise VersionConflictError(f"job {key!r} changed while it was being updated")
            self._changed(conn)
        return updated

    def delete_job(self, key: str, *, now: datetime) -> None:
        jobs, executions = self.tables.jobs, self.tables.executions
        with self._tx("delete_job") as conn:
            job_id = conn.execute(
                self._lock(sa.select(jobs.c.id).where(jobs.c.job_key == key))
            ).scalar()
            if job_id is None:
                raise JobNotFoundError(key)
            conn.execute(sa.delete(jobs).where(jobs.c.id == job_id))
            conn.execute(
                sa.update(executions)
                .where(executions.c.job_id == job_id, executions.c.status == _PENDING)
                .values(status=ExecutionStatus.CANCELLED.value, completed_at=now)
            )
            self._changed(conn)

    # -- scheduling ------------------------------------------------------------

    def claim(self, *, now: datetime, owner: str, limit: int, planner: Planner) -> list[Claimed]:
        from taskmgr.storage.sqlalchemy.claim import ClaimApplier

        sql = self._statements()
        self._hint().__dict__.pop("next_due", None)
        with self._tx("claim") as conn:
            # A shared lock on our own row: the reaper cannot declare us dead between
            # this check and our commit.
            status = conn.execute(sql.instance_status, {"b_owner": owner}).scalar()
            if status is not None and status != InstanceStatus.RUNNING.value:
                return []
            claimed = ClaimApplier(self, conn, now=now, owner=owner).run(limit, planner)
            if len(claimed) < limit:
                # what next_due_at() would read right after this claim, read in its
                # transaction instead of a new one (see take_next_due_hint)
                self._hint().next_due = self._read_next_due(conn)
        return claimed

    def _hint(self) -> threading.local:
        return self._next_due_hints

    def take_next_due_hint(self) -> tuple[bool, datetime | None]:
        hints = self._hint()
        value = getattr(hints, "next_due", _NOBODY)
        if value is _NOBODY:
            return False, None
        del hints.next_due
        return True, value  # type: ignore[return-value]

    def next_due_at(self) -> datetime | None:
        with self._tx("next_due_at", write=False) as conn:
            return self._read_next_due(conn)

    def _read_next_due(self, conn: Connection) -> datetime | None:
        first_job, first_pending = conn.execute(self._statements().next_due).one()
        times = [t for t in (first_job, first_pending) if t is not None]
        return min(times, default=None)

    # -- executions ----------------------------------------------------------------

    def active_counts(self, conn: Connection, job_ids: Sequence[int]) -> dict[int, int]:
        """Executions counted against ``max_instances``, per job id."""
        if not job_ids:
            return {}
        rows = conn.execute(self._statements().active_counts, {"b_ids": list(job_ids)})
        counts = dict.fromkeys(job_ids, 0)
        counts.update({job_id: count for job_id, count in rows})  # noqa: C416
        return counts

    def add_execution(self, new: NewExecution, *, max_active: int | None = None) -> Execution:
        jobs = self.tables.jobs
        execution = execution_from_new(new)
        with self._tx("add_execution") as conn:
            # Locking the job row serialises this check with claims and other manual runs.
            found = conn.execute(self._lock(sa.select(jobs.c.id).where(jobs.c.id == new.job_id)))
            if found.first() is None:
                raise JobNotFoundError(new.job_key)
            if max_active is not None:
                active = self.active_counts(conn, [new.job_id])[new.job_id]
                if active >= max_active:
                    raise JobBusyError(
                        f"job {new.job_key!r} has {active} active run(s) (limit {max_active})"
                    )
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(self.tables.executions), [execution_values(execution)])
            except sa.exc.IntegrityError as exc:
                raise ConflictError(
                    f"an execution of job {new.job_key!r} for {new.scheduled_for.isoformat()} "
                    f"attempt {new.attempt} already exists"
                ) from exc
            self._changed(conn)
        return execution

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        sql = self._statements()
        ids = sorted({outcome.execution_id for outcome in outcomes})
        with self._tx("record_outcomes") as conn:
            # Lock in id order so concurrent writers (reap) cannot deadlock with us.
            rows = conn.execute(sql.outcome_owners, {"b_ids": ids})
            owners: dict[str, str | None] = {row.id: row.owner for row in rows}
            applied: list[bool] = []
            updates: list[dict[str, Any]] = []
            retries: list[NewExecution] = []
            for outcome in outcomes:
                ok = owners.get(outcome.execution_id, _NOBODY) == outcome.owner
                applied.append(ok)
                if not ok:
                    continue
                del owners[outcome.execution_id]  # a second outcome for it is rejected
                updates.append(_outcome_params(outcome))
                if outcome.retry is not None:
                    retries.append(outcome.retry)
            if updates:
                conn.execute(sql.outcome_update, updates)
            if retries:
                self.insert_executions(conn, [execution_from_new(r) for r in retries])
        return applied

    def insert_executions(self, conn: Connection, rows: Sequence[Execution]) -> None:
        """Insert ``rows`` in one statement; if a slot already exists, insert the others
        one by one and leave that one out (the existing row already covers the slot)."""
        table = self.tables.executions
        values = [execution_values(row) for row in rows]
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(table), values)
        except sa.exc.IntegrityError:
            for value in values:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(table), [value])
                except sa.exc.IntegrityError:
                    continue

    def take_over(
        self,
        execution_id: str,
        *,
        from_owner: str,
        to_owner: str,
        attempt: int,
        now: datetime,
        celery_task_id: str | None = None,
    ) -> Claimed | None:
        executions, jobs, i = self.tables.executions, self.tables.jobs, self.tables.instances.c
        c = executions.c
        with self._tx("take_over") as conn:
            # like claim: a shared lock on the taker's row keeps the reaper from
            # declaring it dead between this check and the commit
            mine = sa.select(i.status).where(i.id == to_owner)
            if not self._sqlite:
                mine = mine.with_for_update(read=True)
            status = conn.execute(mine).scalar()
            if status is not None and status != InstanceStatus.RUNNING.value:
                return None
            row = (
                conn.execute(
                    self._lock(
                        sa.select(executions).where(
                            c.id == execution_id,
                            c.status == _RUNNING,
                            c.owner == from_owner,
                            c.attempt == attempt,
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            job_row = (
                conn.execute(sa.select(jobs).where(jobs.c.id == row["job_id"])).mappings().first()
            )
            changes: dict[str, Any]
            if job_row is None:
                changes = {
                    "status": ExecutionStatus.CANCELLED.value,
                    "completed_at": now,
                    "error_message": "the job was deleted before a worker started it",
                }
            else:
                changes = {"owner": to_owner, "started_at": now, "celery_task_id": celery_task_id}
            conn.execute(
                sa.update(executions)
                .where(c.id == execution_id, c.status == _RUNNING, c.owner == from_owner)
                .values(changes)
            )
            if job_row is None:
                return None
            execution = execution_from_row(row).model_copy(
                update={"owner": to_owner, "started_at": now, "celery_task_id": celery_task_id}
            )
            return Claimed(execution, job_from_row(job_row))

    def release(self, execution_id: str, *, owner: str, due_at: datetime) -> bool:
        c = self.tables.executions.c
        with self._tx("release") as conn:
            result = conn.execute(
                sa.update(self.tables.executions)
                .where(c.id == execution_id, c.status == _RUNNING, c.owner == owner)
                .values(
                    status=_PENDING,
                    owner=None,
                    dispatched_at=None,
                    started_at=None,
                    due_at=due_at,
                )
            )
            if result.rowcount == 1:
                self._changed(conn)
        return bool(result.rowcount == 1)

    def get_execution(self, execution_id: str) -> Execution:
        executions = self.tables.executions
        with self._tx("get_execution", write=False) as conn:
            row = (
                conn.execute(sa.select(executions).where(executions.c.id == execution_id))
                .mappings()
                .first()
            )
        if row is None:
            raise ExecutionNotFoundError(execution_id)
        return execution_from_row(row)

    def list_executions(
        self,
        filters: ExecutionFilter,
        *,
        limit: int,
        before: tuple[datetime, str] | None = None,
    ) -> list[Execution]:
        c = self.tables.executions.c
        query = sa.select(self.tables.executions).order_by(c.created_at.desc(), c.id.desc())
        if filters.job_key is not None:
            query = query.where(c.job_key == filters.job_key)
        if filters.statuses:
            query = query.where(c.status.in_([ExecutionStatus(s).value for s in filters.statuses]))
        if filters.since is not None:
            query = query.where(c.scheduled_for >= filters.since)
        if filters.until is not None:
            query = query.where(c.scheduled_for <= filters.until)
        if filters.owner is not None:
            query = query.where(c.owner == filters.owner)
        if before is not None:
            created_at, execution_id = before
            query = query.where(
                sa.or_(
                    c.created_at < created_at,
                    sa.and_(c.created_at == created_at, c.id < execution_id),
                )
            )
        with self._tx("list_executions", write=False) as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [execution_from_row(row) for row in rows]

    def delete_finished_executions(
        self,
        *,
        completed_before: datetime,
        limit: int,
        statuses: Sequence[ExecutionStatus] | None = None,
    ) -> int:
        wanted = [s for s in FINAL_STATUSES if statuses is None or s in statuses]
        if limit <= 0 or not wanted:
            return 0
        executions = self.tables.executions
        c = executions.c
        oldest = (
            sa.select(c.id)
            .where(
                c.status.in_([s.value for s in wanted]),
                c.completed_at < completed_before,
            )
            .order_by(c.completed_at)
            .limit(limit)
        )
        with self._tx("delete_finished_executions") as conn:
            result = conn.execute(sa.delete(executions).where(c.id.in_(oldest.scalar_subquery())))
        return int(result.rowcount)

    def history_summary(self) -> HistorySummary:
        c = self.tables.executions.c
        counts_query = sa.select(c.job_key, c.status, sa.func.count()).group_by(c.job_key, c.status)
        success_query = (
            sa.select(c.job_key, sa.func.max(c.completed_at, type_=c.completed_at.type))
            .where(c.status == ExecutionStatus.SUCCESS.value)
            .group_by(c.job_key)
        )
        with self._tx("history_summary", write=False) as conn:
            counts = conn.execute(counts_query).all()
            successes = conn.execute(success_query).all()
        return HistorySummary(
            counts={(key, ExecutionStatus(status)): int(n) for key, status, n in counts},
            last_success={key: when for key, when in successes if when is not None},
        )

    # -- instances -----------------------------------------------------------------

    def register_instance(self, instance: Instance) -> None:
        instances = self.tables.instances
        with self._tx("register_instance") as conn:
            conn.execute(sa.delete(instances).where(instances.c.id == instance.id))
            conn.execute(sa.insert(instances).values(instance.model_dump()))

    def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        c = self.tables.instances.c
        with self._tx("heartbeat") as conn:
            result = conn.execute(
                sa.update(self.tables.instances)
                .where(c.id == instance_id, c.status == InstanceStatus.RUNNING.value)
                .values(last_heartbeat=now)
            )
        return bool(result.rowcount == 1)

    def set_instance_status(self, instance_id: str, status: InstanceStatus) -> None:
        c = self.tables.instances.c
        with self._tx("set_instance_status") as conn:
            conn.execute(
                sa.update(self.tables.instances)
                .where(c.id == instance_id)
                .values(status=InstanceStatus(status).value)
            )

    def list_instances(self) -> list[Instance]:
        c = self.tables.instances.c
        query = sa.select(self.tables.instances).order_by(c.started_at.desc(), c.id.desc())
        with self._tx("list_instances", write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [Instance.model_validate(dict(row)) for row in rows]

    def reap(self, *, heartbeat_before: datetime, now: datetime) -> list[Claimed] | None:
        instances, executions = self.tables.instances, self.tables.executions
        jobs = self.tables.jobs
        i, e = instances.c, executions.c
        with self._tx("reap") as conn:
            if not self._sqlite:  # SQLite: BEGIN IMMEDIATE already excludes other reapers
                key = migrate.lock_key(self._prefix, self._schema) + 1
                if not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar():
                    return None
            conn.execute(
                sa.update(instances)
                .where(
                    i.status == InstanceStatus.RUNNING.value, i.last_heartbeat < heartbeat_before
                )
                .values(status=InstanceStatus.DEAD.value)
            )
            gone = sa.select(i.id).where(i.status != InstanceStatus.RUNNING.value)
            query = sa.select(executions, i.status.label("owner_status")).join(
                instances, i.id == e.owner
            )
            query = query.where(e.status == _RUNNING, e.owner.in_(gone.scalar_subquery()))
            if not self._sqlite:
                query = query.with_for_update(of=executions)
            rows = conn.execute(query.order_by(e.id)).mappings().all()
            if not rows:
                return []
            lost = [
                execution_from_row(
                    {k: v for k, v in row.items() if k != "owner_status"}
                ).model_copy(
                    update={
                        "status": ExecutionStatus.LOST,
                        "completed_at": now,
                        "error_message": lost_message(row["owner"], row["owner_status"]),
                    }
                )
                for row in rows
            ]
            conn.execute(
                sa.update(executions)
                .where(e.id == sa.bindparam("b_id"), e.status == _RUNNING)
                .values(
                    status=ExecutionStatus.LOST.value,
                    completed_at=now,
                    error_message=sa.bindparam("b_message"),
                ),
                [{"b_id": x.id, "b_message": x.error_message} for x in lost],
            )
            job_rows = conn.execute(
                sa.select(jobs).where(jobs.c.id.in_({x.job_id for x in lost}))
            ).mappings()
            by_id = {job.id: job for job in map(job_from_row, job_rows)}
        return [Claimed(x, by_id[x.job_id]) for x in lost if x.job_id in by_id]

    def delete_instances(self, *, last_heartbeat_before: datetime) -> int:
        instances, e = self.tables.instances, self.tables.executions.c
        i = instances.c
        busy = sa.select(e.owner).where(e.status == _RUNNING, e.owner.is_not(None))
        with self._tx("delete_instances") as conn:
            result = conn.execute(
                sa.delete(instances).where(
                    i.status != InstanceStatus.RUNNING.value,
                    i.last_heartbeat < last_heartbeat_before,
                    i.id.not_in(busy.scalar_subquery()),
                )
            )
        return int(result.rowcount)

    # -- used by the claim applier ------------------------------------------------

    def _statements(self) -> Statements:
        """The hot path's statements, built once for these tables and this dialect."""
        return statements(self.tables, sqlite=self._sqlite)

    @property
    def sqlite(self) -> bool:
        return self._sqlite

    def lock(self, query: sa.Select[Any], *, skip_locked: bool = False) -> sa.Select[Any]:
        return self._lock(query, skip_locked=skip_locked)


_OUTCOME_COLUMNS = OUTCOME_COLUMNS


def _outcome_params(outcome: Outcome) -> dict[str, Any]:
    params = {f"b_{name}": getattr(outcome, name) for name in _OUTCOME_COLUMNS}
    params["b_status"] = ExecutionStatus(outcome.status).value
    params["b_id"] = outcome.execution_id
    params["b_owner"] = outcome.owner
    return params
