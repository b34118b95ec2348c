"""On one real worker (Redis): jobs of one service run where each chooses (inline or
Celery) and one moves by editing only it; the host's own Celery tasks, scheduled and
deferred by object and by name, run on the worker under taskmgr's claim, history,
retries and timeouts.

The worker (prefork, so Celery's time limits hold) is shared by the module's tests:
each test's jobs have keys of their own, and its API jobs are deleted at its end."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator

import pytest

from taskmgr import SchedulerService
from taskmgr.celery import celery_job
from taskmgr.core.models import Execution, ExecutionStatus, ExecutionTrigger
from tests.celery import jobs
from tests.celery.conftest import _setup
from tests.celery.harness import Setup, Worker, all_executions, redis_db_url, wait_for, workers
from tests.celery.hostapp import build
from tests.services import require_redis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Setup, str]]:
    """One worker for the module: its setup and its instance id."""
    tmp = tmp_path_factory.mktemp("per-job")
    for setup in _setup(redis_db_url(require_redis()), tmp):
        with pytest.MonkeyPatch.context() as env, workers() as started:
            env.setenv("CELERY_WITNESS_URL", setup.witness)  # inline runs witness here
            _, probe = build(setup.broker, setup.database, setup.queue)
            worker = Worker(setup, pool="prefork", concurrency=2)
            started.append(worker)
            try:
                yield setup, worker.wait_ready(probe)
            finally:
                probe.close()


def ended(service: SchedulerService, key: str) -> list[Execution]:
    """The ended executions of the job ``key``."""
    return [e for e in all_executions(service) if e.job_key == key and e.status.is_final]


def test_jobs_run_where_each_chooses_and_one_moves_by_editing_only_it(
    node: tuple[Setup, str],
) -> None:
    setup, worker_id = node
    _, service = build(setup.broker, setup.database, setup.queue, default_dispatcher="inline")
    service.start()
    try:
        local = service.create_job("mix.local", jobs.echo)
        remote = service.create_job("mix.remote", jobs.echo, dispatch="celery")
        assert (local.dispatch, remote.dispatch) == (None, "celery")
        here = service.defer("mix.local", n=1)
        there = service.defer("mix.remote", n=2)
        first = [service.wait(here.id, 20), service.wait(there.id, 20)]

        moved = service.update_job("mix.local", dispatch="celery")  # that job, nothing else
        assert (moved.dispatch, service.get_job("mix.remote").version) == ("celery", remote.version)
        after = service.wait(service.defer("mix.local", n=3).id, 20)
        back = service.update_job("mix.remote", dispatch="inline")  # and the other way
        returned = service.wait(service.defer("mix.remote", n=4).id, 20)
        service.delete_job("mix.local")
        service.delete_job("mix.remote")
    finally:
        service.shutdown()
    service.close()

    runs = [*first, after, returned]
    assert [(e.job_key, e.status, e.result_summary["n"]) for e in runs] == [
        ("mix.local", ExecutionStatus.SUCCESS, 1),
        ("mix.remote", ExecutionStatus.SUCCESS, 2),
        ("mix.local", ExecutionStatus.SUCCESS, 3),
        ("mix.remote", ExecutionStatus.SUCCESS, 4),
    ]
    # the default (inline: this process), a choice (the worker), each choice changed
    assert [e.owner for e in runs] == [
        service.instance_id,
        worker_id,
        worker_id,
        service.instance_id,
    ]
    assert back.dispatch == "inline"
    # each run started once, in the process its job chose at the time
    starts = collections.Counter(
        (row.execution_id, row.pid == os.getpid()) for row in jobs.read_witness(setup.witness)
    )
    assert [starts[(e.id, e.owner == service.instance_id)] for e in runs] == [1, 1, 1, 1]


def test_the_hosts_celery_tasks_run_on_the_worker_under_taskmgr(node: tuple[Setup, str]) -> None:
    setup, worker_id = node
    app, service = build(setup.broker, setup.database, setup.queue)
    tasks = app.tasks
    # by the task object: a schedule, and a task deferred through the declared object
    every = celery_job(tasks["host.add"], key="bridge.every", interval=1, kwargs={"x": 2, "y": 3})
    adder = celery_job(tasks["host.add"], key="bridge.add")
    # by its name on the app: a bind=True task whose first attempt asks for a retry
    flaky = celery_job("host.flaky", app=app, key="bridge.flaky", retry_backoff=(0.2, 0.2, 0))
    for declared in (every, adder, flaky):
        service.register(declared)
    service.start()
    try:
        assert service.get_job("bridge.flaky").max_retries == 1  # the task's own, kept
        assert service.get_job("host.nap").timeout == 1.0  # its soft_time_limit
        added = service.defer(adder, x=20, y=22)
        retried = service.defer("bridge.flaky", n=7)
        napped = service.defer("host.nap", seconds=30)
        wait_for(
            lambda: (
                ended(service, "bridge.every")
                and len(ended(service, "bridge.flaky")) == 2
                and ended(service, "bridge.add")
                and ended(service, "host.nap")
            ),
            30,
            "the host's tasks to end",
            0.1,
        )
    finally:
        service.shutdown()
    history = [e for e in all_executions(service) if e.status.is_final]
    service.close()

    by_id = {e.id: e for e in history}
    assert (by_id[added.id].status, by_id[added.id].result_summary) == (
        ExecutionStatus.SUCCESS,
        42,
    )
    chain = sorted((e for e in history if e.chain_id == retried.id), key=lambda e: e.attempt)
    assert [(e.attempt, e.status, e.trigger) for e in chain] == [
        (1, ExecutionStatus.FAILED, ExecutionTrigger.DEFERRED),
        (2, ExecutionStatus.SUCCESS, ExecutionTrigger.RETRY),
    ]
    assert (chain[0].error_type, chain[0].error_message) == (
        "builtins.RuntimeError",
        "first attempt of 7 fails",
    )
    # the task saw taskmgr's attempt as Celery's request
    assert chain[1].result_summary == {"n": 7, "retries": 1, "id": chain[1].id}
    assert by_id[napped.id].status is ExecutionStatus.TIMEOUT
    scheduled = [e for e in history if e.job_key == "bridge.every"]
    assert {(e.status, e.result_summary) for e in scheduled} == {(ExecutionStatus.SUCCESS, 5)}

    ours = [e for e in history if e.job_key.startswith(("bridge.", "host."))]
    assert {e.owner for e in ours} == {worker_id}  # taken over by the worker, every one
    starts = collections.Counter(
        row.execution_id for row in jobs.read_witness(setup.witness) if row.note == "start"
    )
    assert all(starts[e.id] == 1 for e in ours)
