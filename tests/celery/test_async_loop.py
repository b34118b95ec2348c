"""``async def`` jobs on real workers run on one event loop per worker process, which
outlives the runs: a host's pooled async engine (asyncpg, made at import) serves run
after run, with the prefork pool and with the threads pool; a timeout cancels the job
through that loop, and the loop goes on serving."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from taskmgr import SchedulerService
from taskmgr.core.models import Execution, ExecutionStatus
from tests.celery import jobs
from tests.celery.conftest import _delete_queue
from tests.celery.harness import Setup, Worker, all_executions, redis_db_url, wait_for
from tests.celery.hostapp import build
from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.slow

RUNS = 20


def _setup(tmp_path: Path) -> Setup:
    database = make_url(require_postgres()).set(drivername="postgresql+asyncpg")
    setup = Setup(
        broker=redis_db_url(require_redis()),
        database=f"sqlite:///{tmp_path / 'taskmgr.db'}",
        witness=f"sqlite:///{tmp_path / 'witness.db'}",
        logs=tmp_path,
        extra_env={"TASKMGR_CELERY_TEST_ASYNC_DB": database.render_as_string(False)},
    )
    jobs.create_witness_table(setup.witness)
    return setup


@pytest.fixture(scope="module")
def workers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Setup, Worker, SchedulerService]]]:
    """A prefork worker (two pool processes) and a threads worker (four threads), each
    with its queue and databases, and a service (not started) on each."""
    started: dict[str, tuple[Setup, Worker, SchedulerService]] = {}
    try:
        for pool, concurrency in (("prefork", 2), ("threads", 4)):
            setup = _setup(tmp_path_factory.mktemp(pool))
            _, service = build(setup.broker, setup.database, setup.queue)
            started[pool] = (setup, Worker(setup, pool=pool, concurrency=concurrency), service)
        for _, worker, service in started.values():
            worker.wait_ready(service)
        yield started
    finally:
        for setup, worker, service in started.values():
            worker.stop()
            service.close()
            _delete_queue(setup.broker, setup.queue)


def _ended(service: SchedulerService, ids: set[str], timeout: float = 60) -> list[Execution]:
    def done() -> list[Execution] | None:
        found = [e for e in all_executions(service) if e.id in ids]
        return found if len(found) == len(ids) and all(e.status.is_final for e in found) else None

    return wait_for(done, timeout, f"{len(ids)} runs to end", every=0.2)


def _assert_one_loop_per_process(runs: list[Execution]) -> None:
    """Each process counted the runs on its loop 1, 2, 3, ...: one loop served them all
    (a loop per run would count 1 each time)."""
    counts = collections.defaultdict(list)
    for execution in runs:
        counts[execution.result_summary["pid"]].append(execution.result_summary["loop_runs"])
    for seen in counts.values():
        assert sorted(seen) == list(range(1, len(seen) + 1))


def test_prefork_runs_share_each_process_loop_and_its_pooled_connections(
    workers: dict[str, tuple[Setup, Worker, SchedulerService]],
) -> None:
    setup, worker, service = workers["prefork"]
    service.create_job("async.pooled", jobs.pooled_async)
    service.create_job("async.sleepy", jobs.sleepy_async, timeout=1)
    with service:
        first = service.defer_many("async.pooled", [{"n": n} for n in range(RUNS)])
        pooled = _ended(service, {e.id for e in first})
        # cancelled at its timeout (Celery's soft limit, or taskmgr's own wait_for)
        sleepy = service.defer("async.sleepy")
        [timed_out] = _ended(service, {sleepy.id})
        after = service.defer_many("async.pooled", [{"n": n} for n in range(RUNS, RUNS + 4)])
        later = _ended(service, {e.id for e in after})

    assert {e.status for e in pooled + later} == {ExecutionStatus.SUCCESS}, [
        (e.status, e.error_message)
        for e in pooled + later
        if e.status is not ExecutionStatus.SUCCESS
    ]
    by_id = {e.id: e for e in pooled + later}
    assert [by_id[e.id].result_summary["n"] for e in [*first, *after]] == list(range(RUNS + 4))
    _assert_one_loop_per_process(pooled + later)
    assert (timed_out.status, timed_out.error_type) == (ExecutionStatus.TIMEOUT, "TimeoutError")
    notes = [row.note for row in jobs.read_witness(setup.witness) if row.execution_id == sleepy.id]
    assert notes == ["start", "cancelled"]  # the job saw its cancellation and could clean up
    assert "Traceback" not in worker.output()


def test_threads_pool_runs_share_the_process_loop(
    workers: dict[str, tuple[Setup, Worker, SchedulerService]],
) -> None:
    _, worker, service = workers["threads"]
    service.create_job("async.pooled", jobs.pooled_async)
    with service:
        deferred = service.defer_many("async.pooled", [{"n": n} for n in range(RUNS)])
        runs = _ended(service, {e.id for e in deferred})

    assert {e.status for e in runs} == {ExecutionStatus.SUCCESS}, [
        (e.status, e.error_message) for e in runs if e.status is not ExecutionStatus.SUCCESS
    ]
    assert len({e.result_summary["pid"] for e in runs}) == 1
    _assert_one_loop_per_process(runs)
    assert "Traceback" not in worker.output()
