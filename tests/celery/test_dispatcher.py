"""The dispatcher and the worker wiring without a worker process: what happens when
the broker is unreachable, inline opt-outs, and the settings taskmgr applies."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from celery import Celery
from taskmgr import SchedulerService
from taskmgr.celery import INLINE_QUEUE, TASK_NAME, CeleryDispatcher, install
from taskmgr.celery.publishing import Prepared
from taskmgr.celery.worker import _parse
from taskmgr.core.models import ExecutionStatus, JobDefinition, JobSource
from taskmgr.core.triggers import Interval
from taskmgr.dispatch.base import DispatchContext
from taskmgr.exceptions import ServiceStateError, StorageError
from taskmgr.scheduling.loop import LOOKAHEAD, SchedulerLoop
from taskmgr.scheduling.planner import Planner
from taskmgr.scheduling.sync import add_new_job
from taskmgr.storage import MemoryStorage
from taskmgr.testing import FakeClock
from tests.celery import jobs
from tests.celery.harness import Setup, all_executions, wait_for

#: Nothing listens on port 1: publishing fails at once with "connection refused".
DOWN = "redis://127.0.0.1:1/0"


def make(tmp_path: Any, **options: Any) -> tuple[Celery, SchedulerService]:
    app = Celery("unit", broker=DOWN, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    service = SchedulerService(
        MemoryStorage(),
        jobs=[jobs.witness],
        dispatcher=CeleryDispatcher(app, publish_backoff_max=0.5, **options),
        poll_interval=0.1,
    )
    return app, service


@pytest.fixture
def witness_url(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'witness.db'}"
    jobs.create_witness_table(url)
    monkeypatch.setenv("CELERY_WITNESS_URL", url)
    return url


def test_broker_down_keeps_executions_pending(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, service = make(tmp_path)
    with service:
        service.create_job("work", jobs.witness, at=datetime.now(UTC))
        wait_for(
            lambda: any(r.message.startswith("cannot publish") for r in caplog.records),
            10,
            "the publish failure to be logged",
        )
        execution = wait_for(
            lambda: [e for e in all_executions(service) if e.status is ExecutionStatus.PENDING],
            5,
            "the execution back to pending",
        )[0]
    assert execution.owner is None and execution.dispatched_at is None
    assert execution.celery_task_id is None  # a message that got through takes nothing over
    assert execution.due_at >= execution.created_at
    assert [e.status for e in all_executions(service)] == [ExecutionStatus.PENDING]


def test_fallback_inline_runs_executions_here_when_the_broker_is_down(
    tmp_path: Any, witness_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "taskmgr")
    _, service = make(tmp_path, fallback="inline")
    with service:
        service.create_job("work", jobs.witness, at=datetime.now(UTC))
        done = wait_for(
            lambda: [e for e in all_executions(service) if e.status.is_final], 10, "a run"
        )
    assert done[0].status is ExecutionStatus.SUCCESS
    assert done[0].owner == service.instance_id
    assert any("running 1 execution(s) inline" in r.message for r in caplog.records)
    assert len(jobs.read_witness(witness_url)) == 1


def test_a_job_on_the_inline_queue_never_goes_to_the_broker(
    tmp_path: Any, witness_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, service = make(tmp_path)
    with service:
        service.create_job("local", jobs.witness, at=datetime.now(UTC), queue=INLINE_QUEUE)
        done = wait_for(
            lambda: [e for e in all_executions(service) if e.status.is_final], 10, "a run"
        )
    assert done[0].status is ExecutionStatus.SUCCESS
    assert done[0].owner == service.instance_id
    assert not [r for r in caplog.records if r.message.startswith("cannot publish")]


def test_install_registers_one_task_on_the_hosts_app_only(tmp_path: Any) -> None:
    app, service = make(tmp_path)
    other = Celery("other", broker=DOWN, set_as_current=False)
    task = app.tasks[TASK_NAME]
    assert install(app, service.runtime).name == TASK_NAME  # idempotent for the same service
    assert TASK_NAME not in other.tasks
    assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
    assert task.serializer == "json"
    assert app.conf.task_acks_late is False  # host settings untouched
    with pytest.raises(ServiceStateError):
        install(app, SchedulerService(MemoryStorage()).runtime)


def test_prefetch_multiplier_defaults_to_one_unless_the_host_chose(tmp_path: Any) -> None:
    app, _ = make(tmp_path)
    runtime = app._taskmgr_runtime
    worker = SimpleNamespace(app=app, prefetch_multiplier=app.conf.worker_prefetch_multiplier)
    runtime.configure_worker(worker)
    assert worker.prefetch_multiplier == 1

    chosen, _ = make(tmp_path)
    chosen.conf.worker_prefetch_multiplier = 8
    worker = SimpleNamespace(app=chosen, prefetch_multiplier=8)
    chosen._taskmgr_runtime.configure_worker(worker)
    assert worker.prefetch_multiplier == 8

    cli, _ = make(tmp_path)  # `celery worker --prefetch-multiplier 3`
    worker = SimpleNamespace(app=cli, prefetch_multiplier=3)
    cli._taskmgr_runtime.configure_worker(worker)
    assert worker.prefetch_multiplier == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"execution_id": "e", "owner": "o"},
        {"execution_id": "e", "owner": "o", "attempt": "1"},
        {"execution_id": "e", "owner": "o", "attempt": True},
        {"execution_id": "e", "owner": "o", "attempt": 1, "func": "os:system"},
        {"execution_id": "x" * 100, "owner": "o", "attempt": 1},
        {"execution_id": 1, "owner": "o", "attempt": 1},
    ],
)
def test_messages_taskmgr_did_not_write_are_refused(kwargs: dict[str, Any]) -> None:
    assert _parse((), kwargs) is None


def test_bad_dispatcher_options_are_refused() -> None:
    app = Celery("bad", broker=DOWN, set_as_current=False)
    with pytest.raises(ValueError, match="reserved"):
        CeleryDispatcher(app, queue=INLINE_QUEUE)
    with pytest.raises(ValueError, match="fallback"):
        CeleryDispatcher(app, fallback="thread")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dispatch_timeout"):
        CeleryDispatcher(app, dispatch_timeout=0)
    with pytest.raises(ValueError, match="receive_timeout"):
        CeleryDispatcher(app, receive_timeout=-1)
    with pytest.raises(ServiceStateError, match="not bound"):
        CeleryDispatcher(app).start(None)  # type: ignore[arg-type]


def named_celery_service() -> SchedulerService:
    """An app factory for ``taskmgr worker --app``: inline by default, Celery by name."""
    app = Celery("named", broker=DOWN, set_as_current=False)
    return SchedulerService(
        MemoryStorage(),
        dispatcher="inline",
        dispatchers={"celery": CeleryDispatcher(app, queue="reports")},
    )


def test_taskmgr_worker_finds_the_celery_dispatcher_among_the_named_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from taskmgr.cli.main import main

    started: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(Celery, "worker_main", lambda self, argv: started.append((self.main, argv)))
    spec = f"{__name__}:named_celery_service"
    result = CliRunner().invoke(main, ["worker", "--app", spec, "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    assert started == [("named", ["worker", "--concurrency", "2", "--queues", "reports"])]


def test_a_refused_copy_is_logged_even_when_its_execution_cannot_be_read(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, service = make(tmp_path)
    runtime = app._taskmgr_runtime

    def unreadable(execution_id: str) -> None:
        raise StorageError("database is locked")

    monkeypatch.setattr(service.runtime.storage, "get_execution", unreadable)
    with caplog.at_level(logging.INFO, logger="taskmgr"):
        runtime._ignored("e1", "t1")
    assert (
        "message t1 for execution e1 ignored: another message or worker has it (its state "
        "could not be read: database is locked)" in caplog.text
    )


def test_a_run_claimed_ahead_has_its_task_id_recorded_before_its_slot(
    redis_setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The look-ahead claims a slot a little early; its message's task id is recorded
    then, so that the publish at the slot waits for no commit."""
    app = Celery("ahead", broker=redis_setup.broker, set_as_current=False)
    dispatcher = CeleryDispatcher(app, queue=redis_setup.queue)
    storage = MemoryStorage()
    service = SchedulerService(storage, jobs=[jobs.witness], dispatcher=dispatcher)  # binds
    name = service.registry.resolve(jobs.witness)
    clock = FakeClock()
    job = add_new_job(
        storage,
        JobDefinition(key="ahead", func=name, trigger=Interval(60)),
        source=JobSource.API,
        fingerprint=None,
        now=clock.now(),
    )
    assert job.next_run_at is not None
    recorded: list[dict[str, str]] = []
    assign = storage.assign_task_ids

    def counted(wanted: dict[str, str], *, owner: str) -> list[str]:
        recorded.append(dict(wanted))
        return assign(wanted, owner=owner)

    monkeypatch.setattr(storage, "assign_task_ids", counted)
    loop = SchedulerLoop(
        storage, dispatcher, Planner("me", {name}), clock, owner="me", batch_size=10,
        poll_interval=1, lookahead=LOOKAHEAD,
    )  # fmt: skip
    dispatcher.start(DispatchContext("me", clock, service.registry.get, lambda _: None, storage))
    broker = redis.Redis.from_url(redis_setup.broker)
    try:
        clock.set(job.next_run_at - timedelta(seconds=LOOKAHEAD / 2))
        [claimed] = loop.tick()
        task_id = storage.get_execution(claimed.execution.id).celery_task_id
        assert recorded == [{claimed.execution.id: task_id}]  # recorded at the claim ...
        assert broker.llen(redis_setup.queue) == 0  # ... and nothing published yet

        clock.set(job.next_run_at)
        assert loop.fire_due() == 1
        [message] = broker.lrange(redis_setup.queue, 0, -1)
        assert json.loads(message)["headers"]["id"] == task_id
        assert len(recorded) == 1  # published at the slot with no second transaction
    finally:
        dispatcher.shutdown(wait=False)
        broker.delete(redis_setup.queue)
        broker.close()


def test_prepared_task_ids_are_taken_once_and_forgotten_when_never_taken() -> None:
    now = [100.0]
    prepared = Prepared(keep=60, clock=lambda: now[0])
    prepared.add({"a": "task-a", "b": "task-b"})
    assert prepared.take(["a", "c"]) == {"a": "task-a"}
    assert prepared.take(["a"]) == {}  # once
    now[0] += 61  # "b" was never dispatched (its run ended missed, say)
    prepared.add({"d": "task-d"})
    assert prepared.take(["b", "d"]) == {"d": "task-d"}
