"""The memory backend's liveness writes: the reaper, and which instance rows may go."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from taskmgr.core.models import ExecutionStatus, InstanceStatus
from taskmgr.storage.base import Claimed, NewExecution
from taskmgr.storage.common import execution_from_new, lost_message
from taskmgr.storage.inputs import validated
from taskmgr.storage.memory import queries
from taskmgr.storage.memory.state import State

__all__ = ["deletable_instances", "reap"]


def reap(
    state: State,
    *,
    heartbeat_before: datetime,
    now: datetime,
    retry: Callable[[Claimed], NewExecution | None] | None,
) -> list[Claimed]:
    """Declare silent running instances dead, mark the running executions of every
    instance that is not running ``lost`` (by execution id) and insert their retries,
    as ``Storage.reap`` says."""
    for instance in list(state.instances.values()):
        if instance.status is InstanceStatus.RUNNING and instance.last_heartbeat < heartbeat_before:
            dead = validated(instance, {"status": InstanceStatus.DEAD})
            state.put(state.instances, instance.id, dead)
    gone = queries.gone_instances(state)
    reaped: list[Claimed] = []
    for execution in sorted(state.executions.values(), key=lambda e: e.id):
        if execution.status is not ExecutionStatus.RUNNING or execution.owner not in gone:
            continue
        lost = validated(
            execution,
            {
                "status": ExecutionStatus.LOST,
                "completed_at": now,
                "error_message": lost_message(execution.owner, gone[execution.owner]),
            },
        )
        state.put_execution(lost)
        job = state.jobs.get(lost.job_id)
        if job is not None:
            reaped.append(Claimed(lost, job))
    for claimed in reaped if retry is not None else []:
        new = retry(claimed)  # type: ignore[misc]
        if new is not None:
            attempt = execution_from_new(new)
            if not state.taken(attempt):
                state.put_execution(attempt)
    return reaped


def deletable_instances(state: State, last_heartbeat_before: datetime) -> list[str]:
    """Ids of instances not running, silent since before the cutoff, and owning no
    running execution."""
    busy = {
        execution.owner
        for execution in state.executions.values()
        if execution.status is ExecutionStatus.RUNNING
    }
    return [
        instance.id
        for instance in state.instances.values()
        if instance.status is not InstanceStatus.RUNNING
        and instance.last_heartbeat < last_heartbeat_before
        and instance.id not in busy
    ]
