"""Outages of a real database: SQLite locked by another connection (writes queue, callers time out
with StoreError, every write lands in order once the lock is released), and PostgreSQL dropping the
store's connections (reads and writes carry on over fresh ones)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy.engine import make_url

from tests.adapters.store.store_helpers import PG_ADMIN_DB, T0, pg_execute, seeded, trade
from traild.adapters.store import WriteQueued, migrate_database, open_store
from traild.core.errors import StoreError
from traild.core.messages import AmendState, TradeStatus


async def test_locked_database_queues_writes_and_lands_them_in_order(tmp_path: Path) -> None:
    path = tmp_path / "traild.db"
    url = f"sqlite+aiosqlite:///{path}"
    with trio.fail_after(60):
        await migrate_database(url)
        [trade_id] = await seeded(url, "DEAL-1")
        async with open_store(url, write_timeout=0.2, busy_timeout=0.05) as store:
            with closing(sqlite3.connect(path, isolation_level=None)) as locker:
                locker.execute("BEGIN EXCLUSIVE")

                with pytest.raises(WriteQueued, match="database unavailable; write queued") as info:
                    await store.write_amendment(
                        trade_id, "DEAL-1", 1.1001, 1.0985, "profit_lock", T0
                    )
                assert isinstance(info.value, StoreError)
                first = info.value.amendment_id
                assert first == 1

                with pytest.raises(WriteQueued):
                    await store.update_amendment(first, AmendState.SENT, T0, broker_ref="R1")
                with pytest.raises(WriteQueued):
                    await store.confirm_amendment(first, 1.1001, T0, profit_lock=True)
                with pytest.raises(WriteQueued):
                    await store.write_amendment(trade_id, "DEAL-1", 1.1010, 1.1001, "stage1", T0)
                with pytest.raises(WriteQueued):
                    await store.save_progress(trade_id, 1.1025)
                # Reads are not blocked by the writer lock (WAL): they see the committed state.
                unchanged = await store.get_trade(trade_id)
                assert unchanged is not None and unchanged.sl_price == 1.0985
                stats = store.statistics()
                assert stats.queued_writes == 5 and stats.retries >= 1
                assert stats.last_error is not None and "locked" in stats.last_error
                await trio.sleep(0.3)  # the outage goes on; nothing is dropped
                assert store.statistics().queued_writes == 5
                locker.execute("ROLLBACK")
            await store.flush()
            assert store.statistics().queued_writes == 0
            first_row, second_row = await store.amendments_of(trade_id)
            assert (first_row.id, first_row.state, first_row.broker_ref) == (
                1,
                AmendState.CONFIRMED,
                "R1",
            )
            assert (second_row.id, second_row.state, second_row.requested_level) == (
                2,
                AmendState.PENDING,
                1.1010,
            )
            moved = await store.get_trade(trade_id)
            assert moved is not None
            assert (moved.sl_price, moved.best_price, moved.profit_lock_applied_at) == (
                1.1001,
                1.1025,
                T0,
            )
            # And new writes land again (within the timeout on a quiet machine; a loaded one
            # may answer later, so the test waits for the queue rather than the clock).
            try:
                await store.close_trade(trade_id, 1.1001, "stop", 1.0, T0 + timedelta(hours=1))
            except WriteQueued:
                await store.flush()
            closed = await store.get_trade(trade_id)
            assert closed is not None and closed.status == TradeStatus.CLOSED
            assert store.statistics().queued_writes == 0


def _drop_connections(database: str) -> int:
    rows = pg_execute(
        PG_ADMIN_DB,
        (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        ),
    )
    return int(rows[0][0])


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_postgres_dropping_the_connections_costs_no_write_and_no_read(db_url: str) -> None:
    database = make_url(db_url).database
    assert database is not None
    with trio.fail_after(60):
        async with open_store(db_url, migrate=True) as store:
            added = await store.add_trade(trade())
            assert added.id is not None
            assert await trio.to_thread.run_sync(_drop_connections, database) >= 1
            amendment = await store.write_amendment(added.id, "DEAL-1", 1.1, None, "stage1", T0)
            assert store.statistics().retries >= 1  # retried on a fresh connection
            assert await trio.to_thread.run_sync(_drop_connections, database) >= 1
            [row] = await store.amendments_of(added.id)
            assert row.id == amendment


async def test_closing_while_the_database_is_locked_is_bounded_and_reports_the_loss(
    tmp_path: Path, log_records: list[Any]
) -> None:
    path = tmp_path / "traild.db"
    url = f"sqlite+aiosqlite:///{path}"
    with trio.fail_after(60):
        await migrate_database(url)
        with closing(sqlite3.connect(path, isolation_level=None)) as locker:
            async with open_store(
                url, write_timeout=0.1, busy_timeout=0.05, drain_timeout=0.3
            ) as store:
                locker.execute("BEGIN EXCLUSIVE")
                with pytest.raises(WriteQueued):
                    await store.add_trade(trade())
                with pytest.raises(WriteQueued):
                    await store.flush()  # bounded by the drain timeout too
            locker.execute("ROLLBACK")
        async with open_store(url) as store:
            assert await store.trades_since(None) == []  # never durable, and said so:
    [lost] = [r for r in log_records if r["extra"].get("event") == "store.writes_lost"]
    assert lost["extra"]["queued"] == 1 and "locked" in lost["extra"]["error"]


async def test_an_adoption_queued_in_an_outage_never_lands_over_a_later_confirmation(
    tmp_path: Path,
) -> None:
    """Issue #19 defect 6: both write the trade's sl_price; the later one must win."""
    path = tmp_path / "traild.db"
    url = f"sqlite+aiosqlite:///{path}"
    with trio.fail_after(60):
        await migrate_database(url)
        [trade_id] = await seeded(url, "DEAL-1")
        async with open_store(url, write_timeout=0.2, busy_timeout=0.05) as store:
            with closing(sqlite3.connect(path, isolation_level=None)) as locker:
                locker.execute("BEGIN EXCLUSIVE")
                with pytest.raises(WriteQueued):
                    await store.adopt_trade(trade_id, sl_price=1.0985, initial_sl_price=1.0985)
                amendment = await store.write_amendment(
                    trade_id, "DEAL-1", 1.1001, 1.0985, "profit_lock", T0, durable=False
                )
                await store.confirm_amendment(amendment, 1.1001, T0, durable=False)
                await trio.sleep(1.0)  # the writer backs off between retries
                locker.execute("ROLLBACK")
            await store.flush()
            stored = await store.get_trade(trade_id)
            assert stored is not None and stored.sl_price == 1.1001
            assert stored.initial_sl_price == 1.0985
