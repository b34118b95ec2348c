"""The SQL backend's failure groups: the failed attempts grouped by job, status and
error type in one statement, the database doing the grouping however many attempts
failed.

Two window functions number each attempt within its group (newest first: the latest
attempt, whose id and message the group shows) and within its chain in that group
(the first one of each chain counts the group's runs); the ``GROUP BY`` around them
counts, bounds and picks. The ``WHERE`` (a status and a completion time) reads the
``(status, completed_at)`` index."""

from __future__ import annotations

import sqlalchemy as sa

from taskmgr.core.failures import FailureGroup
from taskmgr.storage.inputs import checked_failure_filter, checked_limit
from taskmgr.storage.records import FailureFilter
from taskmgr.storage.sqlalchemy.database import Database

__all__ = ["FailureOperations"]


class FailureOperations(Database):
    """``failure_groups`` of the storage contract (see
    :class:`~taskmgr.storage.base.Storage`)."""

    def failure_groups(self, filters: FailureFilter, *, limit: int) -> list[FailureGroup]:
        filters = checked_failure_filter(filters)
        checked_limit(limit)
        if not filters.statuses or limit == 0:
            return []
        c = self.tables.executions.c
        group = (c.job_key, c.status, c.error_type)
        attempts = sa.select(
            *group,
            c.id,
            c.error_message,
            c.completed_at,
            sa.func.row_number()
            .over(
                partition_by=group,
                order_by=(c.completed_at.desc(), self._code_point_order(c.id).desc()),
            )
            .label("newest"),
            sa.func.row_number()
            .over(partition_by=(*group, c.chain_id), order_by=c.id)
            .label("in_chain"),
        ).where(
            c.status.in_([s.value for s in filters.statuses]),
            c.completed_at.is_not(None),
        )
        if filters.job_key is not None:
            attempts = attempts.where(c.job_key == filters.job_key)
        if filters.since is not None:
            attempts = attempts.where(c.completed_at >= filters.since)
        if filters.until is not None:
            attempts = attempts.where(c.completed_at <= filters.until)
        a = attempts.subquery("attempts")
        latest = a.c.newest == 1
        last_seen = sa.func.max(a.c.completed_at, type_=c.completed_at.type)
        last_id = sa.func.max(sa.case((latest, a.c.id)), type_=c.id.type)
        query = (
            sa.select(
                a.c.job_key,
                a.c.status,
                a.c.error_type,
                sa.func.count().label("count"),
                sa.func.sum(sa.case((a.c.in_chain == 1, 1), else_=0)).label("runs"),
                sa.func.min(a.c.completed_at, type_=c.completed_at.type).label("first_seen"),
                last_seen.label("last_seen"),
                last_id.label("last_execution_id"),
                sa.func.max(sa.case((latest, a.c.error_message)), type_=c.error_message.type).label(
                    "last_message"
                ),
            )
            .group_by(a.c.job_key, a.c.status, a.c.error_type)
            .order_by(last_seen.desc(), self._code_point_order(last_id).desc())
            .limit(limit)
        )
        with self._tx("failure_groups", write=False) as conn:
            rows = conn.execute(query).mappings().all()
        # a page of groups: validated like any model (the rows are few)
        return [
            FailureGroup(
                **{**row, "count": int(row["count"]), "runs": int(row["runs"])},
            )
            for row in rows
        ]
