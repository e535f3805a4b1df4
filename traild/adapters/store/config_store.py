"""The configuration service on the store's async engine (``ConfigService``: the daemon's
``traild.ports.ConfigSource`` and the writes of ``traild config set``). The SQL is
``config_sql``'s, run through ``run_sync`` on the store's trio-asyncio loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from traild.adapters.store.aio import on_loop
from traild.adapters.store.config_sql import ConfigConflict, ConfigService
from traild.adapters.store.engine import transaction

T = TypeVar("T")

__all__ = ["ConfigConflict", "SqlConfigStore"]


class SqlConfigStore(ConfigService):
    """The configuration service on the daemon's async engine."""

    def __init__(self, loop: Any, engine: AsyncEngine) -> None:
        self._loop = loop
        self._engine = engine

    async def _transact(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        async def run(engine: AsyncEngine) -> T:
            conn: AsyncConnection
            async with transaction(engine, write=write) as conn:
                return await conn.run_sync(fn)

        return await on_loop(self._loop, run, self._engine)
