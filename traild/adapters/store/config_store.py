"""The configuration service on the store's async engine: ``traild.ports.ConfigSource`` plus the
writes of ``traild config set``. The SQL itself is ``config_sql``'s, run through ``run_sync``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from traild.adapters.store import config_sql
from traild.adapters.store.aio import on_loop
from traild.adapters.store.config_sql import ConfigConflict
from traild.adapters.store.engine import describe, transaction
from traild.core.errors import StoreError
from traild.core.overrides import ConfigChange, ConfigOverride

T = TypeVar("T")

__all__ = ["ConfigConflict", "SqlConfigStore"]


class SqlConfigStore:
    """``traild.ports.ConfigSource`` plus the writes of ``traild config set``."""

    def __init__(self, loop: Any, engine: AsyncEngine) -> None:
        self._loop = loop
        self._engine = engine

    async def _run(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        async def run(engine: AsyncEngine) -> T:
            conn: AsyncConnection
            async with transaction(engine, write=write) as conn:
                return await conn.run_sync(fn)

        try:
            return await on_loop(self._loop, run, self._engine)
        except (SQLAlchemyError, OSError) as exc:
            action = "writing" if write else "reading"
            raise StoreError(f"{action} the configuration failed: {describe(exc)}") from exc

    async def config_version(self) -> int:
        """The id of the latest change (0: never changed)."""
        return await self._run(config_sql.version, write=False)

    async def config_overrides(self) -> tuple[int, list[ConfigOverride]]:
        """The version and every override, read in one transaction."""
        return await self._run(config_sql.overrides, write=False)

    async def config_history(
        self, scope: str | None = None, limit: int | None = None
    ) -> list[ConfigChange]:
        """Audit rows, oldest first (the last ``limit`` of them; one scope when given)."""
        return await self._run(lambda conn: config_sql.history(conn, scope, limit), write=False)

    async def apply_changes(
        self,
        changes: Mapping[tuple[str, str], Any],
        who: str,
        when: datetime,
        expected_version: int,
    ) -> list[ConfigChange]:
        """Set (value) or remove (None) each ``(scope, key)``; audit rows for real changes.

        ConfigConflict when the version is no longer ``expected_version``.
        """
        return await self._run(
            lambda conn: config_sql.apply_changes(conn, changes, who, when, expected_version),
            write=True,
        )
