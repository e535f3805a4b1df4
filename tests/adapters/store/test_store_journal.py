"""The store with its journal: records the database did not take before the store closed are
applied at the next open, on SQLite and PostgreSQL (issue #20)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.adapters.store.store_helpers import T0, pg_execute, trade
from tests.tcp_proxy import TcpProxy
from traild.adapters.store import migrate_database, open_store
from traild.adapters.store.journal import read_journal
from traild.core.messages import AmendState

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def _queue_a_trades_life(store: Any, trade_id: int) -> None:
    """What the daemon writes without waiting: an amendment sent, confirmed, then the close."""
    amendment = await store.write_amendment(
        trade_id, "DEAL-1", 1.1001, 1.0985, "profit_lock", T0, durable=False
    )
    await store.update_amendment(amendment, AmendState.SENT, T0, durable=False)
    await store.confirm_amendment(amendment, 1.1001, T0, profit_lock=True, durable=False)
    await store.save_progress_many([(trade_id, 1.1030)], durable=False)
    await store.close_trade(trade_id, 1.1001, "stop", 1.0, T0, durable=False)


async def _check_landed(url: str, journal: Path, trade_id: int) -> None:
    async with open_store(url, journal_dir=journal, read_wait=10) as store:
        stored = await store.get_trade(trade_id)
        (amendment,) = await store.amendments_of(trade_id)
        next_id = await store.write_amendment(
            trade_id, "DEAL-1", 1.1005, 1.1001, "stage1", T0, durable=False
        )
    assert stored is not None
    assert (stored.status.value, stored.sl_price, stored.best_price) == ("closed", 1.1001, 1.103)
    assert stored.profit_lock_applied_at is not None
    assert (amendment.id, amendment.state) == (1, AmendState.CONFIRMED)
    assert next_id == 2  # ids continue after the journal's
    assert read_journal(journal).pending == []  # all in the database: nothing left to apply


async def test_records_queued_behind_a_locked_sqlite_database_land_at_the_next_open(
    tmp_path: Path, log_records: list[Any]
) -> None:
    path, journal = tmp_path / "traild.db", tmp_path / "journal"
    url = f"sqlite+aiosqlite:///{path}"
    with trio.fail_after(60):
        await migrate_database(url)
        async with open_store(url) as plain:
            added = await plain.add_trade(trade())
        assert added.id is not None
        with closing(sqlite3.connect(path, isolation_level=None)) as locker:
            locker.execute("BEGIN EXCLUSIVE")
            async with open_store(
                url, journal_dir=journal, busy_timeout=0.05, drain_timeout=0.5
            ) as store:
                await _queue_a_trades_life(store, added.id)
            assert store.pending_on_close == 5
            locker.execute("ROLLBACK")
        events = [r["extra"].get("event") for r in log_records]
        assert "store.journal_pending" in events and "store.writes_lost" not in events
        await _check_landed(url, journal, added.id)


async def test_records_queued_through_a_cut_postgresql_link_land_at_the_next_open(
    tmp_path: Path, pg_database: str
) -> None:
    await trio.to_thread.run_sync(
        pg_execute, pg_database, ("DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    )
    journal = tmp_path / "journal"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            proxy = TcpProxy(5432)
            await nursery.start(proxy.run)
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/{pg_database}"
            await migrate_database(url)
            async with open_store(url) as plain:
                added = await plain.add_trade(trade())
            assert added.id is not None
            async with open_store(url, journal_dir=journal, drain_timeout=0.5) as store:
                proxy.cut()
                await _queue_a_trades_life(store, added.id)
            assert store.pending_on_close == 5
            await proxy.restore()
            await _check_landed(url, journal, added.id)
            nursery.cancel_scope.cancel()
