"""The worker side: taskmgr's task on the host's Celery app, and what a worker process
needs around it (its ``instances`` row, heartbeats, fenced writes).

Ownership: the scheduler claims an execution (``running`` under its instance id),
records on it the id of the Celery task it is about to publish (the message's nonce)
and publishes it. The worker node (the ``celery worker`` main process) registers an
instance of mode ``worker`` and heartbeats like a scheduler does; a task takes the
execution over from the scheduler in one compare-and-set (``Storage.take_over``: only
an execution not started yet, still owned by the scheduler named in the message, and
only for a message whose task id is the one recorded) and records its outcome fenced
by the worker's instance id. Hence:

* a redelivered or duplicated message for an execution that started (it runs, or
  ended), and a forged message (another task id, or naming a worker as the owner),
  change nothing and are acknowledged: no execution starts twice;
* a worker child killed mid-run (or killed at its hard time limit) is noticed by the
  worker's main process, which records ``lost`` (or ``timeout``) with the job's retry
  rules;
* a whole worker that dies stops heartbeating, and the reaper marks its executions
  ``lost`` like a dead scheduler's (``docs/guarantees.md``, G3).

Nothing named in a message is ever imported: the message holds an execution id, and
the function comes from the service's registry.

Around a run, a worker also: runs ``async def`` jobs on one event loop per process
(:mod:`taskmgr.celery.loop`); ends the message's Celery task as the execution ended
(:mod:`taskmgr.celery.states`); parents the execution's span on the context the message
carries (or the run stored); and puts the execution on the log records logged while it
runs (:class:`taskmgr.core.context.ExecutionLogFilter`, added to Celery's handlers).
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from celery import signals
from taskmgr.celery.commits import WorkerWrites
from taskmgr.celery.loop import WorkerLoop
from taskmgr.celery.request import JSON, RUNTIME, TASK_NAME
from taskmgr.celery.request import parse_fence as _parse
from taskmgr.celery.states import ExecutionFailedError, task_result
from taskmgr.core import tracing as _tracing
from taskmgr.core.context import ExecutionLogFilter
from taskmgr.dispatch.base import Runtime
from taskmgr.exceptions import (
    DataRejectedError,
    ExecutionNotFoundError,
    ServiceStateError,
    TaskmgrError,
)
from taskmgr.execution.outcomes import refused
from taskmgr.execution.run import ExecutionRun
from taskmgr.scheduling.runtime import WORKER_MODE, InstanceRuntime
from taskmgr.storage.base import Outcome
from taskmgr.storage.task_handover import TakeOver

__all__ = ["JSON", "TASK_NAME", "WorkerRuntime", "install"]

logger = logging.getLogger("taskmgr.celery")

#: The ``accept_content`` entries that decode with pickle.
_PICKLE = frozenset({"pickle", "application/x-python-serialize"})
_RUNTIME = RUNTIME


def install(celery_app: Any, runtime: Runtime, *, allow_pickle_app: bool = False) -> Any:
    """Register taskmgr's task on ``celery_app`` for a service's ``runtime`` and
    return it.

    ``SchedulerService(dispatcher=CeleryDispatcher(app))`` calls this for you. The task
    is registered on this app only (never a global ``shared_task``), and its options
    are set on the task, not on the app: JSON only, ``acks_late``,
    ``reject_on_worker_lost``, acknowledged when it fails or times out and never
    retried by Celery (retries are taskmgr's), results ignored but failures stored.
    Worker-wide settings are left as the host set them; only
    ``worker_prefetch_multiplier`` defaults to 1 when the host did not set it (see
    ``docs/celery.md``). Idempotent for the same service.

    A worker whose app accepts pickle (``accept_content``) for the host's own tasks is
    warned about at its start, once Celery's logging is set up; ``allow_pickle_app=True``
    says the host chose it, and turns the warning into an info line.
    """
    installed: WorkerRuntime | None = getattr(celery_app, _RUNTIME, None)
    if installed is not None:
        if installed.runtime is not runtime:
            raise ServiceStateError(
                "another SchedulerService is already installed on this Celery app"
            )
        return installed.task
    worker = WorkerRuntime(celery_app, runtime, allow_pickle_app=allow_pickle_app)
    worker.task = celery_app.task(
        name=TASK_NAME,
        bind=True,
        shared=False,
        typing=False,  # the arguments are checked by the task itself, with a clear log
        acks_late=True,
        reject_on_worker_lost=True,
        # a failed or timed-out run fails its task: acknowledged, never requeued or
        # retried by Celery (whatever the app's task_acks_on_* / retry settings)
        acks_on_failure_or_timeout=True,
        acks_on_failure=True,
        acks_on_timeout=True,
        retry_on_worker_lost=False,
        throws=(ExecutionFailedError,),  # expected: logged without a second traceback
        # the scheduler never waits for a result; a result backend still gets failures
        ignore_result=True,
        store_errors_even_if_ignored=True,
        serializer="json",
        Request="taskmgr.celery.request:ExecutionRequest",
        Strategy="taskmgr.celery.request:json_only_strategy",
    )(_execute)
    setattr(celery_app, _RUNTIME, worker)
    worker.connect_signals()
    return worker.task


def _execute(task: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    runtime: WorkerRuntime = getattr(task.app, _RUNTIME)
    return runtime.execute(task.request.id, args, kwargs, headers=vars(task.request))


def _host_set(conf: Any, key: str) -> bool:
    """Whether the host configured ``key`` itself (any layer but Celery's defaults)."""
    maps = list(getattr(conf, "maps", []))
    return any(key in layer for layer in maps[:-1]) if maps else key in conf


class WorkerRuntime:
    """What one worker node (and its pool processes) needs to run executions."""

    def __init__(self, app: Any, runtime: Runtime, *, allow_pickle_app: bool = False) -> None:
        self.app = app
        self.runtime = runtime
        self.allow_pickle_app = allow_pickle_app
        self.task: Any = None
        self.instance: InstanceRuntime | None = None
        #: The event loop of ``async def`` jobs, one per process.
        self.loop = WorkerLoop()
        self._node_pid: int | None = None
        self._lock = threading.Lock()
        self._writes: WorkerWrites | None = None

    # -- signals -------------------------------------------------------------------

    def connect_signals(self) -> None:
        app = self.app

        def ours(worker: Any) -> bool:
            return getattr(worker, "app", None) is app

        def on_worker_init(sender: Any = None, **_: Any) -> None:
            if ours(sender):
                self.configure_worker(sender)
                self.start_node()
                from celery.apps.worker import Worker as WorkerProgram

                if not isinstance(sender, WorkerProgram):
                    # embedded in the host's process: its logging is already in place
                    self.check_accept_content()

        def on_after_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
            # `celery worker` / `taskmgr worker`: sent once Celery's logging is set up,
            # so what is logged now is seen (at worker_init it would go nowhere)
            if ours(instance):
                self.check_accept_content()

        def on_process_init(**_: Any) -> None:
            self.after_fork()

        def on_process_shutdown(**_: Any) -> None:
            self.loop.close()

        def on_worker_shutdown(sender: Any = None, **_: Any) -> None:
            if ours(sender):
                self.loop.close()  # solo and threads pools: the main process's loop
                self.stop_node()

        def on_logging_setup(logger: Any = None, **_: Any) -> None:
            # the handlers Celery set up (or the host's, kept): records logged inside a
            # run carry its execution, records outside it "-" (as Celery's task_id)
            for handler in getattr(logger, "handlers", ()):
                if not any(isinstance(f, ExecutionLogFilter) for f in handler.filters):
                    handler.addFilter(ExecutionLogFilter(missing="-"))

        signals.worker_init.connect(on_worker_init, weak=False)
        signals.celeryd_after_setup.connect(on_after_setup, weak=False)
        signals.worker_process_init.connect(on_process_init, weak=False)
        signals.worker_process_shutdown.connect(on_process_shutdown, weak=False)
        signals.worker_shutdown.connect(on_worker_shutdown, weak=False)
        signals.after_setup_logger.connect(on_logging_setup, weak=False)
        signals.after_setup_task_logger.connect(on_logging_setup, weak=False)

    def configure_worker(self, worker: Any) -> None:
        """Worker-wide defaults taskmgr relies on, only where the host set nothing
        (called with the worker before its consumer is built)."""
        worker.app.finalize(auto=True)  # the host's configuration, loaded in layers
        conf = worker.app.conf
        key = "worker_prefetch_multiplier"
        if not _host_set(conf, key) and worker.prefetch_multiplier == conf[key]:
            # Neither the app nor the command line chose one (the CLI hands over the
            # configured value by default). One message reserved per free process: a
            # long job does not hold others back, and a dying worker holds few
            # unacknowledged messages.
            worker.prefetch_multiplier = 1
            conf[key] = 1

    def check_accept_content(self) -> None:
        """Warn (``taskmgr.celery``) when the app accepts pickle for the host's tasks:
        taskmgr's task refuses anything but JSON, but the worker decodes a pickle message
        for another task, and decoding pickle runs code. ``allow_pickle_app=True``: the
        host chose it, an info line says so."""
        accepted = sorted(str(c) for c in self.app.conf.accept_content or ())
        if not _PICKLE.intersection(accepted):
            return
        if self.allow_pickle_app:
            logger.info(
                "this worker accepts %s for the host's tasks (allow_pickle_app=True); "
                "taskmgr's task accepts JSON only",
                accepted,
            )
            return
        logger.warning(
            "this worker accepts %s: a pickle message is code that runs when it is "
            "decoded, so anyone who can publish to the broker can run code here. "
            "taskmgr's task refuses anything but JSON, but your own tasks do not: prefer "
            "accept_content=['json'], or pass CeleryDispatcher(app, allow_pickle_app=True) "
            "to say you chose it",
            accepted,
        )

    # -- node lifecycle (the worker's main process) -------------------------------------

    @property
    def instance_id(self) -> str | None:
        """This worker node's instance id, once the node started."""
        return self.instance.instance_id if self.instance is not None else None

    def start_node(self) -> None:
        with self._lock:
            if self._node_pid == os.getpid():
                return
            runtime = self.runtime
            runtime.open()
            self.instance = InstanceRuntime(
                runtime.storage, runtime.clock, runtime.liveness, mode=WORKER_MODE
            )
            self.instance.start()
            self._node_pid = os.getpid()
        logger.info(
            "taskmgr worker instance %s ready with %d registered function(s)",
            self.instance_id,
            len(runtime.registry),
        )

    def after_fork(self) -> None:
        """In a pool process: drop what was inherited from the main process."""
        if self._node_pid is not None and self._node_pid != os.getpid():
            self._lock = threading.Lock()
            self.runtime.storage.after_fork()

    def stop_node(self) -> None:
        """The pool has stopped (running tasks ended): mark this instance stopped."""
        if self._node_pid != os.getpid() or self.instance is None:
            return
        self.instance.stop()
        self.runtime.close()
        self._node_pid = None
        logger.info("taskmgr worker instance %s stopped", self.instance_id)

    # -- running one execution (a pool process, or the main process with -P solo) ------

    def execute(
        self, task_id: str, args: Any, kwargs: Any, *, headers: Any = None
    ) -> dict[str, Any] | None:
        """Take the execution a message names over and run it; returns the task's
        result, or raises :class:`ExecutionFailedError` once a failed or timed-out run
        is recorded. ``headers``: the message's, with the trace context it carries."""
        fence = _parse(args, kwargs)
        if fence is None:
            logger.error(
                "refused a %s message %s that taskmgr did not send: nothing was run",
                TASK_NAME,
                task_id,
            )
            return None
        if self.instance_id is None:  # no worker_init (an embedded worker): start here
            self.start_node()
        assert self.instance_id is not None
        execution_id, owner, attempt = fence
        clock = self.runtime.clock
        request = TakeOver(execution_id, owner, attempt, task_id)
        take_over = self.writes().take_overs
        # with the take-overs of the messages this process runs at the same time
        claimed = _retrying("take over an execution", lambda: take_over(request), deadline=30.0)
        if claimed is None:
            self._ignored(execution_id, task_id)
            return {"execution_id": execution_id, "status": "ignored"}
        run = ExecutionRun(
            claimed, self.instance_id, clock, timeout_errors=(SoftTimeLimitExceeded,)
        )
        run.dispatch = "celery"
        if _tracing.enabled():  # found here, on the pool's thread (an async run's span
            # starts on the loop's thread, where an instrumentation's span is not current)
            run.trace_parent = _tracing.consumer_parent(
                headers or {}, claimed.execution.trace_context
            )
        # the host's listeners, registered on the same service in this process too
        events = self.runtime.events
        if events.active:
            events.start()  # idempotent; a fresh thread in each pool process
            run.on_start = events.run_started
        try:
            func = self.runtime.registry.get(claimed.job.func)
        except TaskmgrError as exc:  # never imported: only registered functions run
            outcome = run.failed(exc)
        else:
            if inspect.iscoroutinefunction(func):
                outcome = self.loop.run(run, func)
            else:
                outcome = run.call_sync(func)
        applied = self.record(outcome)
        if events.active:
            events.outcomes([outcome], [applied])
        return task_result(outcome, claimed.job.key)

    def _ignored(self, execution_id: str, task_id: str) -> None:
        try:
            execution = self.runtime.storage.get_execution(execution_id)
        except ExecutionNotFoundError:
            logger.warning("message %s names no known execution %s", task_id, execution_id)
            return
        except Exception as exc:  # the message was refused all the same: say so
            why = f"another message or worker has it (its state could not be read: {exc})"
        else:
            if execution.started_at is not None:
                state = "started"
            elif execution.celery_task_id not in (None, task_id):
                # its dispatcher judged this message lost and published another one
                state = "not started, published again under another task id"
            else:
                state = "not started"
            why = f"it is {execution.status.value} (owner {execution.owner}, {state})"
        logger.info(
            "message %s for execution %s ignored: %s, not waiting for this message",
            task_id,
            execution_id,
            why,
            extra={"taskmgr_execution_id": execution_id},
        )

    def writes(self) -> WorkerWrites:
        """This process's group commits for this node's instance (made on first use in
        each process, and again for a node started anew)."""
        instance_id = self.instance_id
        assert instance_id is not None
        writes = self._writes
        if writes is None or not writes.serves(instance_id):
            with self._lock:
                writes = self._writes
                if writes is None or not writes.serves(instance_id):
                    writes = WorkerWrites(self.runtime.storage, self.runtime.clock, instance_id)
                    self._writes = writes
        return writes

    def record(self, outcome: Outcome) -> bool:
        """Write ``outcome`` fenced by this worker (with the outcomes of the executions
        this process runs at the same time), retried while the database is down."""
        record = self.writes().outcomes

        def write() -> list[bool]:
            try:
                return [record(outcome)]
            except DataRejectedError as exc:  # permanent: store a placeholder instead
                logger.error(
                    "the database refused the outcome %s of execution %s (%s); recording "
                    "it as failed without its text",
                    outcome.status.value,
                    outcome.execution_id,
                    exc,
                    extra={"taskmgr_execution_id": outcome.execution_id},
                )
                return [record(refused(outcome, exc))]

        applied = _retrying("record an execution outcome", write, deadline=3600.0)
        if not applied[0]:
            logger.warning(
                "outcome %s of execution %s rejected: this worker no longer owns it "
                "(it was marked lost or cancelled meanwhile)",
                outcome.status.value,
                outcome.execution_id,
                extra={"taskmgr_execution_id": outcome.execution_id},
            )
        return bool(applied[0])


def _retrying(what: str, call: Any, *, deadline: float) -> Any:
    """``call()``, retried with backoff while the database is unreachable."""
    give_up = time.monotonic() + deadline
    delay = 0.1
    while True:
        try:
            return call()
        except DataRejectedError:
            raise  # the same data would be refused again
        except TaskmgrError as exc:
            if time.monotonic() + delay > give_up:
                raise
            logger.warning("could not %s (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
