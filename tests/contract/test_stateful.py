"""The memory and SQL backends give the same answers to the same calls.

A hypothesis state machine drives a ``MemoryStorage`` and a SQLite
``SQLAlchemyStorage`` with the same random operations (valid ones and some invalid
ones), at the same instants of an injected clock that the rules move forward, and
compares every answer: returned models, counts, flags, and the type of every error.
After each step it also compares the whole stored state (jobs, history, instances,
summary, queues, next due time), so a divergence is caught at the step that caused it.

Ids are made to agree: execution ids come from the test and from the real
:class:`~taskmgr.scheduling.planner.Planner`, whose ``new_id`` is seeded per claim;
job ids are assigned by each backend and mapped (memory id <-> SQL id) when a job is
added, so answers are compared in memory ids.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from taskmgr.core.audit import AuditAction, AuditSource
from taskmgr.core.models import (
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    Instance,
    InstanceStatus,
    Job,
    JobQueue,
    JobSource,
    JobState,
    OverlapPolicy,
)
from taskmgr.core.triggers import Cron, Date, Interval, Manual
from taskmgr.exceptions import TaskmgrError
from taskmgr.scheduling.planner import Planner
from taskmgr.storage import MemoryStorage, Storage
from taskmgr.storage.base import (
    AuditFilter,
    AuditRecord,
    ClaimBatch,
    Claimed,
    ClaimPlan,
    ExecutionFilter,
    HistorySummary,
    JobAdvance,
    NewExecution,
    Outcome,
    PendingDecision,
)
from taskmgr.storage.sqlalchemy import SQLAlchemyStorage

from .helpers import T0, definition

FUNCTIONS = frozenset({"tests.work.a", "tests.work.b"})
# Keys and ids whose order differs between case-insensitive and code-point collations.
KEYS = ["a", "B", "a-b", "a.b", "a_b", "Z9", "job:1"]
OWNERS = ["i1", "i2", "I3", "w-1"]
#: A key, mostly one of the jobs every run starts with ("t": a task bound per value).
KEY = st.sampled_from(["a", "B", "a", "B", "t", *KEYS])
#: Groups of runs of a task with a concurrency key (None: written without one).
GROUPS = [None, '"x"', '"y"', "1"]
SECONDS = [0, 1, 15, 29, 30, 31, 59, 60, 61, 90, 600, 3600]
FINAL = [s for s in ExecutionStatus if s.is_final]
#: A job id neither backend ever gives out (the reference of a job that is gone).
NO_JOB = 10_000
#: Statuses of the rows of odd plans, and of their decisions (the last ones refused).
ODD_ROWS: list[Any] = [
    *[ExecutionStatus.RUNNING] * 4,
    ExecutionStatus.PENDING,
    ExecutionStatus.SKIPPED,
    ExecutionStatus.MISSED,
    "running",
    "skipped",
    *[ExecutionStatus.RUNNING] * 4,
    "bogus",
]
ODD_DECISIONS: list[Any] = [
    *[ExecutionStatus.RUNNING] * 4,
    "running",
    ExecutionStatus.CANCELLED,
    "skipped",
    *[ExecutionStatus.RUNNING] * 4,
    ExecutionStatus.CANCELLED,
    *[ExecutionStatus.RUNNING] * 8,
    ExecutionStatus.PENDING,
    "bogus",
]

Side = str  # "memory" or "sql"
Answer = tuple[str, Any]


def mostly(valid: list[Any], invalid: list[Any]) -> st.SearchStrategy[Any]:
    """One of ``valid`` (each drawn about four times as often as an invalid value)."""
    return st.sampled_from(valid * 4 + invalid)


#: Id spaces: executions added by the test, retries, and one per claim (planner ids).
MANUAL, RETRIES, CLAIMS = 1, 2, 1000


def _uuid(space: int, n: int) -> str:
    """A UUID unique to ``(space, n)``, scrambled so that the order of ids is not the
    order they were made in (ties broken by id and by insertion order differ)."""
    return str(uuid.UUID(int=(space << 64) | (n * 0x9E3779B97F4A7C15) % 2**64))


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)


class BackendsAgree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryStorage()
        self.sql = SQLAlchemyStorage("sqlite://")
        self.memory.open()
        self.sql.open()
        self.now = T0
        self.mem_to_sql: dict[int, int] = {}
        self.sql_to_mem: dict[int, int] = {}
        self.ids = itertools.count(1)
        self.claims = itertools.count(1)
        #: What the memory backend stores, refreshed after every step (to pick from).
        self.executions: list[Execution] = []

    def teardown(self) -> None:
        self.sql.close()

    # -- comparing -------------------------------------------------------------------

    def mem_id(self, job_id: int, side: Side) -> Any:
        """The memory id of a job id given by ``side``."""
        return self.sql_to_mem.get(job_id, ("unmapped", job_id)) if side == "sql" else job_id

    def norm(self, value: Any, side: Side) -> Any:
        """A comparable form of an answer, in memory job ids."""

        def job_id(found: int) -> Any:
            return self.mem_id(found, side)

        if isinstance(value, ClaimBatch):
            return (
                "batch",
                value.now,
                self.norm(list(value.due_jobs), side),
                self.norm(list(value.due_pending), side),
                {job_id(k): self.norm(job, side) for k, job in value.jobs.items()},
                {job_id(k): n for k, n in value.active.items()},
                {(job_id(k), v): n for (k, v), n in value.active_groups.items()},
            )
        if isinstance(value, Job):
            return {**value.model_dump(), "id": job_id(value.id)}
        if isinstance(value, Execution | JobQueue):
            return {**value.model_dump(), "job_id": job_id(value.job_id)}
        if isinstance(value, Claimed):
            return ("claimed", self.norm(value.execution, side), self.norm(value.job, side))
        if isinstance(value, Instance):
            return value.model_dump()
        if isinstance(value, HistorySummary):
            return ("summary", dict(value.counts), dict(value.last_success))
        if isinstance(value, list | tuple):
            return [self.norm(item, side) for item in value]
        return value

    def answer(self, call: Callable[[Storage], Any], side: Side) -> Answer:
        storage = self.memory if side == "memory" else self.sql
        try:
            value = call(storage)
        except TaskmgrError as exc:
            error = exc
        else:
            return "ok", value
        # the same error class and the same (non-empty) message on both backends
        assert str(error), f"{type(error).__name__} without a message"
        return "raised", (type(error), str(error))

    def both(self, what: str, call: Callable[[Storage, Side], Any]) -> tuple[Answer, Answer]:
        """Call both backends and assert the same answer; returns both answers."""
        memory = self.answer(lambda s: call(s, "memory"), "memory")
        sql = self.answer(lambda s: call(s, "sql"), "sql")
        mine = (memory[0], self.norm(memory[1], "memory"))
        theirs = (sql[0], self.norm(sql[1], "sql"))
        assert mine == theirs, f"{what}: memory {mine!r} != sql {theirs!r}"
        return memory, sql

    # -- building inputs ---------------------------------------------------------------

    def job_ref(self, key: str, side: Side) -> int:
        """The id a backend knows the job by (``NO_JOB`` when it is gone)."""
        try:
            job = self.memory.get_job(key)
        except TaskmgrError:
            return NO_JOB
        return job.id if side == "memory" else self.mem_to_sql[job.id]

    def on_side(self, job_id: int, side: Side) -> int:
        return self.mem_to_sql.get(job_id, NO_JOB) if side == "sql" else job_id

    def planner(self, owner: str) -> Callable[[], Planner]:
        """A fresh planner per backend, both handing out the same ids for this claim."""
        claim = next(self.claims)

        def make() -> Planner:
            counter = itertools.count()
            return Planner(owner, FUNCTIONS, new_id=lambda: _uuid(CLAIMS + claim, next(counter)))

        return make

    def claim_both(
        self, owner: str, limit: int, make: Callable[[Side], Callable[[ClaimBatch], ClaimPlan]]
    ) -> None:
        """Claim on both backends with ``make(side)`` as the planner, and compare what
        each planner was shown (tie order and active counts included) as well as the
        answers."""
        shown: dict[Side, Any] = {}

        def call(storage: Storage, side: Side) -> list[Claimed]:
            plan = make(side)

            def seen(batch: ClaimBatch) -> ClaimPlan:
                shown[side] = self.norm(batch, side)
                return plan(batch)

            return storage.claim(now=self.now, owner=owner, limit=limit, planner=seen)

        self.both("claim", call)
        assert shown.get("memory") == shown.get("sql"), "the backends showed different batches"

    # -- the clock -------------------------------------------------------------------

    @rule(seconds=st.sampled_from([*SECONDS, 0.000001]))
    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # -- jobs ------------------------------------------------------------------------

    @initialize()
    def some_jobs_and_an_instance(self) -> None:
        options = {"max_instances": 1, "overlap_policy": OverlapPolicy.QUEUE}
        self.add_job("a", "tests.work.a", "every-60", options, JobState.ACTIVE, "code", 0)
        self.add_job("B", "tests.work.b", "cron", {}, JobState.ACTIVE, "api", -60)
        keyed = {**options, "concurrency_key": "c"}
        self.add_job("t", "tests.work.a", "manual", keyed, JobState.ACTIVE, "api", None)
        self.register_instance("i1", InstanceStatus.RUNNING, 0, 0, naive=False)

    @rule(
        key=st.sampled_from(KEYS),
        func=st.sampled_from([*sorted(FUNCTIONS), "tests.work.gone"]),
        trigger=st.sampled_from(["every-60", "every-90", "cron", "date"]),
        options=st.fixed_dictionaries(
            {
                "max_instances": st.sampled_from([1, 2]),
                "overlap_policy": st.sampled_from(list(OverlapPolicy)),
                "misfire_grace_time": st.sampled_from([None, 1.0, 60.0]),
                "coalesce": st.booleans(),
                "max_retries": st.sampled_from([0, 1]),
                "kwargs": st.sampled_from([{}, {"n": 1}, {"nested": {"list": [1, "x", None]}}]),
            }
        ),
        state=mostly([JobState.ACTIVE, JobState.ACTIVE, JobState.PAUSED, "active"], ["bogus"]),
        source=mostly([JobSource.CODE, JobSource.API, "api"], ["bogus"]),
        offset=st.sampled_from([None, -180, -60, -1, 0, 0, 1, 60]),
        naive=mostly([False], [True]),
    )
    def add_job(
        self,
        key: str,
        func: str,
        trigger: str,
        options: dict[str, Any],
        state: Any,
        source: Any,
        offset: int | None,
        naive: bool = False,
    ) -> None:
        spec = {
            "every-60": Interval(timedelta(seconds=60), start=self.now),
            "every-90": Interval(timedelta(seconds=90), start=self.now),
            "cron": Cron("*/2 * * * *"),
            "date": Date(self.now + timedelta(seconds=30)),
            "manual": Manual(),
        }[trigger]
        defined = definition(key, func=func, trigger=spec, **options)
        next_run_at = None if offset is None else self.now + timedelta(seconds=offset)
        now = _naive(self.now) if naive else self.now
        added: dict[Side, int] = {}

        def call(storage: Storage, side: Side) -> Job:
            job = storage.add_job(
                defined,
                source=source,
                state=state,
                next_run_at=next_run_at,
                fingerprint=f"fp-{key}",
                now=now,
            )
            added[side] = job.id
            if side == "sql" and "memory" in added:  # map the ids before comparing
                self.mem_to_sql[added["memory"]] = job.id
                self.sql_to_mem[job.id] = added["memory"]
            return job

        self.both("add_job", call)

    @rule(
        key=KEY,
        change=mostly(
            [
                {"state": JobState.PAUSED},
                {"state": "active"},
                {"next_run_at": 30},
                {"next_run_at": -30},
                {"next_run_at": None},
                {"max_instances": 2},
                {"overlap_policy": "queue"},
                {"overlap_policy": OverlapPolicy.ALLOW},
                {"misfire_grace_time": None},
                {"coalesce": False},
                {"max_retries": 1},
                {"func": "tests.work.gone"},
                {"func": "tests.work.b"},
                {"trigger": {"type": "interval", "every": 30}},
                {"kwargs": {"n": 2}},
                {"source": "api"},
                {"concurrency_key": "c"},  # refused but on "t"
                {"concurrency_key": None},
            ],
            [
                {"state": "bogus"},
                {"next_run_at": "naive"},
                {"max_instances": 0},
                {"overlap_policy": "sometimes"},
                {"trigger": {"type": "never"}},
                {"kwargs": {"pair": (1, 2)}},
                {"description": "nul\x00"},
                {"nope": 1},
                {"key": "renamed"},
            ],
        ),
        version=st.sampled_from(["none", "current", "stale"]),
        audit=st.sampled_from([None, "op", "bad"]),
    )
    def update_job(
        self, key: str, change: dict[str, Any], version: str, audit: str | None = None
    ) -> None:
        changes = dict(change)
        if changes.get("next_run_at") in (30, -30):
            changes["next_run_at"] = self.now + timedelta(seconds=changes["next_run_at"])
        elif changes.get("next_run_at") == "naive":
            changes["next_run_at"] = _naive(self.now)
        if "trigger" in changes and changes["trigger"]["type"] == "interval":
            changes["trigger"] = {**changes["trigger"], "start": self.now.isoformat()}
        try:
            current: int | None = self.memory.get_job(key).version
        except TaskmgrError:
            current = 1
        expected = {"none": None, "current": current, "stale": (current or 0) + 5}[version]
        record = self.audit_record(AuditAction.UPDATE, audit)
        self.both(
            "update_job",
            lambda s, _: s.update_job(
                key, changes, now=self.now, expected_version=expected, audit=record
            ),
        )

    def audit_record(self, action: AuditAction, actor: str | None) -> AuditRecord | None:
        """What a change records in the audit log (``"bad"``: a record refused)."""
        if actor is None:
            return None
        source = "carrier-pigeon" if actor == "bad" else AuditSource.API
        return AuditRecord(action=action, source=source, at=self.now, actor=actor)

    @rule(key=st.sampled_from(KEYS), audit=st.sampled_from([None, "op", "bad"]))
    def delete_job(self, key: str, audit: str | None) -> None:
        record = self.audit_record(AuditAction.DELETE, audit)
        self.both("delete_job", lambda s, _: s.delete_job(key, now=self.now, audit=record))

    @rule(
        key=KEY,
        states=st.lists(mostly([*JobState, "paused"], ["bogus"]), max_size=2),
        source=mostly([None, JobSource.CODE, "api"], ["bogus"]),
        after=st.sampled_from([None, *KEYS]),
        limit=mostly([None, 0, 1, 2], [-1]),
    )
    def read_jobs(
        self, key: str, states: list[Any], source: Any, after: str | None, limit: int | None
    ) -> None:
        self.both("get_job", lambda s, _: s.get_job(key))
        self.both(
            "list_jobs",
            lambda s, _: s.list_jobs(states=states, source=source, after_key=after, limit=limit),
        )

    # -- claims ----------------------------------------------------------------------

    @rule(owner=st.sampled_from(OWNERS), limit=mostly([0, 1, 2, 3, 100, 100], [-1]))
    def claim(self, owner: str, limit: int) -> None:
        make = self.planner(owner)
        self.claim_both(owner, limit, lambda _: make())

    @rule(
        owner=st.sampled_from(OWNERS),
        limit=st.sampled_from([1, 2, 100]),
        choices=st.lists(st.integers(0, 23), min_size=8, max_size=24),
    )
    def claim_odd_plan(self, owner: str, limit: int, choices: list[int]) -> None:
        """A claim whose plan no real planner makes: several advances of one job, stale
        expectations, taken slots and ids, decisions given as values, twice, or
        refused. ``choices`` decide it, consumed in the same order on both sides."""
        claim = next(self.claims)
        stored = [(e.id, e.job_id, e.scheduled_for, e.attempt) for e in self.executions]

        def make(side: Side) -> Callable[[ClaimBatch], ClaimPlan]:
            pick = itertools.cycle(choices).__next__
            ids = itertools.count()

            def new_id() -> str:
                if pick() % 8 == 0 and stored:  # an id already stored
                    return stored[pick() % len(stored)][0]
                return _uuid(CLAIMS + claim, next(ids))

            def plan(batch: ClaimBatch) -> ClaimPlan:
                advances = [
                    self.odd_advance(job, batch.now, side, pick, new_id, stored)
                    for job in batch.due_jobs
                    for _ in range(pick() % 3)
                ]
                decisions = []
                for execution in batch.due_pending:
                    for _ in range(pick() % 3):
                        status = ODD_DECISIONS[pick() % len(ODD_DECISIONS)]
                        message = [None, "", "why"][pick() % 3]
                        decisions.append(PendingDecision(execution.id, status, message))
                orphans = [job.id for job in batch.due_jobs if pick() % 6 == 0]
                return ClaimPlan(advances=advances, pending=decisions, orphan_job_ids=orphans)

            return plan

        self.claim_both(owner, limit, make)

    def odd_advance(
        self,
        job: Job,
        now: datetime,
        side: Side,
        pick: Callable[[], int],
        new_id: Callable[[], str],
        stored: list[tuple[str, int, datetime, int]],
    ) -> JobAdvance:
        assert job.next_run_at is not None
        taken = [(at, attempt) for _, job_id, at, attempt in stored
                 if job_id == self.mem_id(job.id, side)]  # fmt: skip
        rows = []
        for n in range(1 + pick() % 2):
            slot, attempt = job.next_run_at + timedelta(seconds=15 * n), 1
            if pick() % 5 == 0 and taken:
                slot, attempt = taken[pick() % len(taken)]
            status = ODD_ROWS[pick() % len(ODD_ROWS)]
            final = status not in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING, "running")
            rows.append(
                NewExecution(
                    id=rows[-1].id if rows and pick() % 7 == 0 else new_id(),
                    job_id=job.id,
                    job_key=job.key,
                    scheduled_for=slot,
                    attempt=attempt,
                    trigger=ExecutionTrigger.SCHEDULE if pick() % 4 else "catchup",
                    status=status,
                    due_at=slot,
                    created_at=now,
                    kwargs=job.kwargs,
                    queued=status is ExecutionStatus.PENDING,
                    completed_at=now if final else None,
                    error_message="odd" if final else None,
                )
            )
        following = [job.next_run_at + timedelta(seconds=60), None, job.next_run_at]
        return JobAdvance(
            job_id=job.id,
            expected_next_run_at=job.next_run_at - timedelta(seconds=pick() % 5 == 0),
            next_run_at=following[pick() % 3],
            last_run_at=rows[0].scheduled_for if pick() % 2 else None,
            executions=rows,
        )

    # -- executions ----------------------------------------------------------------------

    @rule(
        key=KEY,
        offset=st.sampled_from([-60, 0, 30]),
        attempt=st.sampled_from([1, 2]),
        trigger=mostly([ExecutionTrigger.MANUAL, ExecutionTrigger.RETRY, "manual"], ["bogus"]),
        status=mostly(
            [ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.FAILED], ["bogus"]
        ),
        queued=st.booleans(),
        owner=st.sampled_from(OWNERS),
        max_active=st.sampled_from([None, 0, 1, 2]),
        reuse_id=mostly([False], [True]),
        naive=mostly([False], [True]),
        group=st.sampled_from(GROUPS),
        data=st.data(),
    )
    def add_execution(
        self,
        key: str,
        offset: int,
        attempt: int,
        trigger: Any,
        status: Any,
        queued: bool,
        owner: str,
        max_active: int | None,
        reuse_id: bool,
        naive: bool,
        group: str | None,
        data: st.DataObject,
    ) -> None:
        if reuse_id and self.executions:
            execution_id = data.draw(st.sampled_from([e.id for e in self.executions]))
        else:
            execution_id = _uuid(MANUAL, next(self.ids))
        scheduled_for = self.now + timedelta(seconds=offset)
        running = status is ExecutionStatus.RUNNING
        finished = status is ExecutionStatus.FAILED

        def call(storage: Storage, side: Side) -> Execution:
            new = NewExecution(
                id=execution_id,
                job_id=self.job_ref(key, side),
                job_key=key,
                scheduled_for=scheduled_for,
                attempt=attempt,
                trigger=trigger,
                status=status,
                due_at=_naive(scheduled_for) if naive else scheduled_for,
                created_at=self.now,
                kwargs={"k": key},
                queued=queued and not running,
                owner=owner if running else None,
                dispatched_at=self.now if running else None,
                completed_at=self.now if finished else None,
                error_message="" if finished else None,
                concurrency_value=group,
            )
            return storage.add_execution(new, max_active=max_active)

        self.both("add_execution", call)

    @rule(queued=st.booleans(), delay=st.sampled_from([0, 0, 1]), group=st.sampled_from(GROUPS))
    def trigger_every_job(self, queued: bool, delay: int, group: str | None) -> None:
        """A manual run of every job at one instant (many rows tie on ``due_at``), all
        in one group (which only the jobs with a concurrency key count by)."""
        moment = self.now + timedelta(seconds=delay)
        for job in self.memory.list_jobs():
            execution_id = _uuid(MANUAL, next(self.ids))
            new = {
                side: NewExecution(
                    id=execution_id,
                    job_id=self.on_side(job.id, side),
                    job_key=job.key,
                    scheduled_for=moment,
                    attempt=1,
                    trigger=ExecutionTrigger.MANUAL,
                    status=ExecutionStatus.PENDING,
                    due_at=moment,
                    created_at=self.now,
                    queued=queued,
                    concurrency_value=group,
                )
                for side in ("memory", "sql")
            }
            self.both("add_execution", lambda s, side, new=new: s.add_execution(new[side]))

    @rule(status=st.sampled_from(FINAL), retry=st.booleans())
    def end_every_run(self, status: ExecutionStatus, retry: bool) -> None:
        """End every running execution at one instant (many rows tie on
        ``completed_at``, and their retries on ``due_at``)."""
        running = [e for e in self.executions if e.status is ExecutionStatus.RUNNING]
        retry_ids = {e.id: _uuid(RETRIES, next(self.ids)) for e in running}

        def call(storage: Storage, side: Side) -> list[bool]:
            return storage.record_outcomes(
                [
                    Outcome(
                        execution_id=e.id,
                        owner=e.owner or "",
                        status=status,
                        started_at=e.dispatched_at,
                        completed_at=self.now,
                        error_message=None if status is ExecutionStatus.SUCCESS else "ended",
                        retry=NewExecution(
                            id=retry_ids[e.id],
                            job_id=self.on_side(e.job_id, side),
                            job_key=e.job_key,
                            scheduled_for=e.scheduled_for,
                            attempt=e.attempt + 1,
                            trigger=ExecutionTrigger.RETRY,
                            status=ExecutionStatus.PENDING,
                            due_at=self.now + timedelta(seconds=1),
                            created_at=self.now,
                        )
                        if retry
                        else None,
                    )
                    for e in running
                ]
            )

        self.both("record_outcomes", call)

    def pick(self, data: st.DataObject, *, running: bool = False) -> Execution | None:
        candidates = [
            e for e in self.executions if not running or e.status is ExecutionStatus.RUNNING
        ]
        return data.draw(st.sampled_from(candidates)) if candidates else None

    @rule(data=st.data(), count=st.integers(min_value=1, max_value=3))
    def record_outcomes(self, data: st.DataObject, count: int) -> None:
        chosen: list[dict[str, Any]] = []
        for _ in range(count):
            target = self.pick(data, running=data.draw(mostly([True], [False])))
            if target is None:
                return
            chosen.append(
                {
                    "target": target,
                    "owner": data.draw(mostly([target.owner or "nobody"], ["other"])),
                    "status": data.draw(
                        mostly([*FINAL, "success"], [ExecutionStatus.RUNNING, "bogus"])
                    ),
                    "retry": data.draw(st.booleans()),
                    "message": data.draw(st.sampled_from([None, "", "boom"])),
                    "summary": data.draw(st.sampled_from([None, {"rows": 3}, [1, "two"]])),
                    "naive": data.draw(mostly([False, False], [True])),
                    "retry_id": _uuid(RETRIES, next(self.ids)),
                }
            )

        def call(storage: Storage, side: Side) -> list[bool]:
            outcomes = []
            for c in chosen:
                target: Execution = c["target"]
                retry = None
                if c["retry"]:
                    retry = NewExecution(
                        id=c["retry_id"],
                        job_id=self.on_side(target.job_id, side),
                        job_key=target.job_key,
                        scheduled_for=target.scheduled_for,
                        attempt=target.attempt + 1,
                        trigger=ExecutionTrigger.RETRY,
                        status=ExecutionStatus.PENDING,
                        due_at=self.now + timedelta(seconds=1),
                        created_at=self.now,
                    )
                completed_at = _naive(self.now) if c["naive"] else self.now
                outcomes.append(
                    Outcome(
                        execution_id=target.id,
                        owner=c["owner"],
                        status=c["status"],
                        started_at=self.now - timedelta(seconds=1),
                        completed_at=completed_at,
                        duration_ms=1000,
                        error_type="ValueError" if c["message"] is not None else None,
                        error_message=c["message"],
                        result_summary=c["summary"],
                        retry=retry,
                    )
                )
            return storage.record_outcomes(outcomes)

        self.both("record_outcomes", call)

    @rule(
        data=st.data(),
        count=st.integers(min_value=1, max_value=3),
        right_owner=mostly([True], [False]),
        task=st.sampled_from(["task-1", "task-2", ""]),
    )
    def assign_task_ids(
        self, data: st.DataObject, count: int, right_owner: bool, task: str
    ) -> None:
        targets = [
            self.pick(data, running=data.draw(mostly([True], [False]))) for _ in range(count)
        ]
        chosen = {t.id: t for t in targets if t is not None}
        if not chosen:
            return
        owner = (next(iter(chosen.values())).owner or "nobody") if right_owner else "other"
        ids = dict.fromkeys(chosen, task)
        self.both("assign_task_ids", lambda s, _: s.assign_task_ids(ids, owner=owner))

    @rule(
        data=st.data(),
        right_owner=mostly([True], [False]),
        right_old=mostly([True], [False]),
        new=mostly(["task-2", "task-3"], [""]),
    )
    def replace_task_ids(
        self, data: st.DataObject, right_owner: bool, right_old: bool, new: str
    ) -> None:
        target = self.pick(data, running=data.draw(mostly([True], [False])))
        if target is None:
            return
        owner = (target.owner or "nobody") if right_owner else "other"
        old = (target.celery_task_id or "task-1") if right_old else "task-9"
        changes = {target.id: (old, new)}
        self.both("replace_task_ids", lambda s, _: s.replace_task_ids(changes, owner=owner))

    @rule(
        data=st.data(),
        right_owner=mostly([True], [False]),
        right_attempt=mostly([True], [False]),
        to_owner=st.sampled_from(OWNERS),
        task=mostly(["stored"], ["task-1", "task-2", None]),
    )
    def take_over(
        self,
        data: st.DataObject,
        right_owner: bool,
        right_attempt: bool,
        to_owner: str,
        task: str | None,
    ) -> None:
        target = self.pick(data, running=True)
        if target is None:
            return
        task_id = (target.celery_task_id or "task-1") if task == "stored" else task
        self.both(
            "take_over",
            lambda s, _: s.take_over(
                target.id,
                from_owner=(target.owner or "") if right_owner else "other",
                to_owner=to_owner,
                attempt=target.attempt if right_attempt else target.attempt + 1,
                now=self.now,
                celery_task_id=task_id,  # type: ignore[arg-type]  # None: a wrong call
            ),
        )

    @rule(data=st.data(), right_owner=mostly([True], [False]), delay=st.sampled_from([0, 5, 60]))
    def release(self, data: st.DataObject, right_owner: bool, delay: int) -> None:
        target = self.pick(data, running=data.draw(st.booleans()))
        if target is None:
            return
        owner = (target.owner or "") if right_owner else "other"
        due_at = self.now + timedelta(seconds=delay)
        self.both("release", lambda s, _: s.release(target.id, owner=owner, due_at=due_at))

    @rule(data=st.data(), known=st.booleans())
    def get_execution(self, data: st.DataObject, known: bool) -> None:
        target = self.pick(data) if known else None
        execution_id = target.id if target is not None else _uuid(0, 0)
        self.both("get_execution", lambda s, _: s.get_execution(execution_id))

    @rule(
        data=st.data(),
        key=st.one_of(st.none(), KEY),
        statuses=st.lists(mostly([*ExecutionStatus, "failed"], ["bogus"]), max_size=2),
        since=st.sampled_from([None, -3600, -60, 0]),
        until=st.sampled_from([None, 0, 60]),
        owner=st.sampled_from([None, *OWNERS]),
        limit=mostly([0, 1, 3, 1000], [-1]),
        paged=st.booleans(),
    )
    def list_executions(
        self,
        data: st.DataObject,
        key: str | None,
        statuses: list[Any],
        since: int | None,
        until: int | None,
        owner: str | None,
        limit: int,
        paged: bool,
    ) -> None:
        def at(offset: int | None) -> datetime | None:
            return None if offset is None else self.now + timedelta(seconds=offset)

        filters = ExecutionFilter(
            job_key=key, statuses=statuses, since=at(since), until=at(until), owner=owner
        )
        cursor = self.pick(data) if paged else None
        before = (cursor.created_at, cursor.id) if cursor is not None else None
        self.both(
            "list_executions", lambda s, _: s.list_executions(filters, limit=limit, before=before)
        )

    @rule(
        age=st.sampled_from([-1, 0, 30, 600]),
        limit=st.sampled_from([0, 1, 2, 100, -1]),
        statuses=st.sampled_from(
            [None, [], [ExecutionStatus.SUCCESS], [ExecutionStatus.PENDING, "failed"]]
        ),
    )
    def delete_finished(self, age: int, limit: int, statuses: list[Any] | None) -> None:
        cutoff = self.now - timedelta(seconds=age)
        self.both(
            "delete_finished_executions",
            lambda s, _: s.delete_finished_executions(
                completed_before=cutoff, limit=limit, statuses=statuses
            ),
        )

    # -- instances -----------------------------------------------------------------------

    @rule(
        instance_id=st.sampled_from(OWNERS),
        status=st.sampled_from(list(InstanceStatus)),
        started=st.sampled_from([0, 60]),
        silent=st.sampled_from([0, 10, 20]),
        naive=mostly([False], [True]),
    )
    def register_instance(
        self, instance_id: str, status: InstanceStatus, started: int, silent: int, naive: bool
    ) -> None:
        last = self.now - timedelta(seconds=silent)
        instance = Instance(
            id=instance_id,
            hostname="host",
            pid=1,
            mode="embedded",
            status=status,
            # the same instant for many instances: their order is the id tie-break
            started_at=T0 - timedelta(seconds=started),
            last_heartbeat=_naive(last) if naive else last,
        )
        self.both("register_instance", lambda s, _: s.register_instance(instance))

    @rule(instance_id=st.sampled_from([*OWNERS, "unknown"]))
    def heartbeat(self, instance_id: str) -> None:
        self.both("heartbeat", lambda s, _: s.heartbeat(instance_id, now=self.now))

    @rule(
        instance_id=st.sampled_from([*OWNERS, "unknown"]),
        status=mostly([*InstanceStatus, "running", "stopped"], ["asleep"]),
    )
    def set_instance_status(self, instance_id: str, status: Any) -> None:
        self.both("set_instance_status", lambda s, _: s.set_instance_status(instance_id, status))

    @rule(timeout=st.sampled_from([5, 15]))
    def reap(self, timeout: int) -> None:
        cutoff = self.now - timedelta(seconds=timeout)
        self.both("reap", lambda s, _: s.reap(heartbeat_before=cutoff, now=self.now))

    @rule(age=st.sampled_from([0, 30, 3600]))
    def delete_instances(self, age: int) -> None:
        cutoff = self.now - timedelta(seconds=age)
        self.both("delete_instances", lambda s, _: s.delete_instances(last_heartbeat_before=cutoff))

    # -- the whole state, after every step -----------------------------------------------

    @invariant()
    def same_state(self) -> None:
        self.both("list_jobs()", lambda s, _: s.list_jobs())
        (_, executions), _ = self.both(
            "list_executions()", lambda s, _: s.list_executions(ExecutionFilter(), limit=100_000)
        )
        self.executions = list(executions)
        self.both("list_instances()", lambda s, _: s.list_instances())
        self.both("list_audit()", lambda s, _: s.list_audit(AuditFilter(), limit=100_000))
        self.both("history_summary()", lambda s, _: s.history_summary())
        self.both("job_queues()", lambda s, _: s.job_queues(now=self.now))
        self.both("next_due_at()", lambda s, _: s.next_due_at())


# Deterministic (derandomized, no example database) and bounded: 15-80 s, the longest
# test of the suite; its timeout leaves room for a machine busy with the rest. A failure
# is reported with its whole sequence of steps at once; shrinking it to a minimal one
# can take minutes, so it is left to TASKMGR_STATEFUL_SHRINK=1.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
if os.environ.get("TASKMGR_STATEFUL_SHRINK") == "1":
    _PHASES.append(Phase.shrink)

BackendsAgree.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    phases=_PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# marked slow: it starts first in a parallel run instead of ending it alone
TestBackendsAgree = pytest.mark.slow(pytest.mark.timeout(360)(BackendsAgree.TestCase))
