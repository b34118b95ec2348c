"""The SQL backend's instance operations: registration, heartbeats, status, and the
reaper that declares silent instances dead and marks their runs lost."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from taskmgr.core.models import ExecutionStatus, Instance, InstanceStatus
from taskmgr.storage.base import Claimed, NewExecution
from taskmgr.storage.common import lost_message
from taskmgr.storage.inputs import checked_instance, member, utc
from taskmgr.storage.sqlalchemy import migrate
from taskmgr.storage.sqlalchemy.database import Database
from taskmgr.storage.sqlalchemy.rows import execution_from_row, insert_untaken, job_from_row

__all__ = ["InstanceOperations"]

_RUNNING = ExecutionStatus.RUNNING.value


class InstanceOperations(Database):
    """The instance half of the storage contract (see
    :class:`~taskmgr.storage.base.Storage`)."""

    def register_instance(self, instance: Instance) -> None:
        instance = checked_instance(instance)
        instances = self.tables.instances
        with self._tx("register_instance") as conn:
            conn.execute(sa.delete(instances).where(instances.c.id == instance.id))
            conn.execute(sa.insert(instances).values(instance.model_dump()))

    def heartbeat(self, instance_id: str, *, now: datetime) -> bool:
        now = utc(now, "now")
        c = self.tables.instances.c
        with self._tx("heartbeat") as conn:
            result = conn.execute(
                sa.update(self.tables.instances)
                .where(c.id == instance_id, c.status == InstanceStatus.RUNNING.value)
                .values(last_heartbeat=now)
            )
        return bool(result.rowcount == 1)

    def set_instance_status(self, instance_id: str, status: InstanceStatus) -> None:
        status = member(InstanceStatus, status, "status")
        c = self.tables.instances.c
        with self._tx("set_instance_status") as conn:
            conn.execute(
                sa.update(self.tables.instances)
                .where(c.id == instance_id)
                .values(status=status.value)
            )

    def list_instances(self) -> list[Instance]:
        c = self.tables.instances.c
        by_id = self._code_point_order(c.id)
        query = sa.select(self.tables.instances).order_by(c.started_at.desc(), by_id.desc())
        with self._tx("list_instances", write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [Instance.model_validate(dict(row)) for row in rows]

    def reap(
        self,
        *,
        heartbeat_before: datetime,
        now: datetime,
        retry: Callable[[Claimed], NewExecution | None] | None = None,
    ) -> list[Claimed] | None:
        heartbeat_before, now = utc(heartbeat_before, "heartbeat_before"), utc(now, "now")
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
            reaped = [Claimed(x, by_id[x.job_id]) for x in lost if x.job_id in by_id]
            if retry is not None:
                retries = [new for new in map(retry, reaped) if new is not None]
                insert_untaken(conn, executions, retries)
        return reaped

    def delete_instances(self, *, last_heartbeat_before: datetime) -> int:
        last_heartbeat_before = utc(last_heartbeat_before, "last_heartbeat_before")
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
