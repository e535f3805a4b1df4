"""Many open trades on the real store: every one adopted through a slow database, and a poll
that reads only what changed since the previous one (trade_log.change_seq, migration 0006)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from typing import Any

import trio
from sqlalchemy.engine import make_url

from tests.adapters.store.store_helpers import raw_sql, raw_sql_sync
from tests.runtime.fakes import ScriptedBroker
from traild.adapters.store import SqlTradeStore, migrate_database, open_store
from traild.config.settings import Settings
from traild.daemon.app import make_policy
from traild.runtime.gateway import Gateway
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor

EPICS = ("CS.D.EURUSD.MINI.IP", "CS.D.GBPUSD.MINI.IP", "CS.D.USDJPY.MINI.IP")
COLUMNS = (
    "deal_id, epic, direction, size, entry_price, sl_price, initial_sl_price, status, "
    "opened_at, is_scalp_trade"
)


def _row(i: int) -> str:
    epic = EPICS[i % len(EPICS)]
    entry, pip = (150.0, 0.01) if "JPY" in epic else (1.1, 0.0001)
    direction, sign = ("BUY", 1) if i % 2 == 0 else ("SELL", -1)
    stop = round(entry - sign * (10 + i % 30) * pip, 5)
    return (
        f"('SCALE-{i:05d}', '{epic}', '{direction}', 1, {entry}, {stop}, {stop}, 'open', "
        f"'2024-01-02 10:00:00', {'true' if i % 3 == 0 else 'false'})"
    )


def _insert_sql(first: int, count: int) -> list[str]:
    """INSERTs of ``count`` open trades, as a trading app would write them (500 rows each)."""
    rows = [_row(i) for i in range(first, first + count)]
    return [
        f"INSERT INTO trade_log ({COLUMNS}) VALUES " + ", ".join(rows[i : i + 500])
        for i in range(0, len(rows), 500)
    ]


async def _database(url: str, trades: int) -> None:
    await migrate_database(url)
    await raw_sql(url, *_insert_sql(0, trades))


@asynccontextmanager
async def _daemon(store: SqlTradeStore) -> AsyncIterator[Supervisor]:
    settings = Settings()
    broker = ScriptedBroker()
    gateway = Gateway(broker, store, lambda: _now())
    router = Router(lockstep=True, settle=gateway.wait_idle)
    sup = Supervisor(
        make_policy(settings, broker),
        store,
        broker,
        gateway,
        router,
        settings.instrument_table(),
        {},
        _now,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        await nursery.start(sup.run)
        yield sup
        nursery.cancel_scope.cancel()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2024, 1, 2, 10, 0, 1, tzinfo=UTC)


async def test_ten_thousand_trades_are_all_adopted_through_a_locked_database(
    tmp_path: Any, log_records: list[Any]
) -> None:
    """A write timeout of 0.2 s and a database another writer holds locked: adoption goes on,
    the adoption records stay queued (store.degraded) and all land once the lock is gone."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    with trio.fail_after(120):
        await _database(url, 10_000)
        path = make_url(url).database
        assert path is not None
        with closing(sqlite3.connect(path, isolation_level=None)) as locker:
            async with open_store(url, write_timeout=0.2, busy_timeout=0.1) as store:
                locker.execute("BEGIN IMMEDIATE")  # the slow store: every commit must retry
                async with _daemon(store) as sup:
                    assert len(sup.slots) == 10_000
                    assert store.statistics().queued_writes > 0
                    locker.execute("ROLLBACK")
                    await store.flush()
        events = [r["extra"].get("event") for r in log_records]
        assert "store.degraded" in events and "daemon.failed" not in events
        assert events.count("trade.adopted") == 10_000
        stored = raw_sql_sync(
            url, "SELECT count(*) FROM trade_log WHERE calculated_stages IS NOT NULL"
        )
        assert stored == [(10_000,)]


async def test_poll_adopts_a_new_trade_and_rereads_nothing_unchanged(db_url: str) -> None:
    """With many trades open, a poll reads only the rows changed since the previous poll: none
    when nothing changed, the new trade, the trade whose override an operator changed."""
    open_trades = 10_000 if db_url.startswith("sqlite") else 1_000
    with trio.fail_after(120):
        await _database(db_url, open_trades)
        async with open_store(db_url, write_timeout=5) as store, _daemon(store) as sup:
            await _polled(sup, lambda: len(sup.slots) == open_trades)
            await store.flush()
            await sup.poll_store()  # reads back the adoption's own status-free writes: none
            read = store.trade_rows_read
            await sup.poll_store()
            assert store.trade_rows_read == read  # nothing changed, nothing read
            await raw_sql(db_url, *_insert_sql(open_trades, 1))
            await _polled(sup, lambda: len(sup.slots) == open_trades + 1)
            assert store.trade_rows_read == read + 1
            off_sql = "UPDATE trade_log SET trailing_override = 'off' WHERE deal_id = 'SCALE-00007'"
            await raw_sql(db_url, off_sql)
            await _polled(sup, lambda: store.trade_rows_read == read + 2)
            off = [s.actor for s in sup.slots.values() if s.actor.trade.deal_id == "SCALE-00007"]
            assert off[0].trade.trailing_override == "off"


async def _polled(sup: Any, done: Any) -> None:
    """Poll until ``done()``: on PostgreSQL the poll reads below the server's oldest running
    transaction (0007), which a test running beside this one can hold back for a moment."""
    while not done():
        await sup.poll_store()
        if not done():
            await trio.sleep(0.05)


async def test_best_prices_are_saved_in_one_batched_write_last_value_wins(db_url: str) -> None:
    with trio.fail_after(60):
        await _database(db_url, 3)
        async with open_store(db_url, write_timeout=5) as store:
            ids = {t.deal_id: t.id for t in await store.load_open_trades()}
            first, second = ids["SCALE-00000"], ids["SCALE-00001"]
            assert first is not None and second is not None
            await store.save_progress_many([(first, 1.1012), (second, 1.0991)], durable=False)
            await store.save_progress_many([(first, 1.1015)])
            assert store.statistics().queued_writes == 0
            best = {t.deal_id: t.best_price for t in await store.load_open_trades()}
        assert best == {"SCALE-00000": 1.1015, "SCALE-00001": 1.0991, "SCALE-00002": None}


async def test_writes_queued_without_waiting_land_when_the_caller_is_cancelled(
    tmp_path: Any,
) -> None:
    """A confirmation queued with durable=False and then the daemon cancelled: the store's
    writer drains it on the way out instead of being cancelled with the caller."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    with trio.fail_after(60):
        await _database(url, 1)
        with trio.CancelScope() as scope:
            async with open_store(url, write_timeout=5) as store:
                (trade,) = await store.load_open_trades()
                assert trade.id is not None
                await store.close_trade(trade.id, 1.1012, "stop", 1.2, _now(), durable=False)
                scope.cancel()
                await trio.sleep_forever()
        assert raw_sql_sync(url, "SELECT status, exit_price FROM trade_log") == [("closed", 1.1012)]
