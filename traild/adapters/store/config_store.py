"""The configuration service's tables: ``trailing_config`` and its append-only audit trail.

The version is the audit table's highest id (one index lookup), so a daemon polling every second
reads the overrides themselves only after a change. A change is written in one transaction
together with its audit rows, and only if the version is still the one the caller validated
against (two operators editing at once cannot both win with a stale check).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from traild.adapters.store.aio import on_loop
from traild.adapters.store.engine import describe, transaction
from traild.adapters.store.models import TRAILING_CONFIG, TRAILING_CONFIG_AUDIT
from traild.core.errors import StoreError
from traild.core.overrides import ConfigChange, ConfigOverride

T = TypeVar("T")
_BY_CHARS = 64
_PG_LOCK_KEY = 0x7472_6169_6C63  # "trailc": one configuration writer at a time


class ConfigConflict(StoreError):
    """The configuration changed after the caller read (and validated) it."""


class SqlConfigStore:
    """``traild.ports.ConfigSource`` plus the writes of ``traild config set``."""

    def __init__(self, loop: Any, engine: AsyncEngine) -> None:
        self._loop = loop
        self._engine = engine

    async def _run(self, fn: Callable[[AsyncConnection], Awaitable[T]], write: bool) -> T:
        async def run(engine: AsyncEngine) -> T:
            async with transaction(engine, write=write) as conn:
                return await fn(conn)

        try:
            return await on_loop(self._loop, run, self._engine)
        except (SQLAlchemyError, OSError) as exc:
            action = "writing" if write else "reading"
            raise StoreError(f"{action} the configuration failed: {describe(exc)}") from exc

    # -- reads ---------------------------------------------------------------------------
    async def config_version(self) -> int:
        """The id of the latest change (0: never changed)."""
        return await self._run(_version, write=False)

    async def config_overrides(self) -> tuple[int, list[ConfigOverride]]:
        """The version and every override, read in one transaction."""

        async def read(conn: AsyncConnection) -> tuple[int, list[ConfigOverride]]:
            c = TRAILING_CONFIG.c
            rows = (
                await conn.execute(sa.select(TRAILING_CONFIG).order_by(c.scope, c.key))
            ).mappings()
            overrides = [
                ConfigOverride(r["scope"], r["key"], r["value"], r["updated_at"], r["updated_by"])
                for r in rows
            ]
            return await _version(conn), overrides

        return await self._run(read, write=False)

    async def config_history(
        self, scope: str | None = None, limit: int | None = None
    ) -> list[ConfigChange]:
        """Audit rows, oldest first (the last ``limit`` of them; one scope when given)."""

        async def read(conn: AsyncConnection) -> list[ConfigChange]:
            a = TRAILING_CONFIG_AUDIT.c
            statement = sa.select(TRAILING_CONFIG_AUDIT).order_by(a.id.desc())
            if scope is not None:
                statement = statement.where(a.scope == scope)
            if limit is not None:
                statement = statement.limit(limit)
            rows = (await conn.execute(statement)).mappings().all()
            return [_change(r) for r in reversed(rows)]

        return await self._run(read, write=False)

    # -- writes --------------------------------------------------------------------------
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
        who = who[:_BY_CHARS]

        async def write(conn: AsyncConnection) -> list[ConfigChange]:
            if conn.dialect.name == "postgresql":  # SQLite: BEGIN IMMEDIATE already serialises
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            current = await _version(conn)
            if current != expected_version:
                raise ConfigConflict(
                    f"the configuration changed meanwhile (version {current}, "
                    f"read {expected_version}): check `traild config history` and retry"
                )
            out = []
            for (scope, key), new in changes.items():
                old = await _current(conn, scope, key)
                if old == new:
                    continue
                await _store(conn, scope, key, old, new, who, when)
                out.append(await _audit(conn, scope, key, old, new, who, when))
            return out

        return await self._run(write, write=True)


async def _version(conn: AsyncConnection) -> int:
    return int(await conn.scalar(sa.select(sa.func.max(TRAILING_CONFIG_AUDIT.c.id))) or 0)


async def _current(conn: AsyncConnection, scope: str, key: str) -> Any:
    c = TRAILING_CONFIG.c
    return await conn.scalar(sa.select(c.value).where(c.scope == scope, c.key == key))


async def _store(
    conn: AsyncConnection, scope: str, key: str, old: Any, new: Any, who: str, when: datetime
) -> None:
    c = TRAILING_CONFIG.c
    where = sa.and_(c.scope == scope, c.key == key)
    if new is None:
        await conn.execute(TRAILING_CONFIG.delete().where(where))
    elif old is None:
        await conn.execute(
            TRAILING_CONFIG.insert().values(
                scope=scope, key=key, value=new, updated_at=when, updated_by=who
            )
        )
    else:
        await conn.execute(
            TRAILING_CONFIG.update().where(where).values(value=new, updated_at=when, updated_by=who)
        )


async def _audit(
    conn: AsyncConnection, scope: str, key: str, old: Any, new: Any, who: str, when: datetime
) -> ConfigChange:
    a = TRAILING_CONFIG_AUDIT
    values = {
        "scope": scope,
        "key": key,
        "old_value": old,
        "new_value": new,
        "changed_by": who,
        "changed_at": when,
    }
    row_id = (await conn.execute(a.insert().values(**values).returning(a.c.id))).scalar_one()
    return ConfigChange(int(row_id), scope, key, old, new, who, when)


def _change(row: sa.RowMapping) -> ConfigChange:
    return ConfigChange(
        int(row["id"]),
        row["scope"],
        row["key"],
        row["old_value"],
        row["new_value"],
        row["changed_by"],
        row["changed_at"],
    )
