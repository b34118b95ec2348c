"""The memory backend's failure groups: the failed attempts grouped by job, status and
error type, as the SQL backend's statement groups and orders them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from taskmgr.core.failures import FailureGroup
from taskmgr.core.models import Execution, ExecutionStatus
from taskmgr.storage.inputs import checked_failure_filter, checked_limit
from taskmgr.storage.memory.state import State
from taskmgr.storage.records import FailureFilter

__all__ = ["MemoryFailureReads", "failure_groups"]


@dataclass
class _Group:
    count: int = 0
    chains: set[str] = field(default_factory=set)
    first_seen: datetime | None = None
    latest: Execution | None = None


def failure_groups(state: State, filters: FailureFilter, limit: int) -> list[FailureGroup]:
    """``Storage.failure_groups`` over the stored executions (``filters`` checked)."""
    statuses = set(filters.statuses)
    groups: dict[tuple[str, ExecutionStatus, str | None], _Group] = {}
    for e in state.executions.values():
        done = e.completed_at
        if (
            e.status not in statuses
            or done is None
            or (filters.job_key is not None and e.job_key != filters.job_key)
            or (filters.since is not None and done < filters.since)
            or (filters.until is not None and done > filters.until)
        ):
            continue
        group = groups.setdefault((e.job_key, e.status, e.error_type), _Group())
        group.count += 1
        group.chains.add(e.chain_id)
        if group.first_seen is None or done < group.first_seen:
            group.first_seen = done
        latest = group.latest
        if latest is None or (done, e.id) > (latest.completed_at, latest.id):
            group.latest = e
    found = []
    for (job_key, status, error_type), group in groups.items():
        latest = group.latest
        assert latest is not None and latest.completed_at is not None
        assert group.first_seen is not None
        found.append(
            FailureGroup(
                job_key=job_key,
                status=status,
                error_type=error_type,
                count=group.count,
                runs=len(group.chains),
                first_seen=group.first_seen,
                last_seen=latest.completed_at,
                last_execution_id=latest.id,
                last_message=latest.error_message,
            )
        )
    found.sort(key=lambda g: (g.last_seen, g.last_execution_id), reverse=True)
    return found[:limit]


class MemoryFailureReads:
    """The failure groups of :class:`~taskmgr.storage.MemoryStorage` (see
    :class:`~taskmgr.storage.base.Storage` for the contract)."""

    _lock: threading.RLock
    _state: State

    def failure_groups(self, filters: FailureFilter, *, limit: int) -> list[FailureGroup]:
        filters = checked_failure_filter(filters)
        checked_limit(limit)
        with self._lock:
            return failure_groups(self._state, filters, limit)
