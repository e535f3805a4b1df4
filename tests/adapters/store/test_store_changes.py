"""trade_log.change_seq without a global lock (migration 0007): a trading app's open transaction
blocks none of traild's writes, and the poll never passes a row that commits later."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import trio
import trio_asyncio

from tests.adapters.store.store_helpers import (
    PG_HOST,
    PG_PORT,
    PG_USER,
    on_connection,
    pg_url,
    raw_sql,
    trade,
)
from traild.adapters.store import SqlTradeStore, open_store, schema

INSERT = (
    "INSERT INTO trade_log (deal_id, epic, direction, size, entry_price, sl_price, status, "
    "is_scalp_trade) VALUES ('{deal}', 'CS.D.EURUSD.MINI.IP', 'BUY', 1, 1.1, 1.0985, 'open', "
    "false)"
)


class TradingApp:
    """The trading app's own PostgreSQL connection, on the store's asyncio loop."""

    def __init__(self, loop: Any, conn: Any) -> None:
        self._loop, self._conn = loop, conn

    def _aio(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        return trio_asyncio.aio_as_trio(fn, loop=self._loop)

    async def execute(self, sql: str) -> None:
        await self._aio(self._conn.execute)(sql)


@asynccontextmanager
async def trading_app(store: SqlTradeStore, database: str) -> AsyncIterator[TradingApp]:
    loop = store._loop
    connect = trio_asyncio.aio_as_trio(asyncpg.connect, loop=loop)
    conn = await connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database)
    try:
        yield TradingApp(loop, conn)
    finally:
        with trio.CancelScope(shield=True):
            await trio_asyncio.aio_as_trio(conn.close, loop=loop)()


async def _poll(store: SqlTradeStore, after: int, limit: int = 1000) -> tuple[list[str], int]:
    trades, top = await store.changed_trades(after, limit)
    return [t.deal_id for t in trades], top


async def _poll_some(store: SqlTradeStore, after: int, limit: int = 1000) -> tuple[list[str], int]:
    """The first non-empty poll: the read horizon is server-wide, so another session's open
    transaction (a test running beside this one) may hold rows back for a moment (0007's
    documented trade-off); the caller's deadline bounds the wait."""
    while True:
        seen, top = await _poll(store, after, limit)
        if seen:
            return seen, top
        await trio.sleep(0.05)


async def test_an_open_app_transaction_blocks_no_write_and_its_row_is_never_missed(
    pg_database: str,
) -> None:
    url = pg_url(pg_database)
    await raw_sql(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    with trio.fail_after(60):
        async with open_store(url, migrate=True, write_timeout=10) as store:
            old = await store.add_trade(trade("OLD-1"))
            assert old.id is not None
            seen, mark = await _poll(store, 0)
            assert seen == ["OLD-1"]
            async with trading_app(store, pg_database) as app:
                await app.execute("BEGIN")
                await app.execute(INSERT.format(deal="APP-1"))  # and the app goes on working
                # 0006 held every trade_log write of traild here until the app committed
                await store.set_status(old.id, "closed", "manual")
                await store.add_trade(trade("TRAILD-2"))
                seen, mark = await _poll(store, mark)
                assert seen == []  # committed, but behind the app's open transaction: not yet
                await app.execute("COMMIT")
            seen, mark = await _poll(store, mark)
            assert seen == [
                "APP-1",
                "OLD-1",
                "TRAILD-2",
            ]  # the app's row first: its number is lowest
            assert await _poll(store, mark) == ([], mark)


async def test_one_transactions_rows_are_never_split_across_pages(pg_database: str) -> None:
    url = pg_url(pg_database)
    await raw_sql(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    with trio.fail_after(60):
        async with open_store(url, migrate=True, write_timeout=10) as store:
            head, _, row = INSERT.format(deal="BULK-{i}").partition(" VALUES ")
            rows = ", ".join(row.replace("{i}", str(i)) for i in range(5))
            await raw_sql(url, f"{head} VALUES {rows}")  # one statement: one transaction
            await store.add_trade(trade("LATER-1"))
            seen, mark = await _poll_some(store, 0, limit=2)
            assert seen == [f"BULK-{i}" for i in range(5)]  # one change number, one page
            assert (await _poll_some(store, mark, limit=2))[0] == ["LATER-1"]


async def test_the_migration_keeps_numbers_above_the_ones_0006_gave_out(db_url: str) -> None:
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            await store.add_trade(trade("BEFORE-1"))
        await _step(db_url, "0006")
        await raw_sql(db_url, INSERT.format(deal="UNDER-0006"))
        async with open_store(db_url, migrate=True, write_timeout=10) as store:
            seen, mark = await _poll(store, 0)
            assert seen == ["BEFORE-1", "UNDER-0006"]
            await store.add_trade(trade("AFTER-1"))
            assert (await _poll(store, mark))[0] == ["AFTER-1"]


async def _step(url: str, revision: str) -> None:
    await on_connection(url, lambda c: schema.downgrade(c, revision))
