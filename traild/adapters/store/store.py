"""The TradeStore on SQLAlchemy async (aiosqlite / asyncpg), reached from trio via trio-asyncio.

The asyncio world lives only in this package: ``open_store`` opens a trio-asyncio loop and
every database call goes through it (``aio.on_loop``), so any trio task may call the store.
``SqlTradeStore`` is the façade: it opens and closes the store, holds the lease's fence and the
journal, commits the writer's batches, and hands the port's methods to the pieces that do them:

* ``reads.py``: the queries and the read-retry policy (reads go straight to the database, so
  a read does not see a write that is still queued);
* ``writes.py``: the write path (journal, fence, queue, wait) and the trade and alert writes;
* ``amendments.py``: the stop_amendment write-ahead log;
* ``writer.py``: the single-owner, bounded FIFO every write goes through.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from traild.adapters.store import schema
from traild.adapters.store.aio import asyncio_loop, on_loop
from traild.adapters.store.amendments import AmendmentLog
from traild.adapters.store.config_store import SqlConfigStore
from traild.adapters.store.engine import describe, display_url, is_transient, make_engine
from traild.adapters.store.engine import transaction as _transaction
from traild.adapters.store.journal import Entry, Journal, JournalStatistics
from traild.adapters.store.lease import Fence, SqlLeases
from traild.adapters.store.migrate import upgrade_database
from traild.adapters.store.models import STOP_AMENDMENT
from traild.adapters.store.reads import StoreReads
from traild.adapters.store.records import alert_table
from traild.adapters.store.rows import execute_group, plan
from traild.adapters.store.writer import Op, StoreStatistics, WriteQueue
from traild.adapters.store.writes import TradeWrites, WritePath
from traild.core.errors import FencedWrite, StoreError, WriteQueued
from traild.core.messages import StageRecalculation


def _positive(seconds: float) -> float:
    if not (math.isfinite(seconds) and seconds > 0):
        raise StoreError(f"write_timeout must be a positive number, not {seconds!r}")
    return seconds


@asynccontextmanager
async def open_store(
    url: str,
    *,
    write_timeout: float = 2.0,
    migrate: bool = False,
    busy_timeout: float = 1.0,
    drain_timeout: float = 5.0,
    read_wait: float = 0.0,
    read_timeout: float = 5.0,
    journal_dir: Path | None = None,
    max_queued: int = 100_000,
    idle_in_transaction_timeout: float | None = None,
) -> AsyncIterator[SqlTradeStore]:
    """Open the store on ``url`` (an absolute SQLite path or PostgreSQL; see resolve_database_url).

    Refuses a schema behind head with SchemaOutOfDate unless ``migrate``. On exit the write queue
    is drained for at most ``drain_timeout`` seconds (also when cancelled); what is left is logged.
    A read that fails transiently (or takes longer than ``read_timeout``) is retried with
    back-off for up to ``read_wait`` seconds (``math.inf`` for the daemon: its reads wait out an
    outage like its writes; 0 for the command line: fail at once). At most ``max_queued``
    writes wait for the database; past that, writers wait for room (see writer.py).
    ``idle_in_transaction_timeout``: see ``make_engine`` (the daemon: a share of its lease ttl).

    With ``journal_dir`` every write is journaled first (``journal.py``): records a previous
    run left are applied before this returns, and what the database has not taken at exit
    stays in the journal (``pending_on_close``) instead of being lost. The daemon opens its
    journal later (``open_journal``), once it owns the account's lease and has ``fence``d.
    """
    _positive(write_timeout)
    async with asyncio_loop() as loop:
        if migrate:
            await upgrade_database(loop, url, busy_timeout)
        engine = make_engine(
            url, busy_timeout=busy_timeout, idle_in_transaction_timeout=idle_in_transaction_timeout
        )
        try:
            store = SqlTradeStore(loop, engine, write_timeout, drain_timeout, max_queued)
            await store._prepare(url)
            store._reads.read_wait, store._reads.read_timeout = read_wait, read_timeout
            async with trio.open_nursery() as nursery:
                store._nursery = nursery
                # Shielded: when the caller is cancelled (a crash elsewhere, a test ending), the
                # writer still drains the queue in _close (bounded by drain_timeout), so writes
                # queued without waiting (progress, adoption) still land.
                writer = trio.CancelScope(shield=True)
                await nursery.start(_shielded, writer, store._writer.run)
                if journal_dir is not None:
                    await store.open_journal(journal_dir)
                try:
                    yield store
                finally:
                    with trio.CancelScope(shield=True):
                        await store._close()
                    writer.cancel()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await on_loop(loop, engine.dispose)


async def _shielded(
    scope: trio.CancelScope,
    run: Callable[..., Awaitable[None]],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await run(task_status=task_status)


class SqlTradeStore:
    """``traild.ports.TradeStore`` on SQLite or PostgreSQL. Create it with ``open_store``."""

    def __init__(
        self,
        loop: Any,
        engine: AsyncEngine,
        write_timeout: float,
        drain_timeout: float,
        max_queued: int = 100_000,
    ) -> None:
        self._loop = loop
        self._engine = engine
        self._drain_timeout = drain_timeout
        self._fence = Fence()  # the account lease every write carries (``fence``)
        self._writer = WriteQueue(
            self._commit, is_transient=is_transient, describe=describe, max_queued=max_queued,
            wrap=self._fence.wrap,
        )  # fmt: skip
        self._path = WritePath(self._writer, self._fence, write_timeout)
        self._journal: Journal | None = None
        self.pending_on_close = 0  # journal records the database had not taken at close
        self._nursery: trio.Nursery | None = None

        # the port, by the piece that does it
        self._reads = reads = StoreReads(loop, engine, self._fence)
        self.load_open_trades = reads.load_open_trades
        self.changed_trades = reads.changed_trades
        self.trades_by_deals = reads.trades_by_deals
        self.get_trade = reads.get_trade
        self.get_trade_by_deal = reads.get_trade_by_deal
        self.trades_since = reads.trades_since
        self.get_alert = reads.get_alert
        self.get_alerts = reads.get_alerts
        self.unfinished_amendments = reads.unfinished_amendments
        self.amendments_of = reads.amendments_of

        self._writes = writes = TradeWrites(self._path)
        self.add_trade = writes.add_trade
        self.add_alert = writes.add_alert
        self.adopt_trade = writes.adopt_trade
        self.adopt_trades = writes.adopt_trades
        self.save_progress = writes.save_progress
        self.save_progress_many = writes.save_progress_many
        self.close_trade = writes.close_trade
        self.set_status = writes.set_status
        self.set_method = writes.set_method
        self.record_recalculation = writes.record_recalculation

        self._amendments = amendments = AmendmentLog(self._path)
        self.write_amendment = amendments.write_amendment
        self.update_amendment = amendments.update_amendment
        self.confirm_amendment = amendments.confirm_amendment

    async def recalculations_since(self, since: datetime | None) -> list[StageRecalculation]:
        """Recalculations at/after ``since`` (all when None), oldest first
        (``ports.RecalculationHistory``)."""
        return await self._reads.recalculations_since(since)

    @property
    def write_timeout(self) -> float:
        """How long a caller waits for durability before WriteQueued."""
        return self._path.timeout

    def set_write_timeout(self, seconds: float) -> None:
        """A reload: callers wait this long from now on; the queue itself is unchanged."""
        self._path.timeout = _positive(seconds)

    @property
    def trade_rows_read(self) -> int:
        """trade_log rows read by the daemon's polls (a statistic)."""
        return self._reads.trade_rows_read

    # -- opening and closing -----------------------------------------------------------------
    async def _prepare(self, url: str) -> None:
        """Check the schema; learn alert_history's columns and the next amendment id."""

        async def prepare(conn: AsyncConnection) -> tuple[set[str], int]:
            await conn.run_sync(schema.check)
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("alert_history")}
            )
            last = await conn.scalar(sa.select(sa.func.max(STOP_AMENDMENT.c.id)))
            return columns, int(last or 0)

        columns, last = await self._reads.run(prepare, f"cannot open database {display_url(url)}")
        self._reads.alerts = self._writes.alerts = alert_table(columns)
        self._amendments.follow(last)

    async def _close(self) -> None:
        with trio.move_on_after(self._drain_timeout):
            await self._writer.drain()
        stats = self._writer.statistics()
        if self._journal is not None:
            self.pending_on_close = self._journal.close()
            if self.pending_on_close:
                logger.bind(
                    event="store.journal_pending",
                    records=self.pending_on_close,
                    queued=stats.queued_writes,
                    error=stats.last_error,
                ).error(
                    "{} record(s) wait in the journal for the database ({}); they are applied "
                    "at the next start",
                    self.pending_on_close,
                    stats.last_error,
                )
        elif stats.queued_writes:
            logger.bind(
                event="store.writes_lost", queued=stats.queued_writes, error=stats.last_error
            ).error(
                "closing with {} write(s) not durable ({})", stats.queued_writes, stats.last_error
            )
        self._writer.close()

    async def _commit(self, ops: list[Op]) -> list[Any]:
        """One transaction; same-shaped row writes as one statement each (``rows.plan``)."""
        steps = plan(ops)

        async def run(engine: AsyncEngine) -> list[Any]:
            results: list[Any] = [None] * len(ops)
            async with _transaction(engine) as conn:
                await self._fence.check(conn, ops)
                for step in steps:
                    if step.shape is None:
                        i, op = step.items[0]
                        results[i] = await op(conn)
                    else:
                        await execute_group(conn, [part for _, part in step.items])
            return results

        try:
            return await on_loop(self._loop, run, self._engine)
        except FencedWrite as exc:
            self._fence.refused(exc)
            raise

    # -- the lease ---------------------------------------------------------------------------
    def leases(self) -> SqlLeases:
        """The account leases on this store's database."""
        return SqlLeases(self._loop, self._engine)

    async def fence(
        self,
        account: str,
        token: int,
        predecessor: int | None,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        """The database refuses a write once the lease of ``account`` has a newer token than
        it carries (``on_refused`` is told; see ``lease.Fence``). Amendment ids continue after
        the previous owner's (a standby opened its store before that owner wrote its last).
        From now on the store reads, polls and settles only the trades of ``account`` and
        those with none, and stamps the trades it adds with it (migration 0009)."""
        self._fence.hold(account, token, predecessor)
        self._fence.on_refused = on_refused
        self._amendments.follow(await self._reads.last_amendment_id())

    # -- the journal -------------------------------------------------------------------------
    async def open_journal(self, directory: Path) -> None:
        """Open the journal and keep it synced; records a previous run left are applied
        first (see ``_open_journal``)."""
        await self._open_journal(directory)
        assert self._journal is not None and self._nursery is not None
        await self._nursery.start(self._journal.run)

    async def _open_journal(self, directory: Path) -> None:
        """Open the journal; apply what a previous run left (oldest first, idempotently),
        then wait until the database has it all (an outage at start-up waits, like reads).
        Records of an older lease tenure than the one this store took over are not applied:
        another owner may have written after them (``journal.fenced``)."""
        from traild.adapters.store.journaled import replay

        journal = Journal(directory)
        left = await trio.to_thread.run_sync(journal.open)
        self._writer.on_done = journal.done
        self._journal = self._path.journal = journal
        if not left:
            return
        stale = [e.seq for e in left if not self._fence.replayable(e.record)]
        if stale:
            logger.bind(
                event="journal.fenced", records=len(stale), fence=self._fence.token
            ).warning("{} journal record(s) of an older lease tenure are not applied", len(stale))
            left = [e for e in left if self._fence.replayable(e.record)]
        logger.bind(event="journal.replaying", records=len(left), directory=str(directory)).info(
            "applying {} journal record(s) the database may not have", len(left)
        )
        following = self._amendments.replay_started()
        skipped = stale + await replay(self, left)
        self._amendments.replayed(following)
        await self._writer.drain()
        journal.settle(skipped)
        logger.bind(event="journal.replayed", records=len(left)).info("journal applied")

    async def replay_entry(self, entry: Entry, apply: Callable[[], Awaitable[None]]) -> None:
        """Apply one journal record again (``apply`` calls a write method; it is journaled
        under its old sequence, not appended again; inserts skip rows that exist)."""
        self._path.replaying = entry.seq
        try:
            await apply()
        finally:
            self._path.replaying = None

    def reserve_amendment_id(self, amendment_id: int) -> None:
        """Applying the journal: the next amendment insert takes this id (``AmendmentLog``)."""
        self._amendments.reserve(amendment_id)

    def journal_statistics(self) -> JournalStatistics | None:
        return None if self._journal is None else self._journal.statistics()

    # -- control -----------------------------------------------------------------------------
    async def flush(self) -> None:
        """Wait until every write queued so far is durable, for at most the drain timeout;
        WriteQueued if the database has not taken them by then (they stay queued)."""
        with trio.move_on_after(self._drain_timeout) as waited:
            await self._writer.drain()
        if waited.cancelled_caught:
            raise WriteQueued()

    def statistics(self) -> StoreStatistics:
        return self._writer.statistics()

    def config_store(self) -> SqlConfigStore:
        """The configuration service's tables on this store's database."""
        return SqlConfigStore(self._loop, self._engine)
