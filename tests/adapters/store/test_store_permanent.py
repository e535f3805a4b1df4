"""Errors that no retry cures are refused at once and logged once; outages are still waited out."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy.exc import OperationalError

from tests.adapters.store.store_helpers import raw_sql, trade
from traild.adapters.store import open_store
from traild.adapters.store.engine import is_transient
from traild.core.errors import StoreError


def _sqlite_error(sql: str) -> OperationalError:
    """The OperationalError SQLAlchemy raises for ``sql`` on a real SQLite connection."""
    conn = sqlite3.connect(":memory:", timeout=0)
    try:
        conn.execute(sql)
    except sqlite3.Error as exc:
        return OperationalError(sql, {}, exc)
    finally:
        conn.close()
    raise AssertionError(f"{sql} did not fail")


@pytest.mark.parametrize(
    "sql", ["SELECT nosuch FROM sqlite_master", "SELECT * FROM nosuch", "SELEC 1"]
)
def test_a_missing_column_table_or_bad_statement_is_permanent(sql: str) -> None:
    assert not is_transient(_sqlite_error(sql))


def test_a_locked_sqlite_database_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError) as info:
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        holder.close()
    assert info.value.sqlite_errorcode == sqlite3.SQLITE_BUSY
    assert is_transient(OperationalError("BEGIN IMMEDIATE", {}, info.value))


async def test_a_write_to_a_dropped_column_is_refused_once_and_the_queue_moves_on(
    tmp_path: Path, log_records: list[Any]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'traild.db'}"
    with trio.fail_after(60):
        async with open_store(url, migrate=True, write_timeout=30) as store:
            added = await store.add_trade(trade("PERM-1"))
            assert added.id is not None
            await raw_sql(url, "ALTER TABLE trade_log DROP COLUMN best_price")
            with pytest.raises(StoreError, match=r"refused.*no such column"):
                await store.save_progress(added.id, 1.1012)
            await store.set_status(added.id, "closed", "manual")  # the next write is not stuck
            stats = store.statistics()
    assert (stats.queued_writes, stats.failed_writes, stats.retries) == (0, 1, 0)
    events = [r["extra"].get("event") for r in log_records]
    assert events.count("store.write_failed") == 1 and "store.unavailable" not in events
