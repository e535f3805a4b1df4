"""The TradeStore on SQLAlchemy async (aiosqlite / asyncpg), reached from trio via trio-asyncio.

The asyncio world lives only here: ``open_store`` opens a trio-asyncio loop and every database call
goes through ``aio_as_trio`` on that loop (explicitly, so any trio task may call the store). Writes
go through the single-owner FIFO of ``writer.py``; reads go straight to the database, so a read does
not see a write that is still queued.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import trio
import trio_asyncio
from loguru import logger
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from traild.adapters.store import changes, recalcs, schema
from traild.adapters.store.aio import asyncio_loop
from traild.adapters.store.config_store import SqlConfigStore
from traild.adapters.store.engine import (
    BEGIN_OPTION,
    WRITE_BEGIN,
    describe,
    display_url,
    is_transient,
    make_engine,
)
from traild.adapters.store.journal import Entry, Journal, JournalError, JournalStatistics
from traild.adapters.store.lease import Fence, SqlLeases
from traild.adapters.store.migrate import upgrade_database
from traild.adapters.store.models import (
    STOP_AMENDMENT,
    TRADE_LOG,
    UNFINISHED_STATES,
)
from traild.adapters.store.records import (
    adopt_values,
    alert_from_row,
    alert_table,
    alert_values,
    amendment_from_row,
    checked,
    one_trade,
    trade_columns,
    trade_values,
    trades_from_rows,
)
from traild.adapters.store.rows import MissingRow, RowWrites, execute_group, insert_one
from traild.adapters.store.rows import update_one as _update_one
from traild.adapters.store.writer import (
    NOT_LANDED,
    Op,
    StoreStatistics,
    Write,
    WriteQueue,
    WriteQueued,
    plan,
)
from traild.core.errors import FencedWrite, StoreError
from traild.core.messages import (
    AlertRecord,
    AmendmentRecord,
    AmendState,
    StageRecalculation,
    TradeRecord,
    TradeStatus,
)

T = TypeVar("T")
_ERROR_CHARS = 500
_OPEN_STATES = (TradeStatus.PENDING.value, TradeStatus.OPEN.value)
_PROGRESS = -1  # the writer's coalescing key of the batched best-price write (no trade has it)
_FOLD_LIMIT = 4096  # queued amendment inserts remembered for folding before a sweep
_TRADES_LIMIT = 1 << 16  # amendments whose trade is remembered for their confirmation


class _ReadTimedOut(Exception):
    """A read that did not answer within ``read_timeout`` (a locked table, a dead link)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _ReadTimedOut) or is_transient(exc)


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
) -> AsyncIterator[SqlTradeStore]:
    """Open the store on ``url`` (an absolute SQLite path or PostgreSQL; see resolve_database_url).

    Refuses a schema behind head with SchemaOutOfDate unless ``migrate``. On exit the write queue
    is drained for at most ``drain_timeout`` seconds (also when cancelled); what is left is logged.
    A read that fails transiently (or takes longer than ``read_timeout``) is retried with
    back-off for up to ``read_wait`` seconds (``math.inf`` for the daemon: its reads wait out an
    outage like its writes; 0 for the command line: fail at once).

    With ``journal_dir`` every write is journaled first (``journal.py``): records a previous
    run left are applied before this returns, and what the database has not taken at exit
    stays in the journal (``pending_on_close``) instead of being lost. The daemon opens its
    journal later (``open_journal``), once it owns the account's lease and has ``fence``d.
    """
    if not (math.isfinite(write_timeout) and write_timeout > 0):
        raise StoreError(f"write_timeout must be a positive number, not {write_timeout!r}")
    async with asyncio_loop() as loop:
        if migrate:
            await upgrade_database(loop, url, busy_timeout)
        engine = make_engine(url, busy_timeout=busy_timeout)
        try:
            store = SqlTradeStore(loop, engine, write_timeout, drain_timeout)
            await store._prepare(url)
            store.read_wait, store.read_timeout = read_wait, read_timeout
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
                await trio_asyncio.aio_as_trio(engine.dispose, loop=loop)()


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
        self, loop: Any, engine: AsyncEngine, write_timeout: float, drain_timeout: float
    ) -> None:
        self._loop = loop
        self._engine = engine
        self._write_timeout = write_timeout
        self._drain_timeout = drain_timeout
        self._writer = WriteQueue(self._commit, is_transient=is_transient, describe=describe)
        self._alerts = alert_table(set())
        self._next_amendment_id = 1
        # amendment inserts not yet handed to the database, with the values they will write:
        # a state change arriving meanwhile is folded into the insert (see _fold)
        self._queued_inserts: dict[int, tuple[Write, dict[str, Any]]] = {}
        self._amendment_trades: dict[int, int] = {}  # amendment id -> trade id, until final
        self._progress: dict[int, float] = {}  # best prices waiting for save_progress_many
        self.trade_rows_read = 0  # trade_log rows read by the daemon's polls (a statistic)
        self.read_wait = 0.0
        self.read_timeout = 5.0
        self._read_retries = 0
        self._journal: Journal | None = None
        self._replay_seq: int | None = None  # applying this journal record again (start-up)
        self._replay_top = 0  # the highest amendment id applied again from the journal
        self.pending_on_close = 0  # journal records the database had not taken at close
        self._nursery: trio.Nursery | None = None
        self._fence = Fence()  # the account lease every write carries (``fence``)

    def set_write_timeout(self, seconds: float) -> None:
        """How long a caller waits for durability (a reload); the queue itself is unchanged."""
        if not (math.isfinite(seconds) and seconds > 0):
            raise StoreError(f"write_timeout must be a positive number, not {seconds!r}")
        self._write_timeout = seconds

    # -- plumbing ------------------------------------------------------------------------
    async def _prepare(self, url: str) -> None:
        """Check the schema; learn alert_history's columns and the next amendment id."""

        async def prepare(conn: AsyncConnection) -> tuple[set[str], int]:
            await conn.run_sync(schema.check)
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("alert_history")}
            )
            last = await conn.scalar(sa.select(sa.func.max(STOP_AMENDMENT.c.id)))
            return columns, int(last or 0)

        columns, last = await self._read(prepare, f"cannot open database {display_url(url)}")
        self._alerts = alert_table(columns)
        self._next_amendment_id = last + 1

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
        """From now on every write carries ``token``, and the database refuses it once the
        lease of ``account`` has a newer one (``on_refused`` is told; see ``lease.Fence``).
        Amendment ids continue after the previous owner's (a standby opened its store before
        that owner wrote its last ones)."""
        self._fence.hold(account, token, predecessor, on_refused)

        async def last(conn: AsyncConnection) -> int:
            return int(await conn.scalar(sa.select(sa.func.max(STOP_AMENDMENT.c.id))) or 0)

        self._next_amendment_id = max(self._next_amendment_id, await self._read(last) + 1)

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
        self._journal = journal
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
        following = self._next_amendment_id
        self._replay_top = 0
        skipped = stale + await replay(self, left)
        self._next_amendment_id = max(following, self._replay_top + 1)
        await self._writer.drain()
        journal.settle(skipped)
        logger.bind(event="journal.replayed", records=len(left)).info("journal applied")

    async def replay_entry(self, entry: Entry, apply: Callable[[], Awaitable[None]]) -> None:
        """Apply one journal record again (``apply`` calls a write method; it is journaled
        under its old sequence, not appended again; inserts skip rows that exist)."""
        self._replay_seq = entry.seq
        try:
            await apply()
        finally:
            self._replay_seq = None

    def reserve_amendment_id(self, amendment_id: int) -> None:
        """Applying the journal: the next amendment insert takes this id (its own, from the
        run that wrote it); later ones continue after the highest id seen."""
        self._replay_top = max(self._replay_top, amendment_id)
        self._next_amendment_id = amendment_id

    def _jot(self, kind: str, **fields: Any) -> int | None:
        """Journal a record before its write is queued; its sequence (None: no journal)."""
        if self._replay_seq is not None:
            return self._replay_seq
        if self._journal is None:
            return None
        if self._fence.token is not None:
            fields["t"] = self._fence.token
        try:
            return self._journal.append({"k": kind, **fields})
        except JournalError:
            return None  # logged by the journal: the memory queue carries the write alone

    def journal_statistics(self) -> JournalStatistics | None:
        return None if self._journal is None else self._journal.statistics()

    async def _read(
        self,
        query: Callable[[AsyncConnection], Awaitable[T]],
        failure: str = "database read failed",
    ) -> T:
        """``query`` on a pooled connection; transient failures (and reads slower than
        ``read_timeout``) are retried with back-off for up to ``read_wait`` seconds."""
        deadline = trio.current_time() + self.read_wait
        delay = 0.05
        while True:
            try:
                return await self._read_once(query)
            except (SQLAlchemyError, OSError, _ReadTimedOut) as exc:
                error = describe(exc)
                if not (_retryable(exc) and trio.current_time() + delay <= deadline):
                    raise StoreError(f"{failure}: {error}") from exc
            self._note_read_retry(error)
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _read_once(self, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def once(engine: AsyncEngine) -> T:
            async with engine.connect() as conn:
                return await query(conn)

        async def run(engine: AsyncEngine) -> T:
            try:
                return await once(engine)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            return await once(engine)  # the pool dropped its dead connections: one fresh try

        with trio.move_on_after(self.read_timeout):
            result: T = await trio_asyncio.aio_as_trio(run, loop=self._loop)(self._engine)
            return result
        raise _ReadTimedOut(f"no answer within {self.read_timeout:g} s (locked or unreachable)")

    def _note_read_retry(self, error: str) -> None:
        self._read_retries += 1
        if self._read_retries % 30 == 1:  # the first, then about once a minute
            logger.bind(event="store.degraded", error=error, retries=self._read_retries).warning(
                "database read failed ({}); waiting for the database", error
            )

    async def _rows(self, statement: sa.Select[Any]) -> Sequence[sa.RowMapping]:
        async def query(conn: AsyncConnection) -> Sequence[sa.RowMapping]:
            rows: Sequence[sa.RowMapping] = (await conn.execute(statement)).mappings().all()
            return rows

        return await self._read(query)

    async def _commit(self, ops: list[Op]) -> list[Any]:
        """One transaction; same-shaped row writes as one statement each (``writer.plan``)."""
        steps = plan(ops)

        async def run(engine: AsyncEngine) -> list[Any]:
            results: list[Any] = [None] * len(ops)
            async with engine.connect() as conn:
                await conn.execution_options(**{BEGIN_OPTION: WRITE_BEGIN})
                async with conn.begin():
                    await self._fence.check(conn, ops)
                    for step in steps:
                        if step.shape is None:
                            i, op = step.items[0]
                            results[i] = await op(conn)
                        else:
                            await execute_group(conn, [part for _, part in step.items])
            return results

        try:
            result: list[Any] = await trio_asyncio.aio_as_trio(run, loop=self._loop)(self._engine)
        except FencedWrite as exc:
            self._fence.refused(exc)
            raise
        return result

    async def _write(
        self,
        op: Op,
        *,
        trade_id: int | None = None,
        coalesce: bool = False,
        amendment_id: int | None = None,
        urgent: bool = False,
        durable: bool = True,
        landed: Op | None = None,
        seq: int | None = None,
    ) -> Any:
        """Queue ``op``; wait until it is durable (WriteQueued after the write timeout), or,
        without ``durable``, return at once (the write lands in order; a refusal is logged).
        ``landed`` makes a retried insert idempotent (see writer.py)."""
        write = self._writer.submit(
            self._fence.wrap(op), trade_id=trade_id, coalesce=coalesce, urgent=urgent,
            landed=landed,
        )  # fmt: skip
        write.journaled(seq)
        if not durable:
            return None
        return await self._writer.wait(write, self._write_timeout, amendment_id)

    async def _update_trade(
        self, trade_id: int, values: dict[str, Any], seq: int | None = None
    ) -> None:
        await self._write(_update_one(TRADE_LOG, trade_id, values), trade_id=trade_id, seq=seq)

    # -- reads ---------------------------------------------------------------------------
    async def load_open_trades(self) -> list[TradeRecord]:
        rows = await self._rows(_trades().where(TRADE_LOG.c.status.in_(_OPEN_STATES)))
        self.trade_rows_read += len(rows)
        return trades_from_rows(rows)

    async def changed_trades(
        self, after: int, limit: int = 1000, open_only: bool = False
    ) -> tuple[list[TradeRecord], int]:
        """Trades inserted or changed (status, override, entry) since change ``after``, oldest
        change first, about ``limit`` (more to finish a transaction's rows; ``open_only``: open
        and pending ones); and the highest change read (``after`` when none). See changes.py."""
        postgres = self._engine.dialect.name == "postgresql"
        rows = list(await self._rows(changes.page(after, limit, open_only, postgres)))
        if rows and len(rows) >= limit:  # never end a page inside one transaction's rows
            last = rows[-1]
            seq, last_id = int(last["change_seq"]), int(last["id"])
            rows += await self._rows(changes.rest(seq, last_id, open_only))
        self.trade_rows_read += len(rows)
        top = max((int(row["change_seq"]) for row in rows), default=after)
        return trades_from_rows(rows), top

    async def trades_by_deals(self, deal_ids: Sequence[str]) -> dict[str, TradeRecord]:
        """The trades of these deal ids (those that exist), read in a few queries."""
        found: dict[str, TradeRecord] = {}
        for chunk in _chunks(list(dict.fromkeys(deal_ids))):
            rows = await self._rows(_trades().where(TRADE_LOG.c.deal_id.in_(chunk)))
            found.update((t.deal_id, t) for t in trades_from_rows(rows))
        return found

    async def get_trade(self, trade_id: int) -> TradeRecord | None:
        return one_trade(await self._rows(_trades().where(TRADE_LOG.c.id == trade_id)))

    async def get_trade_by_deal(self, deal_id: str) -> TradeRecord | None:
        return one_trade(await self._rows(_trades().where(TRADE_LOG.c.deal_id == deal_id)))

    async def trades_since(self, since: datetime | None) -> list[TradeRecord]:
        """Trades opened at/after ``since`` (all when None), plus those not yet filled."""
        statement = _trades()
        if since is not None:
            checked({"since": since})
            opened = TRADE_LOG.c.opened_at
            statement = statement.where(sa.or_(opened >= since, opened.is_(None)))
        return trades_from_rows(await self._rows(statement))

    async def get_alert(self, alert_id: int) -> AlertRecord | None:
        table = self._alerts
        rows = await self._rows(sa.select(table).where(table.c.id == alert_id))
        return alert_from_row(rows[0]) if rows else None

    async def get_alerts(self, alert_ids: Sequence[int]) -> dict[int, AlertRecord]:
        """The alerts of these ids (those that exist), read in a few queries."""
        table = self._alerts
        found: dict[int, AlertRecord] = {}
        for chunk in _chunks(sorted(set(alert_ids))):
            rows = await self._rows(sa.select(table).where(table.c.id.in_(chunk)))
            found.update((row["id"], alert_from_row(row)) for row in rows)
        return found

    async def unfinished_amendments(self) -> list[AmendmentRecord]:
        rows = await self._rows(_amendments().where(STOP_AMENDMENT.c.state.in_(UNFINISHED_STATES)))
        return [amendment_from_row(row) for row in rows]

    async def amendments_of(self, trade_id: int) -> list[AmendmentRecord]:
        """Every amendment of a trade, oldest first (the audit trail)."""
        rows = await self._rows(_amendments().where(STOP_AMENDMENT.c.trade_id == trade_id))
        return [amendment_from_row(row) for row in rows]

    # -- writes --------------------------------------------------------------------------
    async def add_trade(self, trade: TradeRecord) -> TradeRecord:
        values = trade_values(trade)

        async def insert(conn: AsyncConnection) -> int:
            statement = TRADE_LOG.insert().values(**values).returning(TRADE_LOG.c.id)
            return int((await conn.execute(statement)).scalar_one())

        async def landed(conn: AsyncConnection) -> Any:
            """The row of this very insert (every value equal), after an unknown outcome."""
            match = [
                TRADE_LOG.c[k] == v
                for k, v in values.items()
                if v is not None and not isinstance(v, dict | list)  # JSON has no "="
            ]
            found = await conn.scalar(sa.select(TRADE_LOG.c.id).where(*match))
            return NOT_LANDED if found is None else int(found)

        trade_id: int = await self._write(insert, landed=landed)
        return replace(trade, id=trade_id)

    async def add_alert(self, alert: AlertRecord) -> AlertRecord:
        """Insert an alert_history row; an ``id`` <= 0 lets the database choose it."""
        table = self._alerts
        values = alert_values(alert, table)

        async def insert(conn: AsyncConnection) -> int:
            statement = table.insert().values(**values).returning(table.c.id)
            return int((await conn.execute(statement)).scalar_one())

        async def landed(conn: AsyncConnection) -> Any:
            """The row of this very insert (every value equal), after an unknown outcome."""
            c = table.c
            match = [c[k].is_(None) if v is None else c[k] == v for k, v in values.items()]
            found = await conn.scalar(sa.select(c.id).where(*match).order_by(c.id.desc()))
            return NOT_LANDED if found is None else int(found)

        alert_id: int = await self._write(_insert_once(insert, landed), landed=landed)
        return replace(alert, id=alert_id)

    async def adopt_trade(self, trade_id: int, **fields: Any) -> None:
        values = adopt_values(fields)
        if values:
            seq = self._jot("adopt", trade_id=trade_id, fields=fields)
            # sl_price is written in one lane only (the urgent one, with the amendments that
            # confirm stops), so an adoption queued during an outage never lands after, and
            # over, a later confirmation
            op = _update_one(TRADE_LOG, trade_id, values)
            await self._write(op, trade_id=trade_id, urgent="sl_price" in values, seq=seq)

    async def adopt_trades(self, updates: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Many adoptions in one write (one transaction, one statement per set of fields)."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for trade_id, fields in updates:
            values = adopt_values(fields)
            if values:
                key = tuple(sorted(values))
                groups.setdefault(key, []).append(
                    {"_id": trade_id, **{f"_v_{k}": v for k, v in values.items()}}
                )
        if not groups:
            return
        seq = self._jot("adopt_many", updates=[[t, f] for t, f in updates])

        async def update(conn: AsyncConnection) -> None:
            for names, params in groups.items():
                await conn.execute(_update_many(names), params)

        # one lane for every sl_price write (see adopt_trade)
        await self._write(update, urgent=any("sl_price" in names for names in groups), seq=seq)

    async def save_progress(self, trade_id: int, best_price: float, durable: bool = True) -> None:
        """Persist the best price; a newer value replaces one still queued for the same trade."""
        values = checked({"best_price": best_price})
        seq = self._jot("progress", prices=[[trade_id, best_price]])
        op = _update_one(TRADE_LOG, trade_id, values)
        await self._write(op, trade_id=trade_id, coalesce=True, durable=durable, seq=seq)

    async def save_progress_many(
        self, prices: Sequence[tuple[int, float]], durable: bool = True
    ) -> None:
        """Persist many best prices in one statement. Prices wait in one table until written
        (last value per trade wins), so at most one such write is queued whatever the pace."""
        for trade_id, price in prices:
            self._progress[trade_id] = checked({"best_price": price})["best_price"]
        seq = self._jot("progress", prices=[[t, p] for t, p in prices])
        op = self._fence.wrap(self._progress_op())
        write = self._writer.submit(op, trade_id=_PROGRESS, coalesce=True)
        write.journaled(seq)
        if durable:
            await self._writer.wait(write, self._write_timeout)

    def _progress_op(self) -> Op:
        rows: list[dict[str, Any]] | None = None

        async def update(conn: AsyncConnection) -> None:
            nonlocal rows
            if rows is None:  # taken once: a retry writes the same rows
                rows = [{"_id": k, "_v_best_price": v} for k, v in self._progress.items()]
                self._progress.clear()
            if rows:
                await conn.execute(_update_many(("best_price",)), rows)

        return update

    async def write_amendment(
        self,
        trade_id: int,
        deal_id: str,
        requested: float,
        previous: float | None,
        reason: str,
        ts: datetime,
        durable: bool = True,
    ) -> int:
        """Queue the ``pending`` row; the id is allocated here, so WriteQueued carries it too.

        Amendment records take the urgent lane; ``durable=False`` returns once queued."""
        amendment_id = self._next_amendment_id
        seq = self._jot(
            "amend",
            id=amendment_id,
            trade_id=trade_id,
            deal_id=deal_id,
            requested=requested,
            previous=previous,
            reason=reason,
            ts=ts,
        )
        values = checked(
            {
                "id": amendment_id,
                "trade_id": trade_id,
                "deal_id": deal_id,
                "requested_level": requested,
                "previous_level": previous,
                "reason": reason,
                "state": AmendState.PENDING,
                "created_at": ts,
                "updated_at": ts,
                "lease_token": self._fence.token,
            }
        )
        self._next_amendment_id += 1

        insert = insert_one(STOP_AMENDMENT, values)  # folded changes land with it

        async def landed(conn: AsyncConnection) -> Any:
            a = STOP_AMENDMENT.c
            found = await conn.scalar(
                sa.select(a.id).where(
                    a.id == amendment_id, a.trade_id == trade_id, a.requested_level == requested
                )
            )
            return NOT_LANDED if found is None else None

        op: Op = insert
        if self._replay_seq is not None:
            op = _if_absent(insert, landed)  # the row may have landed before the stop
        op = self._fence.wrap(op)
        write = self._writer.submit(op, trade_id=trade_id, urgent=True, landed=landed)
        write.journaled(seq)
        if len(self._queued_inserts) >= _FOLD_LIMIT:
            self._queued_inserts = {k: v for k, v in self._queued_inserts.items() if not v[0].taken}
        self._queued_inserts[amendment_id] = (write, values)
        if len(self._amendment_trades) >= _TRADES_LIMIT:  # amendments never concluded
            self._amendment_trades.clear()  # (their confirmation looks the trade up)
        self._amendment_trades[amendment_id] = trade_id
        if durable:
            await self._writer.wait(write, self._write_timeout, amendment_id)
        return amendment_id

    def _fold(
        self, amendment_id: int, changes: dict[str, Any]
    ) -> tuple[Write, dict[str, Any]] | None:
        """Fold ``changes`` into the amendment's insert if the database has not taken it yet
        (one row written once instead of an insert and updates); the insert's write and
        values, else None.

        Under load the writer runs behind the gateway: an amendment is usually sent, and often
        confirmed, before its pending row is written. The row then lands in its latest state;
        nothing durable is skipped (the insert was not durable either), and the audit trail
        keeps one row per amendment with its final state and times."""
        if self._replay_seq is not None:
            return None  # applying the journal: each record as it was (the insert may exist)
        entry = self._queued_inserts.pop(amendment_id, None)
        if entry is None or entry[0].taken:
            return None
        entry[1].update(changes)
        if changes.get("state") in UNFINISHED_STATES:
            self._queued_inserts[amendment_id] = entry  # more changes may follow
        return entry

    async def update_amendment(
        self,
        amendment_id: int,
        state: AmendState,
        ts: datetime,
        broker_ref: str | None = None,
        error: str | None = None,
        durable: bool = True,
    ) -> None:
        try:
            values: dict[str, Any] = {"state": AmendState(state), "updated_at": ts}
        except ValueError:
            raise StoreError(f"unknown amendment state {state!r}") from None
        if broker_ref is not None:
            values["broker_ref"] = broker_ref
        if error is not None:
            values["error"] = error[:_ERROR_CHARS]
        values = checked(values)
        seq = self._jot(
            "amend_state", id=amendment_id, state=AmendState(state).value, ts=ts,
            ref=broker_ref, error=error,
        )  # fmt: skip
        if values["state"] not in UNFINISHED_STATES:
            self._amendment_trades.pop(amendment_id, None)
        folded = self._fold(amendment_id, values)
        if folded is not None:
            folded[0].journaled(seq)
            if durable:
                await self._writer.wait(folded[0], self._write_timeout, amendment_id)
            return
        op = _update_one(STOP_AMENDMENT, amendment_id, values)
        await self._write(op, amendment_id=amendment_id, urgent=True, durable=durable, seq=seq)

    async def confirm_amendment(
        self,
        amendment_id: int,
        level: float,
        ts: datetime,
        profit_lock: bool = False,
        durable: bool = True,
    ) -> None:
        """One transaction: the amendment becomes ``confirmed`` and the trade's sl_price ``level``.

        With ``profit_lock`` the trade's profit_lock_applied_at is set, once (the first lock).
        """
        checked({"level": level, "ts": ts})
        seq = self._jot("confirm", id=amendment_id, level=level, ts=ts, lock=profit_lock)

        trade: dict[str, Any] = {"sl_price": level}
        if profit_lock:
            trade["profit_lock_applied_at"] = ts  # set once: the first lock (see rows.py)
        first = ("profit_lock_applied_at",) if profit_lock else ()
        changes = {"state": AmendState.CONFIRMED.value, "updated_at": ts}
        known = self._amendment_trades.pop(amendment_id, None)
        folded = self._fold(amendment_id, changes)
        if folded is not None:
            trade_id = int(folded[1]["trade_id"])  # the row lands confirmed; then the trade
            op: Op = _update_one(TRADE_LOG, trade_id, trade, first)
            await self._write(op, amendment_id=amendment_id, urgent=True, durable=durable, seq=seq)
            return
        if known is not None:  # the amendment's trade is known: two row writes, groupable
            op = RowWrites(
                (
                    _update_one(STOP_AMENDMENT, amendment_id, changes),
                    _update_one(TRADE_LOG, known, trade, first),
                )
            )
            await self._write(op, amendment_id=amendment_id, urgent=True, durable=durable, seq=seq)
            return

        async def confirm(conn: AsyncConnection) -> None:
            amendment = STOP_AMENDMENT.c
            result = await conn.execute(
                STOP_AMENDMENT.update()
                .where(amendment.id == amendment_id)
                .values(state=AmendState.CONFIRMED.value, updated_at=ts)
                .returning(amendment.trade_id)
            )
            trade_id = result.scalar_one_or_none()
            if trade_id is None:
                raise MissingRow(f"no stop_amendment {amendment_id}")
            await _update_one(TRADE_LOG, trade_id, trade, first)(conn)

        await self._write(confirm, amendment_id=amendment_id, urgent=True, durable=durable, seq=seq)

    async def close_trade(
        self,
        trade_id: int,
        exit_price: float,
        exit_reason: str,
        pnl_pips: float,
        closed_at: datetime,
        durable: bool = True,
    ) -> None:
        values = {
            "status": TradeStatus.CLOSED,
            "exit_price": exit_price,
            "exit_reason": exit_reason,
            "pnl_pips": pnl_pips,
            "closed_at": closed_at,
        }
        seq = self._jot(
            "close", trade_id=trade_id, exit_price=exit_price, exit_reason=exit_reason,
            pnl_pips=pnl_pips, closed_at=closed_at,
        )  # fmt: skip
        op = _update_one(TRADE_LOG, trade_id, checked(values))
        await self._write(op, trade_id=trade_id, durable=durable, seq=seq)

    async def set_status(self, trade_id: int, status: str, reason: str | None = None) -> None:
        """Set the status; ``reason`` is kept as exit_reason when the status is ``closed``
        (trade_log has no column for the reason of another status: the runtime logs it)."""
        try:
            value = TradeStatus(status)
        except ValueError:
            raise StoreError(f"unknown trade status {status!r}") from None
        values: dict[str, Any] = {"status": value.value}
        if value is TradeStatus.CLOSED and reason is not None:
            values["exit_reason"] = reason
        seq = self._jot("status", trade_id=trade_id, status=value.value, reason=reason)
        await self._update_trade(trade_id, values, seq)

    async def set_method(self, trade_id: int, method: str, fallback_reason: str | None) -> None:
        values = {"trailing_calculation_method": method, "fallback_reason": fallback_reason}
        seq = self._jot("method", trade_id=trade_id, method=method, fallback_reason=fallback_reason)
        await self._update_trade(trade_id, values, seq)

    async def record_recalculation(self, rec: StageRecalculation) -> None:
        """Append a real-time recalculation and make its stages the trade's current ones."""
        row, trade = recalcs.values(rec)
        seq = self._jot("recalc", rec=dataclasses.asdict(rec))
        update = _update_one(TRADE_LOG, rec.trade_id, trade)

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(recalcs.insert(conn.dialect.name, row))
            await update(conn)

        await self._write(write, trade_id=rec.trade_id, seq=seq)

    async def recalculations_since(self, since: datetime | None) -> list[StageRecalculation]:
        """Recalculations at/after ``since`` (all when None), oldest first."""
        return recalcs.from_rows(await self._rows(recalcs.select_since(since)))

    # -- control -------------------------------------------------------------------------
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


def _trades() -> sa.Select[Any]:
    return sa.select(*trade_columns()).order_by(TRADE_LOG.c.id)


def _amendments() -> sa.Select[Any]:
    return sa.select(STOP_AMENDMENT).order_by(STOP_AMENDMENT.c.id)


def _update_many(names: tuple[str, ...]) -> sa.Update:
    """An executemany update by id of the columns ``names`` (parameters ``_id``, ``_v_<name>``)."""
    columns = TRADE_LOG.c
    return (
        TRADE_LOG.update()
        .where(columns.id == sa.bindparam("_id"))
        .values({n: sa.bindparam(f"_v_{n}", type_=columns[n].type) for n in names})
    )


def _chunks(items: list[T], size: int = 500) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _if_absent(insert: Op, landed: Op) -> Op:
    """An insert applied again from the journal: nothing when its row is there already."""

    async def op(conn: AsyncConnection) -> Any:
        if await landed(conn) is not NOT_LANDED:
            return None
        return await insert(conn)

    return op


def _insert_once(insert: Op, landed: Op) -> Op:
    """An insert without a natural key, safe to retry: run again (its earlier transaction's
    outcome unknown), it first looks for the row it may have written and returns that one."""
    tried = False

    async def op(conn: AsyncConnection) -> Any:
        nonlocal tried
        if tried:
            found = await landed(conn)
            if found is not NOT_LANDED:
                return found
        tried = True
        return await insert(conn)

    return op
