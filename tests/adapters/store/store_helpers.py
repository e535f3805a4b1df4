"""Helpers of the store suite: raw SQL on a second connection, migration hooks, sample trades."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import asyncpg
import trio
import trio_asyncio
from sqlalchemy.engine import make_url

from traild.adapters.store.engine import make_engine
from traild.core.messages import Direction, TradeRecord

PG_HOST, PG_PORT, PG_USER, PG_ADMIN_DB = "127.0.0.1", 5432, "postgres", "test"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def pg_execute(database: str, statements: tuple[str, ...]) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, database=database, timeout=5
        )
        try:
            rows: list[Any] = []
            for statement in statements:
                rows = await conn.fetch(statement)
            return [tuple(r) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(run())


def _sqlite_execute(path: str, statements: tuple[str, ...]) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        rows: list[Any] = []
        for statement in statements:
            rows = conn.execute(statement).fetchall()
        return [tuple(r) for r in rows]


def raw_sql_sync(url: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run SQL on ``url`` through a separate plain connection; rows of the last statement."""
    parsed = make_url(url)
    assert parsed.database
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_execute(parsed.database, statements)
    return pg_execute(parsed.database, statements)


async def raw_sql(url: str, *statements: str) -> list[tuple[Any, ...]]:
    return await trio.to_thread.run_sync(raw_sql_sync, url, *statements)


async def on_connection(url: str, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(sync_connection)`` in one transaction on ``url`` (migration helpers in tests)."""
    async with trio_asyncio.open_loop() as loop:
        engine = make_engine(url, foreign_keys=False)

        async def run() -> Any:
            async with engine.begin() as conn:
                return await conn.run_sync(fn)

        try:
            return await trio_asyncio.aio_as_trio(run, loop=loop)()
        finally:
            await trio_asyncio.aio_as_trio(engine.dispose, loop=loop)()


def trade(deal_id: str = "DEAL-1", **fields: Any) -> TradeRecord:
    """An open EURUSD BUY trade; ``fields`` override."""
    base: dict[str, Any] = {
        "epic": "CS.D.EURUSD.MINI.IP",
        "direction": Direction.BUY,
        "entry_price": 1.1,
        "sl_price": 1.0985,
        "initial_sl_price": 1.0985,
        "opened_at": T0,
    }
    base.update(fields)
    return TradeRecord(deal_id=deal_id, **base)


def pg_url(name: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def flaky_commit(store: Any) -> list[int]:
    """The store's next commit lands, then reports a lost connection (an unknown outcome);
    returns the batch sizes committed, one entry per attempt."""
    from sqlalchemy.exc import OperationalError

    real = store._commit
    calls: list[int] = []

    async def commit(ops: list[Any]) -> list[Any]:
        result = await real(ops)
        calls.append(len(ops))
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        return result

    store._writer._commit = commit
    return calls


async def seeded(url: str, *deal_ids: str) -> list[int]:
    """Ids of trades added before a test's outage, through a store with the default write
    timeout: a test's short timeout is for the outage, not for a loaded machine's set-up."""
    from traild.adapters.store import open_store

    async with open_store(url) as store:
        return [_id(await store.add_trade(trade(deal_id))) for deal_id in deal_ids]


def _id(record: TradeRecord) -> int:
    assert record.id is not None
    return record.id
