"""The worker's group commit: a lone caller writes at once; callers that arrive while a
write is in flight are written together by the next write; each caller gets its own
result or error; an interrupted write still hands the next batch on."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from taskmgr.celery.commits import GroupCommit
from taskmgr.exceptions import StorageError

WAIT = 10.0


class Gate:
    """A write function whose first call blocks until released; records each batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int | Exception]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(WAIT)
        return [ValueError(f"bad {item}") if item < 0 else item * 10 for item in items]


def call_in_thread(
    group: GroupCommit[int, int], item: int, out: dict[int, object]
) -> threading.Thread:
    def run() -> None:
        try:
            out[item] = group(item)
        except Exception as exc:
            out[item] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_queued(group: GroupCommit[int, int], count: int) -> None:
    """Until ``count`` callers wait behind the write in flight."""
    done = threading.Event()
    for _ in range(int(WAIT / 0.005)):
        with group._lock:
            if len(group._queue) >= count:
                done.set()
                break
        done.wait(0.005)
    assert done.is_set(), "the callers did not queue up"


def behind_a_write(
    group: GroupCommit[int, int], gate: Gate, items: Sequence[int]
) -> dict[int, object]:
    """Caller 1 writes alone and is held there while ``items`` arrive and queue up;
    then the write goes on. What each caller got (result or error)."""
    out: dict[int, object] = {}
    first = call_in_thread(group, 1, out)
    assert gate.entered.wait(WAIT)
    others = [call_in_thread(group, n, out) for n in items]
    wait_queued(group, len(items))
    gate.release.set()
    for thread in (first, *others):
        thread.join(WAIT)
    return out


def test_a_lone_caller_writes_at_once() -> None:
    gate = Gate()
    gate.release.set()
    group: GroupCommit[int, int] = GroupCommit(gate)
    assert group(1) == 10
    assert group(2) == 20
    assert gate.batches == [[1], [2]]
    assert (group.writes, group.items) == (2, 2)


def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    gate = Gate()
    group: GroupCommit[int, int] = GroupCommit(gate)
    out = behind_a_write(group, gate, range(2, 7))
    assert out == {n: n * 10 for n in range(1, 7)}
    assert gate.batches[0] == [1]
    assert sorted(gate.batches[1]) == [2, 3, 4, 5, 6]
    assert len(gate.batches) == 2


def test_a_batch_is_at_most_max_batch_items() -> None:
    gate = Gate()
    group: GroupCommit[int, int] = GroupCommit(gate, max_batch=2)
    out = behind_a_write(group, gate, range(2, 7))
    assert out == {n: n * 10 for n in range(1, 7)}
    assert [len(batch) for batch in gate.batches] == [1, 2, 2, 1]


def test_an_item_error_reaches_its_caller_only() -> None:
    gate = Gate()
    group: GroupCommit[int, int] = GroupCommit(gate)
    out = behind_a_write(group, gate, (2, -3, 4))
    assert isinstance(out[-3], ValueError)
    assert {n: out[n] for n in (1, 2, 4)} == {1: 10, 2: 20, 4: 40}


def test_a_failed_write_fails_its_whole_batch_and_the_next_caller_writes_again() -> None:
    calls: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise StorageError("the database went away")
        return items

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(StorageError):
        group(1)
    assert group(2) == 2
    assert calls == [[1], [2]]


def test_an_interrupted_leader_fails_its_followers_and_hands_the_lead_on() -> None:
    entered, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 1:
            entered.set()
            assert release.wait(WAIT)
            raise KeyboardInterrupt  # the leader's thread is being ended
        return items

    group: GroupCommit[int, int] = GroupCommit(write, max_batch=1)
    out: dict[int, object] = {}
    interrupted: list[BaseException] = []

    def lead() -> None:
        try:
            group(1)
        except BaseException as exc:
            interrupted.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    assert entered.wait(WAIT)
    follower = call_in_thread(group, 2, out)
    wait_queued(group, 1)
    release.set()
    leader.join(WAIT)
    follower.join(WAIT)
    assert [type(exc) for exc in interrupted] == [KeyboardInterrupt]
    assert out == {2: 2}  # written by the next write: it was not in the interrupted batch
    assert group(3) == 3  # nobody holds the lead


def test_followers_of_an_interrupted_write_hear_of_it_as_a_storage_error() -> None:
    entered, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 1:
            entered.set()
            assert release.wait(WAIT)
        elif len(batches) == 2:
            raise KeyboardInterrupt  # the thread writing the second batch is being ended
        return items

    group: GroupCommit[int, int] = GroupCommit(write)
    out: dict[int, object] = {}
    errors: dict[int, BaseException] = {}

    def call(item: int) -> None:
        try:
            out[item] = group(item)
        except BaseException as exc:
            errors[item] = exc

    threads = [threading.Thread(target=call, args=(1,))]
    threads[0].start()
    assert entered.wait(WAIT)
    threads += [threading.Thread(target=call, args=(n,)) for n in (2, 3)]
    for thread in threads[1:]:
        thread.start()
    wait_queued(group, 2)
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert out == {1: 1}
    leader = batches[1][0]
    follower = batches[1][1]
    assert isinstance(errors[leader], KeyboardInterrupt)
    assert isinstance(errors[follower], StorageError)
    assert group(4) == 4
