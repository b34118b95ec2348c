"""A task that records each start in the witness table (see :mod:`tests.jobs.witness`),
for the multi-process tests of deferred runs."""

from __future__ import annotations

from taskmgr import task
from tests.jobs.witness import _record

KEY = "witness.task"


@task(KEY)
def witness_task(n: int) -> int:
    """Record this start; ``n`` tells the deferred runs apart."""
    _record()
    return n
