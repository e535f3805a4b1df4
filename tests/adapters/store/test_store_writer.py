"""The single-owner write queue on its own, with a scripted commit and trio's autojump clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from traild.adapters.store.writer import Op, WriteQueue
from traild.core.errors import StoreError, WriteQueued


class Locked(Exception):
    """Stands for 'database is locked'."""


class Refused(Exception):
    """Stands for a constraint violation."""


class FakeDatabase:
    """Commits batches of ops; can be locked, and refuses ops whose name is in ``refuse``."""

    def __init__(self) -> None:
        self.locked = False
        self.refuse: set[str] = set()
        self.rows: list[str] = []
        self.batches: list[list[str]] = []
        self.attempts = 0

    async def commit(self, ops: list[Op]) -> list[Any]:
        self.attempts += 1
        await trio.sleep(0.01)
        if self.locked:
            raise Locked("database is locked")
        names = [await op(None) for op in ops]
        if any(name in self.refuse for name in names):
            raise Refused(f"UNIQUE constraint failed: {names}")
        self.batches.append(names)
        self.rows.extend(names)
        return [f"ok:{name}" for name in names]


def op(name: str) -> Callable[[Any], Awaitable[str]]:
    async def run(_conn: Any) -> str:
        return name

    return run


@pytest.fixture
async def db_and_queue() -> AsyncIterator[tuple[FakeDatabase, WriteQueue]]:
    db = FakeDatabase()
    queue = WriteQueue(
        db.commit,
        is_transient=lambda exc: isinstance(exc, Locked),
        describe=lambda exc: f"{type(exc).__name__}: {exc}",
        max_batch=4,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        yield db, queue
        nursery.cancel_scope.cancel()


async def test_writes_commit_in_submission_order_in_batches(
    db_and_queue: tuple[FakeDatabase, WriteQueue], autojump_clock: trio.abc.Clock
) -> None:
    db, queue = db_and_queue
    with trio.fail_after(10):
        writes = [await queue.submit(op(f"w{i}")) for i in range(10)]
        results = [await queue.wait(w, 5) for w in writes]
    assert results == [f"ok:w{i}" for i in range(10)]
    assert db.rows == [f"w{i}" for i in range(10)]
    assert [len(b) for b in db.batches] == [4, 4, 2]


async def test_locked_database_queues_writes_and_lands_them_later_in_order(
    db_and_queue: tuple[FakeDatabase, WriteQueue], autojump_clock: trio.abc.Clock
) -> None:
    db, queue = db_and_queue
    db.locked = True
    with trio.fail_after(100):
        first = await queue.submit(op("a"))
        with pytest.raises(WriteQueued, match="database unavailable; write queued") as info:
            await queue.wait(first, 2, amendment_id=41)
        assert info.value.amendment_id == 41
        later = [await queue.submit(op(name)) for name in "bcd"]
        await trio.sleep(30)  # an outage of half a minute: retried with capped backoff
        stats = queue.statistics()
        assert stats.queued_writes == 4 and stats.retries >= 10
        assert stats.last_error == "Locked: database is locked"
        assert stats.oldest_queued_s >= 30
        assert db.rows == []
        db.locked = False
        await queue.drain()
    assert db.rows == ["a", "b", "c", "d"]
    assert all(w.finished for w in [first, *later])
    assert queue.statistics().queued_writes == 0


async def test_refused_write_fails_alone_and_its_batch_neighbours_land(
    db_and_queue: tuple[FakeDatabase, WriteQueue], autojump_clock: trio.abc.Clock
) -> None:
    db, queue = db_and_queue
    db.refuse = {"bad"}
    with trio.fail_after(10):
        writes = [await queue.submit(op(name)) for name in ("a", "bad", "c", "d", "e", "f")]
        with pytest.raises(StoreError, match="refused by the database: Refused: UNIQUE"):
            await queue.wait(writes[1], 5)
        await queue.drain()
    assert db.rows == ["a", "c", "d", "e", "f"]
    assert queue.statistics().failed_writes == 1
    assert queue.statistics().committed_writes == 5


async def test_progress_writes_of_one_trade_coalesce_while_queued(
    db_and_queue: tuple[FakeDatabase, WriteQueue], autojump_clock: trio.abc.Clock
) -> None:
    db, queue = db_and_queue
    db.locked = True
    with trio.fail_after(10):
        p1 = await queue.submit(op("best=1"), trade_id=7, coalesce=True)
        await trio.sleep(1)  # the owner has tried p1 once: it is no longer replaceable
        p2 = await queue.submit(op("best=2"), trade_id=7, coalesce=True)
        p3 = await queue.submit(op("best=3"), trade_id=7, coalesce=True)
        other = await queue.submit(op("other-trade"), trade_id=8, coalesce=True)
        closing = await queue.submit(op("close"), trade_id=7)
        p4 = await queue.submit(op("best=4"), trade_id=7, coalesce=True)  # after close: not merged
        assert p3 is p2 and p4 is not p2 and p1 is not p2
        db.locked = False
        await queue.drain()
    assert db.rows == ["best=1", "best=3", "other-trade", "close", "best=4"]
    assert not [w for w in (p1, p2, other, closing, p4) if not w.finished]


async def test_closed_queue_refuses_new_writes_but_finishes_queued_ones(
    db_and_queue: tuple[FakeDatabase, WriteQueue], autojump_clock: trio.abc.Clock
) -> None:
    db, queue = db_and_queue
    with trio.fail_after(10):
        last = await queue.submit(op("last"))
        assert queue.close() == 1
        with pytest.raises(StoreError, match="closed"):
            await queue.submit(op("late"))
        assert await queue.wait(last, 5) == "ok:last"
    assert db.rows == ["last"]


def _bounded(db: FakeDatabase, bound: int) -> WriteQueue:
    return WriteQueue(
        db.commit,
        is_transient=lambda exc: isinstance(exc, Locked),
        describe=lambda exc: f"{type(exc).__name__}: {exc}",
        max_batch=4,
        max_queued=bound,
    )


def _events(records: list[Any], name: str) -> list[Any]:
    return [r for r in records if r["extra"].get("event") == name]


async def test_an_outage_holds_writers_at_the_bound_and_every_write_lands_in_order(
    autojump_clock: trio.abc.Clock, log_records: list[Any]
) -> None:
    db = FakeDatabase()
    queue = _bounded(db, 5)
    db.locked = True
    submitted: list[str] = []  # in the order the queue took them
    most = 0

    async def writer(name: str) -> None:
        nonlocal most
        for i in range(10):
            await queue.submit(op(f"{name}{i}"), urgent=name == "u")
            submitted.append(f"{name}{i}")
            most = max(most, queue.statistics().queued_writes)

    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        with trio.fail_after(300):
            async with trio.open_nursery() as writers:
                for name in "abu":  # two normal writers and one in the urgent lane
                    writers.start_soon(writer, name)
                await trio.sleep(60)  # a minute's outage: the writers wait for room
                assert len(submitted) == 5 and queue.statistics().queued_writes == 5
                assert db.rows == []
                db.locked = False
            await queue.drain()
        nursery.cancel_scope.cancel()
    assert most == 5
    assert sorted(db.rows) == sorted(f"{n}{i}" for n in "abu" for i in range(10))
    for name in "abu":  # each writer's writes in the order it made them
        assert [r for r in db.rows if r[0] == name] == [f"{name}{i}" for i in range(10)]
    normal = [r for r in db.rows if r[0] != "u"]
    assert normal == [r for r in submitted if r[0] != "u"]  # one lane: the order taken
    assert len(_events(log_records, "store.backpressure")) == 1  # once for the episode
    assert len(_events(log_records, "store.backpressure_over")) == 1


async def test_a_coalesced_write_takes_no_room(
    autojump_clock: trio.abc.Clock, log_records: list[Any]
) -> None:
    db = FakeDatabase()
    queue = _bounded(db, 2)
    db.locked = True
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        with trio.fail_after(100):
            await queue.submit(op("a"))
            best = await queue.submit(op("best=1"), trade_id=7, coalesce=True)
            with trio.testing.assert_no_checkpoints():  # full, yet none of these waits
                for price in range(2, 6):
                    assert (
                        await queue.submit(op(f"best={price}"), trade_id=7, coalesce=True) is best
                    )
            assert queue.statistics().queued_writes == 2
            late: list[Any] = []

            async def one_more() -> None:
                late.append(await queue.submit(op("b")))

            nursery.start_soon(one_more)
            await trio.sleep(10)
            assert late == [] and _events(log_records, "store.backpressure")
            db.locked = False
            await trio.sleep(1)
            await queue.drain()
        nursery.cancel_scope.cancel()
    assert db.rows == ["a", "best=5", "b"]


async def test_a_writer_cancelled_while_it_waits_for_room_still_queues_its_write(
    autojump_clock: trio.abc.Clock,
) -> None:
    db = FakeDatabase()
    queue = _bounded(db, 1)
    db.locked = True
    async with trio.open_nursery() as nursery:
        await nursery.start(queue.run)
        with trio.fail_after(100):
            await queue.submit(op("a"))
            with trio.move_on_after(5):
                await queue.submit(op("b"))  # waits for room, then its caller gives up
            assert queue.statistics().queued_writes == 2  # kept, past the bound
            db.locked = False
            await queue.drain()
            await queue.submit(op("c"))  # the bound holds again: one queued at a time
            assert queue.statistics().queued_writes == 1
            await queue.drain()
        nursery.cancel_scope.cancel()
    assert db.rows == ["a", "b", "c"]
