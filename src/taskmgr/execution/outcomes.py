"""Write execution outcomes off the job threads, grouped into few transactions.

A job thread only queues its outcome; one writer thread drains the queue in batches,
so outcome writes cost one commit per batch, not per fire. A database error never
drops an outcome: the writer retries with backoff until it is written or the
service stops (an execution whose outcome could not be written is later marked
``lost`` by the reaper, never left ``running``).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from taskmgr.core.models import ExecutionStatus
from taskmgr.exceptions import DataRejectedError
from taskmgr.storage.base import Outcome, Storage

__all__ = ["OutcomeWriter", "refused"]

logger = logging.getLogger("taskmgr.execution")

MAX_BATCH = 500
#: How long the writer waits for more outcomes before writing a batch (seconds).
_LINGER = 0.01
_STOP = object()


class OutcomeWriter:
    def __init__(
        self,
        storage: Storage,
        on_written: Callable[[Sequence[Outcome], Sequence[bool]], None],
        *,
        retry_max_delay: float = 5.0,
    ) -> None:
        self._storage = storage
        self._on_written = on_written
        self._queue: queue.SimpleQueue[Outcome | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._retry_max_delay = retry_max_delay

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="taskmgr-outcomes", daemon=True)
        self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        self._queue.put(outcome)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (retrying for at most ``timeout`` seconds), then stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._stopping.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            batch: list[Outcome] = []
            if first is _STOP:
                stop = True
            else:
                assert isinstance(first, Outcome)
                batch.append(first)
            # Linger a moment for more: outcomes trickling in one by one would each
            # cost a transaction; _LINGER later they share one.
            deadline = time.monotonic() + _LINGER
            while len(batch) < MAX_BATCH:
                remaining = 0.0 if stop else deadline - time.monotonic()
                try:
                    if remaining > 0:
                        item = self._queue.get(timeout=remaining)
                    else:
                        item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    assert isinstance(item, Outcome)
                    batch.append(item)
            if batch:
                self._write(batch)

    def _write(self, batch: list[Outcome]) -> None:
        delay = 0.05
        while True:
            try:
                applied = self._storage.record_outcomes(batch)
                break
            except DataRejectedError as exc:
                # Permanent: the same batch would fail forever and hold every other
                # outcome back. Store the others; the refused one ends as a failure.
                self._write_apart(batch, exc)
                return
            except Exception:
                if self._stopping.is_set():
                    logger.error(
                        "could not write %d execution outcome(s) before shutdown; "
                        "they will be marked lost",
                        len(batch),
                    )
                    return
                logger.exception(
                    "writing %d execution outcome(s) failed; retrying in %.2fs",
                    len(batch),
                    delay,
                )
                self._stopping.wait(delay)
                delay = min(delay * 2, self._retry_max_delay)
        for outcome, ok in zip(batch, applied, strict=True):
            if not ok:
                logger.warning(
                    "outcome %s of execution %s rejected: it is no longer running under "
                    "owner %s (timed out, reaped or cancelled)",
                    outcome.status.value,
                    outcome.execution_id,
                    outcome.owner,
                    extra={"taskmgr_execution_id": outcome.execution_id},
                )
        try:
            self._on_written(batch, applied)
        except Exception:
            logger.exception("outcome listener failed")

    def _write_apart(self, batch: list[Outcome], exc: DataRejectedError) -> None:
        if len(batch) > 1:
            middle = len(batch) // 2
            self._write(batch[:middle])
            self._write(batch[middle:])
            return
        [outcome] = batch
        logger.error(
            "the database refused the outcome %s of execution %s (%s); recording it as "
            "failed without its text",
            outcome.status.value,
            outcome.execution_id,
            exc,
            extra={"taskmgr_execution_id": outcome.execution_id},
        )
        self._write([refused(outcome, exc)])


def refused(outcome: Outcome, exc: DataRejectedError) -> Outcome:
    """What is stored in place of an outcome the database refused: ``failed``, with a
    placeholder message instead of its text and result (a retry it carried is kept)."""
    return dataclasses.replace(
        outcome,
        status=ExecutionStatus.FAILED,
        error_type="taskmgr.DataRejectedError",
        error_message=(
            f"this run ended {outcome.status.value}, but the database refused its outcome "
            f"({type(exc).__name__}); its error text and result were not stored"
        ),
        traceback=None,
        result_summary=None,
    )
