"""The single-owner write queue on its own, with a scripted commit and trio's autojump clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from traild.adapters.store.writer import Op, WriteQueue, WriteQueued
from traild.core.errors import StoreError


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
        writes = [queue.submit(op(f"w{i}")) for i in range(10)]
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
        first = queue.submit(op("a"))
        with pytest.raises(WriteQueued, match="database unavailable; write queued") as info:
            await queue.wait(first, 2, amendment_id=41)
        assert info.value.amendment_id == 41
        later = [queue.submit(op(name)) for name in "bcd"]
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
        writes = [queue.submit(op(name)) for name in ("a", "bad", "c", "d", "e", "f")]
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
        p1 = queue.submit(op("best=1"), trade_id=7, coalesce=True)
        await trio.sleep(1)  # the owner has tried p1 once: it is no longer replaceable
        p2 = queue.submit(op("best=2"), trade_id=7, coalesce=True)
        p3 = queue.submit(op("best=3"), trade_id=7, coalesce=True)
        other = queue.submit(op("other-trade"), trade_id=8, coalesce=True)
        closing = queue.submit(op("close"), trade_id=7)
        p4 = queue.submit(op("best=4"), trade_id=7, coalesce=True)  # after close: not merged
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
        last = queue.submit(op("last"))
        assert queue.close() == 1
        with pytest.raises(StoreError, match="closed"):
            queue.submit(op("late"))
        assert await queue.wait(last, 5) == "ok:last"
    assert db.rows == ["last"]
