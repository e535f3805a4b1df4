"""The store's single writer: an ordered in-memory FIFO drained by one owner task.

Every write is queued; the caller waits for durability up to a timeout. When the database is
locked or unreachable the owner retries the head of the queue with backoff, forever: nothing is
dropped or reordered, and a caller that gave up (``WriteQueued``) sees its write land later. Only a
write the database refuses outright (a constraint, a missing row) fails, alone, and is reported.
Queued writes are committed in batches (one transaction each) when several are waiting.
Urgent writes (the amendment audit trail) have their own FIFO lane, committed before the normal
one, so an amendment's records never wait behind a burst of adoption or progress writes. A column
is written through one lane only (every write of a trade's ``sl_price`` is urgent), so two writes
of the same field are never reordered.

Inside a batch, writes that say which rows they touch (``rows.py``) are grouped by statement
shape (``rows.plan``), so same-shaped writes run as one ``executemany``; a write only moves ahead
of queued writes that touch none of its rows, so every row ends as in queue order.

The lanes are bounded (``max_queued`` writes in both together): past the bound a caller waits
in ``submit`` until the writer has made room (back-pressure, first come first served), so an
outage holds the callers instead of growing memory without end. No write is dropped: a caller
cancelled while it waits still queues its write (past the bound). A write coalesced into a
queued one takes no room. Each such episode is logged once
(``store.backpressure``), and its end once nobody waits and the lanes are back under half
the bound.

A commit that fails transiently has an unknown outcome (the connection may have died after the
server committed). Such writes are retried; if a retried insert is then refused (its row already
exists), its ``landed`` check decides: when the row is the write's own, it is done, not failed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

import trio
from loguru import logger

from traild.core.errors import StoreError, WriteQueued

Op = Callable[[Any], Awaitable[Any]]  # runs inside the batch transaction (asyncio-flavoured)
Commit = Callable[[list[Op]], Awaitable[list[Any]]]  # trio-flavoured: one transaction
NOT_LANDED = object()  # what a ``landed`` check returns when the write's row is not there


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot for heartbeats."""

    queued_writes: int
    committed_writes: int
    failed_writes: int
    retries: int
    last_error: str | None
    oldest_queued_s: float  # how long the head of the queue has waited (0 when empty)


@dataclass(eq=False, slots=True)
class Write:
    op: Op
    trade_id: int | None
    enqueued: float
    # made only when somebody waits: most writes are never waited for, and a queue of
    # thousands of writes is thousands of objects fewer for the cyclic garbage collector
    event: trio.Event | None = None
    finished: bool = False
    taken: bool = False  # handed to the database at least once: no longer coalescible
    landed: Op | None = None  # after an unknown outcome: the write's result, or NOT_LANDED
    uncertain: bool = False  # a commit holding it failed transiently (it may have landed)
    result: Any = None
    error: str | None = None
    seqs: list[int] | None = None  # the journal records this write makes durable

    def journaled(self, seq: int | None) -> None:
        """This write carries journal record ``seq`` (None: not journaled)."""
        if seq is not None:
            if self.seqs is None:
                self.seqs = []
            self.seqs.append(seq)

    async def done(self) -> None:
        """Until the write is committed or refused."""
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        if self.event is None:
            self.event = trio.Event()
        await self.event.wait()


class WriteQueue:
    """FIFO of writes with one owner task (``run``) committing them in order."""

    def __init__(
        self,
        commit: Commit,
        *,
        is_transient: Callable[[BaseException], bool],
        describe: Callable[[BaseException], str],
        max_batch: int = 1024,
        backoff: tuple[float, float] = (0.05, 1.0),
        max_queued: int = 100_000,
        wrap: Callable[[Op], Op] | None = None,
    ) -> None:
        if max_queued < 1:
            raise StoreError(f"max_queued must be at least 1, not {max_queued!r}")
        self.on_done: Callable[[list[int]], None] | None = None  # journal records now durable
        self._wrap = wrap  # every op queued is wrapped so (the store: in the lease's fence)
        self._commit = commit
        self._is_transient = is_transient
        self._describe = describe
        self._max_batch = max_batch
        self._backoff = backoff
        self._queue: deque[Write] = deque()
        self._urgent: deque[Write] = deque()
        self._wake = trio.Event()
        self._max_queued = max_queued
        self._room = trio.Semaphore(max_queued)  # one token per queued write (FIFO waiters)
        self._pressed = False  # a back-pressure episode is on (logged once)
        self._waiting = 0  # callers waiting for room
        self._over = 0  # writes queued past the bound (their caller was cancelled waiting)
        self._coalescible: dict[int, Write] = {}
        self._solo = 0  # writes to commit one by one, to isolate a refused one from its batch
        self._committed = 0
        self._failed = 0
        self._retries = 0
        self._streak = 0  # consecutive transient failures
        self._last_error: str | None = None
        self._closed = False

    async def submit(
        self,
        op: Op,
        *,
        trade_id: int | None = None,
        coalesce: bool = False,
        urgent: bool = False,
        landed: Op | None = None,
        seq: int | None = None,
    ) -> Write:
        """Queue ``op``. With ``coalesce``, a still-waiting coalescible write of the same trade
        (nothing else for that trade queued after it) takes the new op instead: last value wins.
        ``urgent`` writes go to the urgent lane (FIFO among themselves, never coalesced).
        ``landed`` tells whether a refused retry had in fact landed before (see the module);
        ``seq`` is the journal record the write makes durable (``on_done``).
        Returns at once (without a checkpoint) while the lanes have room; else waits for it."""
        if self._closed:
            raise StoreError("the store is closed")
        if self._wrap is not None:
            op = self._wrap(op)
        if not urgent and trade_id is not None:
            previous = self._coalescible.pop(trade_id, None)
            if coalesce and previous is not None and not previous.taken:
                previous.op = op
                previous.journaled(seq)
                self._coalescible[trade_id] = previous
                return previous
        write = Write(op, trade_id, trio.current_time(), landed=landed)
        write.journaled(seq)
        try:
            await self._take_room()
        except trio.Cancelled:
            self._over += 1  # queued all the same, past the bound: a write asked for is kept
            self._append(write, urgent, coalesce)
            raise
        write.enqueued = trio.current_time()
        self._append(write, urgent, coalesce)
        return write

    def _append(self, write: Write, urgent: bool, coalesce: bool) -> None:
        if urgent:
            self._urgent.append(write)
        else:
            self._queue.append(write)
            if coalesce and write.trade_id is not None:
                self._coalescible[write.trade_id] = write
        self._wake.set()

    async def _take_room(self) -> None:
        """A place in the lanes: at once when free and nobody waits, else in line for one."""
        try:
            self._room.acquire_nowait()
        except trio.WouldBlock:
            await self._wait_for_room()

    async def _wait_for_room(self) -> None:
        """The lanes are full: say so once per episode, then wait in line (FIFO)."""
        if not self._pressed:
            self._pressed = True
            logger.bind(
                event="store.backpressure", queued=self.queued(), limit=self._max_queued
            ).warning(
                "{} write(s) queued, the most allowed: writers wait until the database takes "
                "some ({})",
                self.queued(),
                self._last_error,
            )
        self._waiting += 1
        try:
            await self._room.acquire()
        finally:
            self._waiting -= 1  # (still counted until the woken caller runs: see _finish)
        if self._closed:
            self._room.release()
            raise StoreError("the store is closed")

    def queued(self) -> int:
        """Writes waiting in both lanes."""
        return len(self._queue) + len(self._urgent)

    async def wait(self, write: Write, within: float, amendment_id: int | None = None) -> Any:
        """The write's result once durable; WriteQueued after ``within`` s (it stays queued)."""
        with trio.move_on_after(within):
            await write.done()
        if not write.finished:
            raise WriteQueued(amendment_id)
        if write.error is not None:
            raise StoreError(write.error)
        return write.result

    async def drain(self) -> None:
        """Wait until everything queued now is done (FIFO: the tail is done last)."""
        for lane in (self._urgent, self._queue):
            if lane:
                await lane[-1].done()

    def close(self) -> int:
        """Refuse further writes; returns how many are still queued (lost if the process ends)."""
        self._closed = True
        return self.queued()

    def statistics(self) -> StoreStatistics:
        heads = [lane[0].enqueued for lane in (self._urgent, self._queue) if lane]
        head = min(heads) if heads else None
        return StoreStatistics(
            queued_writes=self.queued(),
            committed_writes=self._committed,
            failed_writes=self._failed,
            retries=self._retries,
            last_error=self._last_error,
            oldest_queued_s=0.0 if head is None else trio.current_time() - head,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The owner task: commit the head of the queue until cancelled."""
        task_status.started()
        delay = self._backoff[0]
        while True:
            lane = self._urgent or self._queue
            if not lane:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            batch = list(islice(lane, 1 if self._solo else self._max_batch))
            for write in batch:
                write.taken = True
            try:
                results = await self._commit([w.op for w in batch])
            except Exception as exc:
                if self._is_transient(exc):
                    for write in batch:
                        write.uncertain = True
                    self._note_retry(exc)
                    await trio.sleep(delay)
                    delay = min(delay * 2, self._backoff[1])
                elif len(batch) > 1:
                    self._solo = len(batch)
                else:
                    await self._refused(lane, batch[0], exc)
                continue
            self._recovered()
            delay = self._backoff[0]
            self._finish(lane, batch, results=results)

    async def _refused(self, lane: deque[Write], write: Write, exc: Exception) -> None:
        """A single write refused: failed, unless it had landed before an unknown outcome."""
        if write.uncertain and write.landed is not None:
            try:
                result = (await self._commit([write.landed]))[0]
            except Exception as check:
                if not self._is_transient(check):
                    self._finish(lane, [write], error=self._describe(exc))
                    return
                self._note_retry(check)
                await trio.sleep(self._backoff[0])
                return  # retried from the top: the head of the queue is unchanged
            if result is not NOT_LANDED:
                self._recovered()
                logger.bind(event="store.write_landed").info(
                    "a write retried after an unknown commit outcome had landed; not repeated"
                )
                self._finish(lane, [write], results=[result])
                return
        self._finish(lane, [write], error=self._describe(exc))

    def _recovered(self) -> None:
        if self._streak:
            logger.bind(event="store.recovered", retries=self._streak).info(
                "database writable again after {} retries", self._streak
            )
            self._streak = 0

    def _finish(
        self,
        lane: deque[Write],
        batch: list[Write],
        *,
        results: list[Any] | None = None,
        error: str | None = None,
    ) -> None:
        for i, write in enumerate(batch):
            lane.popleft()
            if write.trade_id is not None and self._coalescible.get(write.trade_id) is write:
                del self._coalescible[write.trade_id]
            if error is None:
                assert results is not None
                write.result = results[i]
                self._committed += 1
            else:
                write.error = f"write refused by the database: {error}"
                self._failed += 1
                logger.bind(event="store.write_failed", error=error).error(
                    "a write was refused by the database and dropped: {}", error
                )
            write.finished = True
            if write.seqs is not None and self.on_done is not None:
                self.on_done(write.seqs)  # committed, or refused for good: nothing to replay
            if write.event is not None:
                write.event.set()
            if self._over:
                self._over -= 1
            else:
                self._room.release()
        self._solo = max(0, self._solo - len(batch))
        if self._pressed and not self._waiting and self.queued() <= self._max_queued // 2:
            self._pressed = False
            logger.bind(event="store.backpressure_over", queued=self.queued()).info(
                "the write queue is back under half its bound; writers no longer wait"
            )

    def _note_retry(self, exc: BaseException) -> None:
        self._retries += 1
        self._streak += 1
        error = self._describe(exc)
        changed, self._last_error = error != self._last_error, error
        # the first failure, about once a minute, and whenever the cause changes (e.g. the
        # connection dropped, then the database turned read-only)
        if self._streak % 30 == 1 or changed:
            queued = self.queued()
            logger.bind(event="store.unavailable", error=self._last_error, queued=queued).warning(
                "database unavailable ({}); {} write(s) queued, retrying",
                self._last_error,
                queued,
            )
