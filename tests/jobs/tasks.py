"""Tasks that record each start in the witness table (see :mod:`tests.jobs.witness`),
for the multi-process tests of deferred runs."""

from __future__ import annotations

import time

from taskmgr import current_execution, task
from tests.jobs.witness import _record

KEY = "witness.task"
#: A task whose first attempt blocks (no retries): killed while it runs, it ends lost.
BLOCKING_KEY = "witness.blocking"
#: The same with retries: killed while it runs, its next attempt runs at once.
BLOCKING_RETRY_KEY = "witness.blocking_retry"
#: Retries of ``witness.blocking_retry`` (it needs one: its second attempt succeeds).
BLOCKING_RETRIES = 2


@task(KEY)
def witness_task(n: int) -> int:
    """Record this start; ``n`` tells the deferred runs apart."""
    _record()
    return n


def _block_first_attempt(n: int, seconds: float) -> int:
    """Record this start; on the first attempt, then run ``seconds`` (until killed)."""
    _record()
    context = current_execution()
    assert context is not None
    if context.attempt == 1:
        time.sleep(seconds)
    return n


@task(BLOCKING_KEY)
def blocking_task(n: int, seconds: float = 30.0) -> int:
    """Record this start; the first attempt then runs ``seconds``."""
    return _block_first_attempt(n, seconds)


@task(
    BLOCKING_RETRY_KEY,
    max_retries=BLOCKING_RETRIES,
    retry_backoff={"base": 0.2, "jitter": 0.0},
)
def blocking_retry_task(n: int, seconds: float = 30.0) -> int:
    """As ``witness.blocking``, with retries: a later attempt returns at once."""
    return _block_first_attempt(n, seconds)
