"""Precise fires: a slot claimed a little ahead of its time (the loop's look-ahead) is
still one row, claimed once across instances, and starts at its time, never before it
and never at the next tick. The timer judges time by the injected clock, so these
tests move a FakeClock and drive the loop by hand (``tick``, ``fire_due``).

Also: a claimed run is given up (``cancelled``) only when the instance is truly no
longer alive, not whenever its heartbeat thread was slow (a loaded process used to
give up runs it still owned)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import timedelta

import pytest

from taskmgr import ExecutionStatus, Instance, InstanceStatus
from taskmgr.core.models import Job, JobDefinition, JobSource
from taskmgr.core.rules import Liveness
from taskmgr.core.triggers import Interval
from taskmgr.dispatch.base import DispatchContext, Dispatcher
from taskmgr.dispatch.inline import InlineDispatcher
from taskmgr.scheduling.loop import SchedulerLoop
from taskmgr.scheduling.maintenance import Maintenance
from taskmgr.scheduling.planner import Planner
from taskmgr.scheduling.sync import add_new_job
from taskmgr.storage.base import Claimed, ExecutionFilter, Outcome, Storage
from taskmgr.storage.memory import MemoryStorage
from taskmgr.testing import FakeClock

LOOKAHEAD = 0.05
EVERY = 60


class Recorder(Dispatcher):
    """Records what it was handed; never runs anything."""

    def __init__(self, *, failing_prepare: bool = False) -> None:
        self.dispatched: list[Claimed] = []
        self.prepared: list[Claimed] = []
        self.failing_prepare = failing_prepare
        self.handed = threading.Event()

    def start(self, context: DispatchContext) -> None: ...

    def prepare(self, claimed: Sequence[Claimed]) -> None:
        self.prepared.extend(claimed)
        if self.failing_prepare:
            raise RuntimeError("the database went away")

    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        self.dispatched.extend(claimed)
        self.handed.set()

    def capacity(self) -> int:
        return 100

    def shutdown(self, *, wait: bool = True) -> None: ...


class Vitals:
    """A stand-in for the instance's liveness: fresh or stale, and what a heartbeat
    made on the spot would prove."""

    def __init__(self, *, fresh: bool = True, confirmed: bool = True) -> None:
        self.fresh = fresh
        self.confirmed = confirmed
        self.confirms = 0

    def alive(self) -> bool:
        return self.fresh

    def epoch(self) -> int:
        return 7

    def confirm(self, epoch: int) -> bool:
        assert epoch == 7
        self.confirms += 1
        return self.confirmed


def make_job(storage: Storage, clock: FakeClock, key: str = "k", **options: object) -> Job:
    return add_new_job(
        storage,
        JobDefinition(key=key, func="f", trigger=Interval(EVERY), **options),  # type: ignore[arg-type]
        source=JobSource.API,
        fingerprint=None,
        now=clock.now(),
    )


def make_loop(
    storage: Storage,
    clock: FakeClock,
    dispatcher: Dispatcher,
    *,
    owner: str = "me",
    lookahead: float = LOOKAHEAD,
    vitals: Vitals | None = None,
    reported: list[Outcome] | None = None,
) -> SchedulerLoop:
    return SchedulerLoop(
        storage,
        dispatcher,
        Planner(owner, {"f"}),
        clock,
        owner=owner,
        batch_size=10,
        poll_interval=1,
        lookahead=lookahead,
        may_claim=vitals.alive if vitals is not None else None,
        vitals=vitals,
        report=(reported if reported is not None else []).append,
    )


def rows(storage: Storage, key: str = "k") -> list[tuple[object, ExecutionStatus]]:
    page = storage.list_executions(ExecutionFilter(job_key=key), limit=100)
    return [(e.scheduled_for, e.status) for e in page]


def test_a_slot_is_claimed_ahead_and_started_at_its_time_not_before() -> None:
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock)
    slot = job.next_run_at
    assert slot is not None
    loop = make_loop(storage, clock, dispatcher)

    clock.set(slot - timedelta(seconds=LOOKAHEAD + 0.01))  # just beyond the look-ahead
    assert loop.tick() == []
    assert rows(storage) == []

    clock.set(slot - timedelta(seconds=0.03))  # within it: claimed now, started later
    [claimed] = loop.tick()
    assert claimed.execution.scheduled_for == slot
    assert rows(storage) == [(slot, ExecutionStatus.RUNNING)]
    assert storage.get_job("k").next_run_at == slot + timedelta(seconds=EVERY)
    assert dispatcher.dispatched == []
    assert loop.armed() == 1

    clock.advance(0.029)  # a millisecond early: still not started
    assert loop.fire_due() == 0
    assert dispatcher.dispatched == []

    clock.advance(0.001)
    assert loop.fire_due() == 1
    assert [c.execution.id for c in dispatcher.dispatched] == [claimed.execution.id]
    assert loop.armed() == 0
    assert loop.fire_due() == 0  # once
    assert len(dispatcher.dispatched) == 1


def test_a_run_claimed_ahead_is_prepared_at_its_claim_and_one_due_now_is_not() -> None:
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    late = make_job(storage, clock, "late")
    clock.advance(0.01)
    early = make_job(storage, clock, "early")
    assert late.next_run_at is not None and early.next_run_at is not None
    loop = make_loop(storage, clock, dispatcher)
    clock.set(late.next_run_at + timedelta(seconds=0.005))  # "early" is 5 ms ahead
    claimed = loop.tick()
    assert sorted(c.job.key for c in claimed) == ["early", "late"]
    assert [c.job.key for c in dispatcher.prepared] == ["early"]  # before its slot
    assert [c.job.key for c in dispatcher.dispatched] == ["late"]  # due: dispatched at once
    clock.set(early.next_run_at)
    assert loop.fire_due() == 1
    assert [c.job.key for c in dispatcher.dispatched] == ["late", "early"]
    assert [c.job.key for c in dispatcher.prepared] == ["early"]


def test_a_failed_prepare_leaves_the_run_to_start_at_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, storage = FakeClock(), MemoryStorage()
    dispatcher = Recorder(failing_prepare=True)
    job = make_job(storage, clock)
    assert job.next_run_at is not None
    loop = make_loop(storage, clock, dispatcher)
    clock.set(job.next_run_at - timedelta(seconds=0.02))
    [claimed] = loop.tick()
    assert "preparing 1 run(s) claimed ahead failed" in caplog.text
    clock.set(job.next_run_at)
    assert loop.fire_due() == 1
    assert [c.execution.id for c in dispatcher.dispatched] == [claimed.execution.id]


def test_a_slot_claimed_ahead_is_one_row_claimed_once_across_instances() -> None:
    clock, storage = FakeClock(), MemoryStorage()
    job = make_job(storage, clock)
    assert job.next_run_at is not None
    first, second = Recorder(), Recorder()
    a = make_loop(storage, clock, first, owner="a")
    b = make_loop(storage, clock, second, owner="b")

    clock.set(job.next_run_at - timedelta(seconds=0.02))
    claimed = a.tick() + b.tick()
    clock.set(job.next_run_at)
    a.fire_due()
    b.fire_due()
    clock.advance(0.04)  # b's own look-ahead sees nothing of this slot either
    assert b.tick() == []
    assert len(claimed) == 1
    assert len(first.dispatched) + len(second.dispatched) == 1
    assert rows(storage) == [(job.next_run_at, ExecutionStatus.RUNNING)]


def test_without_a_look_ahead_nothing_is_claimed_before_its_time() -> None:
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock)
    assert job.next_run_at is not None
    loop = make_loop(storage, clock, dispatcher, lookahead=0.0)
    clock.set(job.next_run_at - timedelta(seconds=0.001))
    assert loop.tick() == []
    clock.set(job.next_run_at)
    [claimed] = loop.tick()
    assert dispatcher.dispatched == [claimed]  # dispatched at once, as it is due


def test_misfire_grace_is_judged_at_the_actual_start() -> None:
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock, misfire_grace_time=0.5)
    assert job.next_run_at is not None
    reported: list[Outcome] = []
    loop = make_loop(storage, clock, dispatcher, reported=reported)
    clock.set(job.next_run_at - timedelta(seconds=0.02))
    [claimed] = loop.tick()

    clock.set(job.next_run_at + timedelta(seconds=0.6))  # the timer could not fire in time
    assert loop.fire_due() == 0
    assert dispatcher.dispatched == []
    [outcome] = reported
    assert outcome.execution_id == claimed.execution.id
    assert outcome.status is ExecutionStatus.MISSED
    assert outcome.started_at is None
    assert "0.600s late" in (outcome.error_message or "")
    assert "misfire grace time of 0.5s" in (outcome.error_message or "")


def test_a_late_start_within_the_grace_time_runs() -> None:
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock, misfire_grace_time=0.5)
    assert job.next_run_at is not None
    loop = make_loop(storage, clock, dispatcher)
    clock.set(job.next_run_at - timedelta(seconds=0.02))
    loop.tick()
    clock.set(job.next_run_at + timedelta(seconds=0.4))
    assert loop.fire_due() == 1
    assert len(dispatcher.dispatched) == 1


def test_a_slot_whose_job_is_still_running_is_not_claimed_ahead() -> None:
    """Claimed ahead, the slot would count the run before it as still active and be
    skipped even when that run ends before the slot's time. It is left for the claim
    at its time, which judges the overlap as it always did."""
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock, max_instances=1)
    assert job.next_run_at is not None
    reported: list[Outcome] = []
    loop = make_loop(storage, clock, dispatcher, reported=reported)
    clock.set(job.next_run_at)
    [first] = loop.tick()  # due now: dispatched at once
    assert dispatcher.dispatched == [first]

    following = job.next_run_at + timedelta(seconds=EVERY)
    clock.set(following - timedelta(seconds=0.02))  # the first run is still running
    assert loop.tick() == []
    assert loop.armed() == 0
    assert [status for _, status in rows(storage)] == [ExecutionStatus.RUNNING]

    storage.record_outcomes(
        [
            Outcome(
                execution_id=first.execution.id,
                owner="me",
                status=ExecutionStatus.SUCCESS,
                started_at=clock.now(),
                completed_at=clock.now(),
            )
        ]
    )
    clock.set(following)  # it ended before the slot's time: the slot runs
    [second] = loop.tick()
    assert second.execution.scheduled_for == following
    assert dispatcher.dispatched == [first, second]


def test_an_armed_run_whose_instance_froze_is_dispatched_if_it_is_still_alive() -> None:
    """The heartbeat thread was slow (a loaded process): the instance's last beat looks
    stale, but a heartbeat made on the spot proves its row still alive, so it still
    owns its claimed runs and starts them."""
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock)
    assert job.next_run_at is not None
    vitals = Vitals()
    reported: list[Outcome] = []
    loop = make_loop(storage, clock, dispatcher, vitals=vitals, reported=reported)
    clock.set(job.next_run_at - timedelta(seconds=0.02))
    [claimed] = loop.tick()
    vitals.fresh = False
    clock.set(job.next_run_at)
    assert loop.fire_due() == 1
    assert dispatcher.dispatched == [claimed]
    assert vitals.confirms == 1
    assert reported == []


def test_an_armed_run_is_given_up_when_the_instance_is_truly_no_longer_alive() -> None:
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock)
    assert job.next_run_at is not None
    vitals = Vitals(confirmed=False)
    reported: list[Outcome] = []
    loop = make_loop(storage, clock, dispatcher, vitals=vitals, reported=reported)
    clock.set(job.next_run_at - timedelta(seconds=0.02))
    [claimed] = loop.tick()
    vitals.fresh = False
    clock.set(job.next_run_at)
    assert loop.fire_due() == 0
    assert dispatcher.dispatched == []
    [outcome] = reported
    assert outcome.execution_id == claimed.execution.id
    assert outcome.status is ExecutionStatus.CANCELLED


def test_a_run_claimed_while_the_heartbeat_thread_lagged_is_dispatched() -> None:
    """Under load the heartbeat thread runs late and the liveness check right after a
    claim says stale: the loop proves it alive with a heartbeat of its own instead of
    giving the runs up (they used to end ``cancelled``, never run)."""
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock)
    assert job.next_run_at is not None
    answers = iter([True, False])  # fresh before the claim, stale right after it
    vitals = Vitals()
    reported: list[Outcome] = []
    loop = SchedulerLoop(
        storage,
        dispatcher,
        Planner("me", {"f"}),
        clock,
        owner="me",
        batch_size=10,
        poll_interval=1,
        may_claim=lambda: next(answers),
        vitals=vitals,
        report=reported.append,
    )
    clock.set(job.next_run_at)
    [claimed] = loop.tick()
    assert dispatcher.dispatched == [claimed]
    assert reported == []
    assert vitals.confirms == 1


def _instance(storage: Storage, clock: FakeClock, instance_id: str) -> None:
    now = clock.now()
    storage.register_instance(
        Instance(
            id=instance_id,
            hostname="h",
            pid=1,
            mode="embedded",
            status=InstanceStatus.RUNNING,
            started_at=now,
            last_heartbeat=now,
        )
    )


def _maintenance(storage: Storage, clock: FakeClock, registered: list[int]) -> Maintenance:
    def register() -> None:
        registered.append(1)
        _instance(storage, clock, "me")

    return Maintenance(
        storage,
        clock,
        liveness=Liveness(heartbeat_interval=1, heartbeat_timeout=3, sweep_interval=1),
        instance_id="me",
        register=register,
    )


def test_confirming_liveness_heartbeats_on_the_spot() -> None:
    clock, storage = FakeClock(), MemoryStorage()
    _instance(storage, clock, "me")
    registered: list[int] = []
    maintenance = _maintenance(storage, clock, registered)
    epoch = maintenance.epoch()
    clock.advance(10)
    assert maintenance.confirm(epoch)  # its row is still running: it is alive
    [me] = storage.list_instances()
    assert me.last_heartbeat == clock.now()
    assert registered == []


def test_an_instance_declared_dead_since_its_claim_is_not_confirmed() -> None:
    """Declared dead between the claim and the start, its runs were marked ``lost`` (and
    perhaps retried elsewhere): even once it has registered again, runs claimed before
    that are not its own any more."""
    clock, storage = FakeClock(), MemoryStorage()
    _instance(storage, clock, "me")
    registered: list[int] = []
    maintenance = _maintenance(storage, clock, registered)
    epoch = maintenance.epoch()
    clock.advance(10)
    storage.reap(heartbeat_before=clock.now() - timedelta(seconds=3), now=clock.now())
    assert not maintenance.confirm(epoch)
    assert registered == [1]  # it registered again, under a new epoch
    assert not maintenance.confirm(epoch)
    assert maintenance.confirm(maintenance.epoch())


def test_confirming_fails_closed_when_the_database_cannot_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, storage = FakeClock(), MemoryStorage()
    _instance(storage, clock, "me")
    maintenance = _maintenance(storage, clock, [])

    def down(*args: object, **kwargs: object) -> bool:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(storage, "heartbeat", down)
    assert not maintenance.confirm(maintenance.epoch())


def test_stopping_starts_the_armed_runs_whose_time_came_and_gives_up_the_others() -> None:
    """Stopping never leaves a claimed run ``running`` with nobody to start it: the runs
    whose time has come are dispatched, the others (time stands still on a FakeClock,
    so it never comes) end ``cancelled`` with the reason."""
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    early = make_job(storage, clock, "early")
    assert early.next_run_at is not None
    clock.advance(0.03)
    late = make_job(storage, clock, "late")
    assert late.next_run_at is not None
    reported: list[Outcome] = []
    loop = make_loop(storage, clock, dispatcher, reported=reported)
    clock.set(early.next_run_at - timedelta(seconds=0.01))
    claimed = loop.tick()
    assert len(claimed) == 2
    clock.set(early.next_run_at)
    loop.start()
    assert dispatcher.handed.wait(10)  # the timer thread started the first one
    loop.stop()
    assert [c.execution.job_key for c in dispatcher.dispatched] == ["early"]
    [outcome] = reported
    assert outcome.status is ExecutionStatus.CANCELLED
    assert "stopped before" in (outcome.error_message or "")
    assert loop.armed() == 0


def test_the_timer_thread_fires_when_the_clock_reaches_the_slot() -> None:
    clock, storage, dispatcher = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock)
    assert job.next_run_at is not None
    loop = make_loop(storage, clock, dispatcher)
    clock.set(job.next_run_at - timedelta(seconds=0.02))
    loop.start()
    try:
        loop.wake()
        # the loop thread claims it ahead; the timer starts it once the clock says so
        clock.set(job.next_run_at)
        assert dispatcher.handed.wait(10)
    finally:
        loop.stop()
    [claimed] = dispatcher.dispatched
    assert claimed.execution.scheduled_for == job.next_run_at


@pytest.mark.parametrize("is_async", [False, True])
def test_a_run_that_waited_for_a_worker_beyond_its_grace_time_ends_missed(
    is_async: bool,
) -> None:
    """A saturated process: the run was claimed in time but reached a worker thread
    too late. It does not start late; it ends ``missed`` with the reason."""
    clock, storage, recorder = FakeClock(), MemoryStorage(), Recorder()
    job = make_job(storage, clock, misfire_grace_time=1)
    assert job.next_run_at is not None
    loop = make_loop(storage, clock, recorder, lookahead=0.0)
    clock.set(job.next_run_at)
    [claimed] = loop.tick()
    clock.advance(1.5)  # waiting in the pool's queue meanwhile

    calls: list[str] = []
    reported: list[Outcome] = []
    done = threading.Event()

    def work() -> None:
        calls.append("ran")

    async def async_work() -> None:
        calls.append("ran")

    def report(outcome: Outcome) -> None:
        reported.append(outcome)
        done.set()

    dispatcher = InlineDispatcher(1)
    dispatcher.start(
        DispatchContext(
            owner="me",
            clock=clock,
            resolve=lambda name: async_work if is_async else work,
            report=report,
        )
    )
    try:
        dispatcher.dispatch([claimed])
        assert done.wait(10)
    finally:
        dispatcher.shutdown()
    assert calls == []
    [outcome] = reported
    assert outcome.status is ExecutionStatus.MISSED
    assert outcome.error_message == ("started 1.500s late, beyond the misfire grace time of 1s")


def test_manual_runs_have_no_grace_time_to_miss() -> None:
    """A run started by hand (or a retry) is not a slot: however long it waited, it
    starts."""
    clock, storage = FakeClock(), MemoryStorage()
    job = make_job(storage, clock, misfire_grace_time=1)
    from taskmgr.execution.run import ExecutionRun
    from taskmgr.storage.base import NewExecution

    execution = storage.add_execution(
        NewExecution(
            id="manual-1",
            job_id=job.id,
            job_key=job.key,
            scheduled_for=clock.now(),
            attempt=1,
            trigger="manual",  # type: ignore[arg-type]
            status=ExecutionStatus.RUNNING,
            due_at=clock.now(),
            created_at=clock.now(),
            owner="me",
            dispatched_at=clock.now(),
        )
    )
    clock.advance(60)
    run = ExecutionRun(Claimed(execution, job), "me", clock)
    assert run.too_late(clock.now()) is None
