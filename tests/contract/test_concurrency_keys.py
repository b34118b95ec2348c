"""Contract: a task with a ``concurrency_key`` bounds its runs per argument value.

Each deferred run stores its group (``concurrency_value``); a claim counts the active
runs per group on the locked job rows and the planner starts a queued run only while
its group has room. Queued runs of a full group are not read at all, so a backlog of
one busy group never keeps the other groups' runs waiting."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from taskmgr.core.models import ExecutionStatus, ExecutionTrigger, Job, OverlapPolicy
from taskmgr.core.triggers import Manual
from taskmgr.exceptions import InvalidInputError
from taskmgr.scheduling.planner import Planner
from taskmgr.storage.base import ExecutionFilter, Storage
from tests.conftest import OpenStorage

from .helpers import T0, Recorder, add_job, new_execution, outcome, running

FUNC = "tests.contract.work"
SECOND = timedelta(seconds=1)


def keyed_task(storage: Storage, key: str = "reports", *, per_value: int = 1) -> Job:
    return add_job(
        storage,
        key,
        next_run_at=None,
        func=FUNC,
        trigger=Manual(),
        max_instances=per_value,
        overlap_policy=OverlapPolicy.QUEUE,
        concurrency_key="customer",
    )


def defer(storage: Storage, job: Job, customer: str | None, n: int) -> str:
    """A queued deferred run of ``customer``'s group, the ``n``-th due."""
    value = None if customer is None else f'"{customer}"'
    stored = storage.add_execution(
        new_execution(
            job,
            trigger=ExecutionTrigger.DEFERRED,
            scheduled_for=T0 + n * SECOND,
            queued=True,
            kwargs={"customer": customer},
            concurrency_value=value,
        )
    )
    return stored.id


def running_per_group(storage: Storage, key: str) -> Counter[str | None]:
    rows = storage.list_executions(
        ExecutionFilter(job_key=key, statuses=[ExecutionStatus.RUNNING]), limit=1000
    )
    return Counter(e.concurrency_value for e in rows)


def end_all(storage: Storage, key: str, *, at: int) -> None:
    rows = storage.list_executions(
        ExecutionFilter(job_key=key, statuses=[ExecutionStatus.RUNNING]), limit=1000
    )
    done = T0 + at * SECOND
    storage.record_outcomes([outcome(e, e.owner or "", completed_at=done) for e in rows])


def test_the_job_keeps_its_key_and_each_run_its_value(storage: Storage) -> None:
    job = keyed_task(storage)
    assert storage.get_job("reports").concurrency_key == "customer"
    run = storage.get_execution(defer(storage, job, "acme", 1))
    assert run.concurrency_value == '"acme"'
    retry = new_execution(job, attempt=2, chain_id=run.id, concurrency_value='"acme"')
    started = storage.claim(now=T0 + 2 * SECOND, owner="a", limit=10, planner=Planner("a", {FUNC}))
    assert [c.execution.concurrency_value for c in started] == ['"acme"']
    failed = outcome(run, "a", status=ExecutionStatus.FAILED, retry=retry)
    assert storage.record_outcomes([failed]) == [True]
    assert storage.get_execution(retry.id).concurrency_value == '"acme"'

    changed = storage.update_job("reports", {"concurrency_key": None}, now=T0)
    assert changed.concurrency_key is None
    with pytest.raises(InvalidInputError) as refused:  # the key needs a task's queue
        storage.update_job("reports", {"concurrency_key": "customer", "max_instances": 2,
                                       "overlap_policy": "allow"}, now=T0)  # fmt: skip
    assert refused.value.field == "concurrency_key"
    with pytest.raises(InvalidInputError):  # longer than the column
        storage.add_execution(new_execution(job, concurrency_value="x" * 256))


def test_the_claim_counts_active_runs_per_value(storage: Storage) -> None:
    job = keyed_task(storage, per_value=3)
    plain = add_job(storage, "plain", next_run_at=None, trigger=Manual(), max_instances=3,
                    overlap_policy=OverlapPolicy.QUEUE)  # fmt: skip
    for value in ('"a"', '"a"', '"b"', None):
        storage.add_execution(running(job, "x", concurrency_value=value))
    storage.add_execution(running(plain, "x", concurrency_value='"a"'))  # no key: no group
    defer(storage, job, "c", 1)  # a due run of each job puts both in the batch
    defer(storage, plain, "a", 2)
    planner = Recorder()
    storage.claim(now=T0 + 5 * SECOND, owner="a", limit=10, planner=planner)
    batch = planner.batch
    assert batch.active == {job.id: 4, plain.id: 1}
    assert batch.active_groups == {(job.id, '"a"'): 2, (job.id, '"b"'): 1, (job.id, None): 1}


def test_a_full_group_s_backlog_does_not_hide_the_other_groups(storage: Storage) -> None:
    job = keyed_task(storage)
    storage.add_execution(running(job, "x", concurrency_value='"big"'))
    backlog = [defer(storage, job, "big", n) for n in range(1, 6)]
    small = defer(storage, job, "small", 10)
    planner = Recorder()
    storage.claim(now=T0 + 20 * SECOND, owner="a", limit=2, planner=planner)
    assert [e.id for e in planner.batch.due_pending] == [small]

    end_all(storage, "reports", at=21)  # "big" has room again: its backlog is read first
    planner = Recorder()
    storage.claim(now=T0 + 22 * SECOND, owner="a", limit=2, planner=planner)
    assert [e.id for e in planner.batch.due_pending] == backlog[:2]


def test_runs_of_one_value_never_exceed_the_bound_while_other_values_run(
    storage: Storage,
) -> None:
    job = keyed_task(storage, per_value=2)
    due: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    for n in range(12):
        customer = "a" if n < 6 else "bc"[n % 2]  # "a" first: a burst of one customer
        due[customer].append(defer(storage, job, customer, n))
    planner = Planner("owner", {FUNC})

    def claim(step: int) -> list[str]:
        now = T0 + (20 + step) * SECOND
        claimed = storage.claim(now=now, owner="owner", limit=4, planner=planner)
        counts = running_per_group(storage, "reports")
        assert max(counts.values(), default=0) <= 2, counts
        return [c.execution.id for c in claimed]

    started = claim(0)
    assert started == due["a"][:2]
    started += claim(1)  # "a" is full: its backlog waits, the other customers start
    assert running_per_group(storage, "reports") == {'"a"': 2, '"b"': 2, '"c"': 2}
    assert claim(2) == []
    for step in range(3, 8):
        end_all(storage, "reports", at=20 + step)
        started += claim(step)
    assert sorted(started) == sorted(i for ids in due.values() for i in ids)
    for ids in due.values():  # each customer's runs start in due order
        assert [i for i in started if i in ids] == ids


def test_a_run_written_without_a_value_counts_with_the_others_without_one(
    storage: Storage,
) -> None:
    job = keyed_task(storage)
    storage.add_execution(running(job, "x"))  # from before the key was set
    waiting = defer(storage, job, None, 1)
    keyed = defer(storage, job, "a", 2)
    planner = Planner("owner", {FUNC})
    claimed = storage.claim(now=T0 + 5 * SECOND, owner="owner", limit=10, planner=planner)
    assert [c.execution.id for c in claimed] == [keyed]
    assert storage.get_execution(waiting).status is ExecutionStatus.PENDING


def test_without_a_key_the_bound_is_the_whole_task_s(storage: Storage) -> None:
    job = keyed_task(storage)
    storage.update_job("reports", {"concurrency_key": None}, now=T0)
    for n, customer in enumerate(("a", "b", "c"), start=1):
        defer(storage, job, customer, n)
    planner = Planner("owner", {FUNC})
    claimed = storage.claim(now=T0 + 5 * SECOND, owner="owner", limit=10, planner=planner)
    assert len(claimed) == 1


@pytest.mark.parametrize("separate", [False, True], ids=["threads", "separate-storages"])
def test_concurrent_claims_keep_each_group_within_its_bound(
    open_storage: OpenStorage, backend: str, separate: bool
) -> None:
    """Claimers racing over the same groups never start more runs of one group than
    its bound: each counts a group only on the job row it has locked."""
    if separate and backend == "memory":
        pytest.skip("a MemoryStorage is not shared between objects")
    storages = [open_storage() for _ in range(4)] if separate else [open_storage()] * 4
    job = keyed_task(storages[0])
    customers = [f"c{n}" for n in range(3)]
    total = 30
    for n in range(total):
        defer(storages[0], job, customers[n % len(customers)], n)
    started: list[str] = []
    for round_ in range(4 * total):  # a round may start little: claimers skip busy rows
        if len(started) == total:
            break
        now = T0 + (100 + round_) * SECOND
        started += _race(storages, now)
        counts = running_per_group(storages[0], "reports")
        assert max(counts.values(), default=0) <= 1, (round_, counts)
        if round_ % 2:  # every other round claims again while the runs still run
            end_all(storages[0], "reports", at=100 + round_)
    assert len(started) == len(set(started)) == total


def _race(storages: list[Storage], now: object) -> list[str]:
    """Every storage claims at ``now`` from its own thread at once, each a few runs
    (so that they read different rows of the same groups)."""
    barrier = threading.Barrier(len(storages))
    claimed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(storage: Storage, owner: str) -> None:
        try:
            barrier.wait(timeout=30)
            planner = Planner(owner, {FUNC})
            got = storage.claim(now=now, owner=owner, limit=2, planner=planner)  # type: ignore[arg-type]
            with lock:
                claimed.extend(c.execution.id for c in got)
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=worker, args=(storage, f"owner-{n}"))
        for n, storage in enumerate(storages)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return claimed
