"""Dispatch per job: a service has a default dispatcher and others by name; each job
may choose one (``dispatch=``), so moving one job touches only that job. A name the
service does not have is refused before anything is stored, and a full dispatcher
holds back only the jobs that run on it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from taskmgr import (
    Dispatcher,
    ExecutionStatus,
    InlineDispatcher,
    InvalidInputError,
    InvalidPolicyError,
    JobSource,
    JobState,
    UnknownDispatcherError,
    scheduled_job,
    task,
)
from taskmgr.dispatch.base import DispatchContext
from taskmgr.execution.run import ExecutionRun
from taskmgr.storage import MemoryStorage
from taskmgr.storage.base import Claimed
from taskmgr.testing import FakeClock, make_test_service

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def tick() -> str:
    return "tick"


def work(n: int) -> int:
    return n


@scheduled_job("declared.gpu", interval=60, dispatch="gpu")
def on_a_missing_dispatcher() -> None: ...


@task("tasks.other", dispatch="other")
def deferred_elsewhere(n: int) -> int:
    return n


class Recorder(InlineDispatcher):
    """Runs jobs in this process, remembering which job keys it was given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.keys: list[str] = []

    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        self.keys.extend(item.job.key for item in claimed)
        super().dispatch(claimed)


class Fixed(Dispatcher):
    """Takes at most ``room`` executions and ends each one at once (success)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.keys: list[str] = []
        self._context: DispatchContext | None = None

    def start(self, context: DispatchContext) -> None:
        self._context = context

    def capacity(self) -> int:
        return self.room

    def dispatch(self, claimed: Sequence[Claimed]) -> None:
        assert self._context is not None
        assert len(claimed) <= self.room, "claimed beyond this dispatcher's capacity"
        for item in claimed:
            self.keys.append(item.job.key)
            run = ExecutionRun(item, self._context.owner, self._context.clock)
            self._context.report(run.succeeded(None))

    def shutdown(self, *, wait: bool = True) -> None:
        return None


def test_each_job_runs_on_the_dispatcher_it_chooses_and_moving_one_touches_only_it() -> None:
    clock = FakeClock(START)
    default, other = Recorder(), Recorder()
    service = make_test_service(
        clock=clock, dispatcher=default, dispatchers={"other": other}, poll_interval=0.05
    )
    with service:
        service.create_job("stays", tick, interval=60)
        service.create_job("moves", tick, interval=60)
        service.create_job("away", tick, interval=60, dispatch="other")
        service.create_job("older.form", tick, interval=60, queue="inline")
        clock.advance(timedelta(seconds=60))
        assert len(service.run_due()) == 4
        assert sorted(default.keys) == ["moves", "older.form", "stays"]
        assert other.keys == ["away"]

        moved = service.update_job("moves", dispatch="other")  # this job only
        assert moved.dispatch == "other" and service.get_job("stays").dispatch is None
        default.keys.clear()
        other.keys.clear()
        clock.advance(timedelta(seconds=60))
        ended = service.run_due()
        assert {e.status for e in ended} == {ExecutionStatus.SUCCESS}
        assert sorted(default.keys) == ["older.form", "stays"]
        assert sorted(other.keys) == ["away", "moves"]

        assert service.update_job("moves", dispatch=None).dispatch is None  # the default again
        assert service.dispatcher is default
        assert dict(service.dispatchers) == {"inline": default, "other": other}


def test_an_unknown_dispatcher_is_refused_and_nothing_is_stored() -> None:
    service = make_test_service(clock=FakeClock(START))
    with service:
        with pytest.raises(UnknownDispatcherError, match="'gpu'") as refused:
            service.create_job("gpu.job", tick, interval=60, dispatch="gpu")
        assert refused.value.field == "dispatch"
        assert isinstance(refused.value, InvalidInputError)
        assert service.list_jobs() == []

        service.create_job("job", tick, interval=60)
        with pytest.raises(UnknownDispatcherError, match="inline"):  # names what there is
            service.update_job("job", dispatch="gpu")
        assert service.get_job("job").dispatch is None and service.get_job("job").version == 1

        with pytest.raises(UnknownDispatcherError, match=r"declared\.gpu"):
            service.register(on_a_missing_dispatcher)
        assert "declared.gpu" not in {d.key for d in service.registry.definitions()}
    with pytest.raises(UnknownDispatcherError, match=r"declared\.gpu"):  # declared in code
        make_test_service([on_a_missing_dispatcher])

    with pytest.raises(InvalidPolicyError, match="dispatch"):  # not a name at all
        scheduled_job(interval=60, dispatch="two words")(tick)
    with pytest.raises(InvalidPolicyError, match="older form"):  # two places to run
        scheduled_job(interval=60, queue="inline", dispatch="celery")(tick)


def test_a_declared_task_chooses_its_dispatcher_and_is_deferred_there() -> None:
    other = Recorder()
    with make_test_service(
        [deferred_elsewhere], clock=FakeClock(START), dispatchers={"other": other}
    ) as service:
        stored = service.get_job("tasks.other")
        assert (stored.dispatch, stored.source) == ("other", JobSource.CODE)
        service.defer(deferred_elsewhere, n=3)
        (ended,) = service.run_due()
        assert (ended.status, ended.result_summary) == (ExecutionStatus.SUCCESS, 3)
        assert other.keys == ["tasks.other"]


def test_a_full_dispatcher_holds_back_only_its_own_jobs() -> None:
    clock = FakeClock(START)
    full, free = Fixed(room=0), Fixed(room=10)
    service = make_test_service(
        clock=clock, dispatcher="free", dispatchers={"full": full, "free": free}
    )
    with service:
        for n in range(3):
            service.create_job(f"free.{n}", tick, interval=60)
            service.create_job(f"full.{n}", tick, interval=60, dispatch="full")
        service.create_job("full.task", work, dispatch="full")
        service.defer("full.task", n=1)
        clock.advance(timedelta(seconds=60))
        claimed = service.run_due()
        assert sorted(e.job_key for e in claimed) == ["free.0", "free.1", "free.2"]
        held = [service.get_job(f"full.{n}") for n in range(3)]
        assert {job.next_run_at for job in held} == {START + timedelta(seconds=60)}  # still due
        assert [e.status for e in service.list_executions("full.task").items] == [
            ExecutionStatus.PENDING
        ]

        full.room = 2  # room for two: two of its four due runs start, the rest wait
        assert len(service.run_due()) == 2
        full.room = 10
        assert len(service.run_due()) == 2
        assert sorted(full.keys) == ["full.0", "full.1", "full.2", "full.task"]
        assert sorted(free.keys) == ["free.0", "free.1", "free.2"]


def test_a_job_choosing_a_dispatcher_this_instance_lacks_fails_visibly() -> None:
    """A job changed by another process (or a dispatcher removed from the code): its
    runs end ``failed`` with the reason, never silently."""
    storage = MemoryStorage()
    clock = FakeClock(START)
    elsewhere = make_test_service(storage=storage, clock=clock, dispatchers={"gpu": Fixed(5)})
    elsewhere.register(tick)
    elsewhere.create_job("gpu.job", tick, interval=60, dispatch="gpu", max_retries=0)
    with make_test_service(storage=storage, clock=clock) as service:
        service.register(tick)
        clock.advance(timedelta(seconds=60))
        (ended,) = service.run_due()
    assert ended.status is ExecutionStatus.FAILED
    assert ended.error_type is not None and ended.error_type.endswith("UnknownDispatcherError")
    assert "chooses the dispatcher 'gpu'" in (ended.error_message or "")
    assert service.get_job("gpu.job").state is JobState.ACTIVE


def test_the_service_checks_its_dispatchers() -> None:
    storage = MemoryStorage()
    with pytest.raises(UnknownDispatcherError, match="names none"):
        make_test_service(storage=storage, dispatcher="celery")
    with pytest.raises(InvalidInputError, match="name"):
        make_test_service(storage=storage, dispatchers={"two words": InlineDispatcher()})
    with pytest.raises(InvalidInputError, match="must be a Dispatcher"):
        make_test_service(storage=storage, dispatchers={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="like another one"):
        make_test_service(storage=storage, dispatchers={"inline": InlineDispatcher()})

    one = InlineDispatcher()  # named by the name it was given, made the default by it
    service = make_test_service(storage=storage, dispatcher="pool", dispatchers={"pool": one})
    assert service.dispatcher is one and set(service.dispatchers) == {"pool", "inline"}
    assert make_test_service(storage=storage, dispatcher="inline").dispatcher is not None
