"""Messages no worker received: when the dispatcher publishes an execution again, under
which task id, and when it does not. The broker is a stand-in here (the published
messages are recorded, the queues' depths set by the test); ``test_lost_messages.py``
and ``test_broker_outage.py`` lose real messages under real workers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from celery import Celery
from taskmgr import SchedulerService
from taskmgr.celery import CeleryDispatcher
from taskmgr.celery.receipts import BrokerUnreachableError, QueueProbe, Unreceived
from taskmgr.core.models import Execution, ExecutionStatus
from taskmgr.storage import MemoryStorage
from tests.celery import jobs
from tests.celery.harness import Setup, all_executions, wait_for

#: Nothing listens on port 1: connecting fails at once with "connection refused".
DOWN = "redis://127.0.0.1:1/0"


class Broker:
    """Stands in for the broker: records each message published for taskmgr's task,
    refuses them while ``refuse`` is set, and answers the dispatcher's look at its
    queues with ``ready`` messages each (or not at all while ``down``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, float]] = []  # execution id, task id, when
        self.refuse = False
        self.ready = 0
        self.down = False
        self._lock = threading.Lock()

    # taskmgr's task
    def apply_async(self, *, kwargs: dict[str, Any], task_id: str, **_: Any) -> None:
        if self.refuse:
            raise ConnectionError("broker down")
        with self._lock:
            self.messages.append((kwargs["execution_id"], task_id, time.monotonic()))

    # the dispatcher's QueueProbe
    def waiting(self, queues: Iterable[str | None]) -> dict[str | None, int | None]:
        if self.down:
            raise BrokerUnreachableError("ConnectionError: broker down")
        return dict.fromkeys(queues, self.ready)

    def queue_name(self, queue: str | None) -> str:
        return queue or "celery"

    def close(self) -> None:
        pass

    def sent(self, execution_id: str) -> list[tuple[str, float]]:
        with self._lock:
            return [(task, at) for eid, task, at in self.messages if eid == execution_id]


def make(**options: Any) -> tuple[SchedulerService, CeleryDispatcher, Broker]:
    app = Celery("unit", broker=DOWN, set_as_current=False)
    options.setdefault("dispatch_timeout", 300.0)
    dispatcher = CeleryDispatcher(app, publish_backoff_max=0.5, handover_timeout=0.1, **options)
    service = SchedulerService(
        MemoryStorage(), jobs=[jobs.witness], dispatcher=dispatcher, poll_interval=0.05
    )
    broker = Broker()
    dispatcher.task = broker
    dispatcher._probe = broker  # type: ignore[assignment]
    return service, dispatcher, broker


def waiting_execution(service: SchedulerService) -> Execution:
    def published() -> Execution | None:
        found = [e for e in all_executions(service) if e.celery_task_id is not None]
        return found[0] if found else None

    return wait_for(published, 10, "an execution to be published")


def take_over(service: SchedulerService, execution: Execution, task_id: str) -> bool:
    claimed = service.storage.take_over(
        execution.id,
        from_owner=service.instance_id or "",
        to_owner="worker",
        attempt=execution.attempt,
        now=datetime.now(UTC),
        celery_task_id=task_id,
    )
    return claimed is not None


# -- the dispatcher ---------------------------------------------------------------------


def test_an_unreceived_execution_is_published_again_under_a_new_task_id() -> None:
    service, dispatcher, broker = make(receive_timeout=0.2)
    with service:
        service.create_job("work", jobs.witness, at=datetime.now(UTC))
        execution = waiting_execution(service)
        # the queue is empty and nobody took it over: its messages look lost
        wait_for(lambda: len(broker.sent(execution.id)) >= 3, 10, "two more copies")
        (first, t1), (second, t2), (third, t3) = broker.sent(execution.id)[:3]
        assert len({first, second, third}) == 3  # each copy replaces the one before
        assert t2 - t1 >= 0.2 and t3 - t2 >= 0.4  # and waits twice as long
        stored = service.storage.get_execution(execution.id)
        assert stored.status is ExecutionStatus.RUNNING and stored.started_at is None
        latest = broker.sent(execution.id)[-1][0]
        assert stored.celery_task_id in {third, latest}
        # the messages it replaced take nothing over; the one recorded does, once
        assert not take_over(service, execution, first)
        assert not take_over(service, execution, second)
        assert take_over(service, execution, stored.celery_task_id or "")
        assert not take_over(service, execution, stored.celery_task_id or "")
        # received: forgotten at its next look, and never published again
        wait_for(lambda: execution.id not in dispatcher._unreceived, 10, "it to be forgotten")
        count = len(broker.sent(execution.id))
    assert len(broker.sent(execution.id)) == count


def test_a_message_waiting_behind_others_is_not_published_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "taskmgr.dispatch")
    service, _, broker = make(receive_timeout=0.2)
    broker.ready = 3  # workers are busy: the queue holds messages
    with service:
        service.create_job("work", jobs.witness, at=datetime.now(UTC))
        execution = waiting_execution(service)
        wait_for(
            lambda: any("wait behind 3 message(s)" in r.getMessage() for r in caplog.records),
            10,
            "the dispatcher to find it waiting behind others",
        )
        assert len(broker.sent(execution.id)) == 1
        broker.ready = 0  # the queue drained and it was not taken over: lost
        wait_for(lambda: len(broker.sent(execution.id)) == 2, 10, "a second copy")


def test_dispatch_timeout_publishes_again_behind_a_queue_that_never_empties() -> None:
    service, _, broker = make(receive_timeout=0.1, dispatch_timeout=0.6)
    broker.ready = 3
    with service:
        service.create_job("work", jobs.witness, at=datetime.now(UTC))
        execution = waiting_execution(service)
        wait_for(lambda: len(broker.sent(execution.id)) >= 2, 10, "a second copy")
        (_, t1), (_, t2) = broker.sent(execution.id)[:2]
        assert t2 - t1 >= 0.6


def test_when_the_broker_answers_again_earlier_messages_are_looked_at_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "taskmgr.dispatch")
    # a minute of receive_timeout: only the broker's return can explain a second copy
    service, _, broker = make(receive_timeout=60.0)
    with service:
        service.create_job("work", jobs.witness, at=datetime.now(UTC))
        execution = waiting_execution(service)
        broker.down = True
        wait_for(
            lambda: any("cannot reach the Celery broker" in r.getMessage() for r in caplog.records),
            10,
            "the dispatcher to find the broker down",
        )
        broker.down = False  # back, empty: it lost the message
        wait_for(lambda: len(broker.sent(execution.id)) == 2, 5, "a second copy")
        (first, _), (second, _) = broker.sent(execution.id)
        assert first != second
        assert service.storage.get_execution(execution.id).celery_task_id == second


def test_a_publish_that_succeeds_after_failing_looks_at_earlier_messages_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "taskmgr.dispatch")
    service, _, broker = make(receive_timeout=60.0)
    with service:
        service.create_job("early", jobs.witness, at=datetime.now(UTC))
        early = waiting_execution(service)
        broker.refuse = True
        service.create_job("late", jobs.witness, at=datetime.now(UTC))
        wait_for(
            lambda: any(r.getMessage().startswith("cannot publish") for r in caplog.records),
            10,
            "a publish to fail",
        )
        broker.refuse = False  # the late one is published at the next try
        wait_for(lambda: len(broker.sent(early.id)) == 2, 5, "the early one again")


def test_an_execution_taken_over_meanwhile_is_not_published_again() -> None:
    service, dispatcher, broker = make(receive_timeout=60.0)
    with service:
        service.create_job("work", jobs.witness, at=datetime.now(UTC))
        execution = waiting_execution(service)
        assert take_over(service, execution, execution.celery_task_id or "")
        broker.down = True
        wait_for(lambda: dispatcher._broker_down, 10, "the broker to look down")
        broker.down = False
        wait_for(lambda: execution.id not in dispatcher._unreceived, 10, "it to be forgotten")
    assert len(broker.sent(execution.id)) == 1


# -- the bookkeeping, with explicit times -------------------------------------------


def test_each_copy_waits_twice_as_long_up_to_dispatch_timeout() -> None:
    book = Unreceived(receive_timeout=10.0, dispatch_timeout=35.0)
    book.published("e", "t1", None, now=100.0)
    assert book.due(109.9) == {}
    assert set(book.due(110.0)) == {"e"}
    book.replaced("e", "t2", None, now=110.0)
    assert book.due(129.9) == {} and set(book.due(130.0)) == {"e"}
    book.replaced("e", "t3", None, now=130.0)
    assert book.due(164.9) == {} and set(book.due(165.0)) == {"e"}  # 40 s capped to 35
    sent = book.get("e")
    assert sent is not None and (sent.task_id, sent.copies) == ("t3", 3)


def test_a_due_message_is_lost_when_its_queue_is_empty_or_cannot_be_counted() -> None:
    book = Unreceived(receive_timeout=10.0, dispatch_timeout=300.0)
    book.published("e", "t1", "reports", now=0.0)
    sent = book.due(10.0)["e"]
    assert book.lost(sent, 0, now=10.0)
    assert book.lost(sent, None, now=10.0)
    assert not book.lost(sent, 4, now=10.0)  # waiting behind others
    assert book.lost(sent, 4, now=300.0)  # not forever
    book.unsent("e", "t2", "reports", now=20.0)  # publishing it again raised
    sent = book.due(20.0)["e"]
    assert book.lost(sent, 4, now=20.0)


def test_the_brokers_return_makes_earlier_messages_due_at_once() -> None:
    book = Unreceived(receive_timeout=10.0, dispatch_timeout=300.0)
    book.published("a", "t1", None, now=0.0)
    book.published("b", "t2", None, now=5.0)
    assert book.broker_back(now=5.0) == 1  # "b" was published at that instant
    assert set(book.due(5.0)) == {"a"}
    assert book.broker_back(now=5.0) == 0


def test_forgets_what_is_no_longer_waiting_but_not_what_was_published_since() -> None:
    book = Unreceived(receive_timeout=10.0, dispatch_timeout=300.0)
    for name, at in (("a", 0.0), ("b", 1.0), ("c", 3.0)):
        book.published(name, f"t-{name}", None, now=at)
    book.unsent("d", "t-d", None, now=2.0)
    # the database was read at 2.5: "b" was waiting, "c" was not yet recorded
    book.keep(["b"], published_before=2.5)
    assert ("a" in book, "b" in book, "c" in book, "d" in book) == (False, True, True, False)
    book.forget(["b", "zz"])
    assert len(book) == 1 and book.queues() == {None}


# -- counting a real broker's queues ------------------------------------------------


@pytest.mark.parametrize("setup_name", ["redis_setup", "amqp_setup"])
def test_the_probe_counts_the_messages_ready_in_a_queue(
    request: pytest.FixtureRequest, setup_name: str
) -> None:
    setup: Setup = request.getfixturevalue(setup_name)
    app = Celery("probe", broker=setup.broker, set_as_current=False)
    app.conf.task_default_queue = setup.queue
    probe = QueueProbe(app)
    other = f"{setup.queue}-none"
    try:
        # no queue option: the app's routing; a queue the broker does not have holds none
        assert probe.queue_name(None) == setup.queue
        assert probe.waiting([None]) == {None: 0}
        for _ in range(2):
            app.send_task("not.a.task", serializer="json")
        wait_for(lambda: probe.waiting([None]) == {None: 2}, 10, "two messages counted")
        assert probe.waiting([None, other]) == {None: 2, other: 0}
        assert probe.count([setup.queue]) == {setup.queue: 2}
    finally:
        probe.close()
        app.close()


def test_the_probe_says_when_the_broker_does_not_answer() -> None:
    app = Celery("probe", broker=DOWN, set_as_current=False)
    probe = QueueProbe(app)
    try:
        with pytest.raises(BrokerUnreachableError):
            probe.waiting([None])
        with pytest.raises(BrokerUnreachableError):  # and again, on a fresh connection
            probe.waiting(["reports"])
    finally:
        probe.close()
