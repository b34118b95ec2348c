"""Concurrency per argument value: ``@task(concurrency=N, concurrency_key="arg")`` runs
at most N runs per value of ``arg`` at once, across the cluster; the others wait
``pending`` and start in due order, never skipped, while other values run. On every
storage backend."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from taskmgr import (
    ExecutionStatus,
    Interval,
    InvalidKwargsError,
    InvalidPolicyError,
    Manual,
    OverlapPolicy,
    task,
)
from taskmgr.core.alert_options import ALERT_OPTIONS
from taskmgr.core.definition import build_definition
from taskmgr.service import SchedulerService
from taskmgr.storage import Storage
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
#: Lets the runs of ``report`` end (each waits for it).
GATE = threading.Event()
RAN: list[tuple[Any, int]] = []


@task("reports.by_customer", concurrency=1, concurrency_key="customer_id")
def report(customer_id: Any, n: int = 0) -> int:
    RAN.append((customer_id, n))
    if not GATE.wait(30):
        raise TimeoutError("the test never opened the gate")
    return n


@task("reports.by_region", concurrency=2, concurrency_key="region", max_retries=1,
      retry_backoff=(1.0, 1.0, 0.0))  # fmt: skip
def regional(region: str = "eu", fail: bool = False) -> str:
    RAN.append((region, 0))
    if fail and len(RAN) == 1:
        raise RuntimeError("first attempt fails")
    return region


def export(customer_id: str, fmt: str = "csv") -> None:
    """Made a task at run time (``create_job``)."""


def positional_only(customer_id: str, /) -> None: ...


def list_default(customer_id: list[str] = []) -> None: ...  # noqa: B006 - refused anyway


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    GATE.clear()
    RAN.clear()
    yield
    GATE.set()  # never leave a run waiting after a failed test


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def service(storage: Storage, clock: FakeClock) -> Iterator[SchedulerService]:
    with make_test_service([report, regional, export], clock=clock, storage=storage) as svc:
        yield svc


def test_one_run_per_customer_at_a_time_while_other_customers_run(
    service: SchedulerService,
) -> None:
    acme_1 = service.defer(report, customer_id="acme", n=1)
    acme_2 = service.defer(report, customer_id="acme", n=2)
    bolt_1 = service.defer(report, customer_id="bolt", n=1)
    assert (acme_1.concurrency_value, bolt_1.concurrency_value) == ('"acme"', '"bolt"')

    started = service.run_due(wait=False)
    assert {e.id for e in started} == {acme_1.id, bolt_1.id}
    core_1 = service.defer(report, customer_id="core", n=1)
    bolt_2 = service.defer(report, customer_id="bolt", n=2)
    # acme and bolt each have their run: only the new customer starts
    assert [e.id for e in service.run_due(wait=False)] == [core_1.id]
    assert service.get_execution(acme_2.id).status is ExecutionStatus.PENDING

    GATE.set()
    for execution in (acme_1, bolt_1, core_1):
        assert service.wait(execution.id).status is ExecutionStatus.SUCCESS
    done = service.run_due()
    assert sorted(e.id for e in done) == sorted([acme_2.id, bolt_2.id])
    assert service.run_due() == []
    assert sorted(RAN) == sorted([("acme", 1), ("acme", 2), ("bolt", 1), ("bolt", 2),
                                  ("core", 1)])  # fmt: skip


def test_values_of_different_types_are_different_customers(service: SchedulerService) -> None:
    runs = [service.defer(report, customer_id=v) for v in ("1", 1, True, None, 1)]
    assert [r.concurrency_value for r in runs] == ['"1"', "1", "true", "null", "1"]
    GATE.set()
    assert len(service.run_due()) == 4  # the second run of customer 1 waits its turn
    assert len(service.run_due()) == 1


def test_an_omitted_argument_groups_by_its_default_and_retries_keep_the_group(
    service: SchedulerService, clock: FakeClock
) -> None:
    first = service.defer(regional, fail=True)
    assert first.concurrency_value == '"eu"'
    [failed] = service.run_due()
    assert failed.status is ExecutionStatus.FAILED
    [retry] = service.list_executions(status="pending").items
    assert (retry.chain_id, retry.attempt) == (first.id, 2)
    assert retry.concurrency_value == '"eu"'
    clock.advance(seconds=2)
    [done] = service.run_due()
    assert (done.id, done.status) == (retry.id, ExecutionStatus.SUCCESS)


def test_a_manual_run_is_grouped_too(service: SchedulerService) -> None:
    execution = service.trigger_job("reports.by_region", kwargs={"region": "us"})
    assert execution.concurrency_value == '"us"'


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"customer_id": ["acme"]}, "kwargs.customer_id"),
        ({"customer_id": {"id": 1}}, "kwargs.customer_id"),
        ({"customer_id": 1.5}, "kwargs.customer_id"),
        ({"customer_id": "x" * 300}, "kwargs.customer_id"),
    ],
)
def test_a_value_that_cannot_name_a_group_is_refused_and_nothing_written(
    service: SchedulerService, kwargs: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidKwargsError) as refused:
        service.defer(report, **kwargs)
    assert refused.value.field == path
    with pytest.raises(InvalidKwargsError):
        service.defer_many(report, [{"customer_id": "fine"}, kwargs])
    assert service.list_executions().items == []


def test_declarations_are_checked() -> None:
    with pytest.raises(InvalidPolicyError) as bad:
        task("t", concurrency_key="customer_id")  # no bound to apply per value
    assert bad.value.field == "concurrency_key"
    for key in ("customer-id", "class", "", 7):
        with pytest.raises(InvalidPolicyError) as bad:
            task("t", concurrency=1, concurrency_key=key)(export)  # type: ignore[arg-type]
        assert bad.value.field == "concurrency_key"
    for func, key in ((export, "missing"), (positional_only, "customer_id"),
                      (list_default, "customer_id")):  # fmt: skip
        with pytest.raises(InvalidPolicyError, match="argument") as bad:
            task("t", concurrency=1, concurrency_key=key)(func)
        assert bad.value.field == "concurrency_key"
    assert not hasattr(export, "__taskmgr_job__")  # nothing was declared


def test_create_job_and_update_job_take_the_key_for_tasks(service: SchedulerService) -> None:
    job = service.create_job("exports", export, concurrency_key="customer_id")
    assert (job.concurrency_key, job.max_instances) == ("customer_id", 1)
    assert job.overlap_policy is OverlapPolicy.QUEUE
    assert service.defer("exports", customer_id="acme").concurrency_value == '"acme"'

    with pytest.raises(InvalidPolicyError, match="only a task") as bad:
        service.create_job("scheduled", export, interval=60, concurrency_key="customer_id",
                           kwargs={"customer_id": "a"})  # fmt: skip
    assert bad.value.field == "concurrency_key"
    with pytest.raises(InvalidPolicyError, match="has no argument"):
        service.create_job("typo", export, concurrency_key="customer")
    with pytest.raises(InvalidPolicyError, match="queue"):
        service.create_job("unbounded", export, concurrency_key="fmt", overlap_policy="allow")

    changed = service.update_job("exports", concurrency_key="fmt", max_instances=2)
    assert (changed.concurrency_key, changed.max_instances) == ("fmt", 2)
    assert service.defer("exports", customer_id="a").concurrency_value == '"csv"'
    with pytest.raises(InvalidPolicyError, match="has no argument"):
        service.update_job("exports", concurrency_key="nope")
    assert service.update_job("exports", concurrency_key=None).concurrency_key is None


def test_a_job_without_a_key_keeps_the_fingerprint_it_had_before_the_option() -> None:
    """Otherwise every job declared in code would look changed after the upgrade."""
    plain = build_definition(key="k", func="f", trigger=Interval(60), options={})
    before = plain.model_dump(mode="json")
    added_since = ("concurrency_key", "retention", "dispatch", "exclude_dates", *ALERT_OPTIONS)
    for later in added_since:
        before.pop(later, None)
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:32]
    assert plain.fingerprint() == digest
    options = {"overlap_policy": "queue", "concurrency_key": "customer"}
    keyed = build_definition(key="k", func="f", trigger=Manual(), options=options)
    unkeyed = build_definition(
        key="k", func="f", trigger=Manual(), options=options | {"concurrency_key": None}
    )
    assert keyed.fingerprint() != unkeyed.fingerprint()
