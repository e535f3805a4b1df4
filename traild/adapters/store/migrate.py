"""``traild migrate``: Alembic to head on one connection, under trio via trio-asyncio."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import trio
from loguru import logger
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from traild.adapters.store import schema
from traild.adapters.store.aio import asyncio_loop, on_loop
from traild.adapters.store.engine import (
    describe,
    display_url,
    is_transient,
    make_engine,
    transaction,
)
from traild.core.errors import StoreError

# "trailm": one migrator at a time per PostgreSQL database. Its own key: 0006's change_seq
# trigger locked "traild" (0x...6C64) on every trade_log write until 0007, and a migrator holding
# that key while it waits for the table could deadlock with a writer in that trigger.
_PG_LOCK_KEY = 0x7472_6169_6C6D
_RUN_LOCK: trio.lowlevel.RunVar[trio.Lock] = trio.lowlevel.RunVar("traild_migration")


async def migrate_database(url: str, *, busy_timeout: float = 5.0, wait: float = 0.0) -> str:
    """Bring the database at ``url`` to head; returns the revision (StoreError on failure).

    A database that is unreachable, read-only or refusing connections is retried with
    back-off for up to ``wait`` seconds (systemd's ``ExecStartPre``: a short outage must not
    use up the unit's start attempts); any other failure is raised at once.
    """
    deadline = trio.current_time() + wait
    delay = 0.5
    while True:
        try:
            async with asyncio_loop() as loop:
                return await upgrade_database(loop, url, busy_timeout)
        except StoreError as exc:
            cause = exc.__cause__
            if cause is None or not is_transient(cause) or trio.current_time() + delay > deadline:
                raise
            logger.bind(event="store.unavailable", error=str(exc)).warning(
                "database unavailable; retrying the migration in {:g} s", delay
            )
        await trio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def upgrade_database(loop: Any, url: str, busy_timeout: float) -> str:
    """The same, on an open trio-asyncio ``loop`` (``open_store(migrate=True)``)."""
    # Foreign keys off: SQLite batch migrations may rebuild a referenced table.
    engine = make_engine(url, busy_timeout=busy_timeout, foreign_keys=False)
    try:
        async with _process_lock():
            return await on_loop(loop, _upgrade, engine)
    except (SQLAlchemyError, OSError, RuntimeError) as exc:
        raise StoreError(f"migrating {display_url(url)} failed: {describe(exc)}") from exc
    finally:
        with trio.CancelScope(shield=True):
            await on_loop(loop, engine.dispose)


def _process_lock() -> trio.Lock:
    """Alembic's ``context`` and ``op`` are process-global proxies: one migration at a time."""
    try:
        return _RUN_LOCK.get()
    except LookupError:
        lock = trio.Lock()
        _RUN_LOCK.set(lock)
        return lock


async def _upgrade(engine: AsyncEngine) -> str:
    async with transaction(engine) as conn:  # all or nothing (SQLite DDL too: see engine.py)
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        return await conn.run_sync(schema.upgrade)
