"""The configuration service's SQL, on a synchronous SQLAlchemy connection: the one place its
reads and its audited change are written.

``SqlConfigStore`` runs these through ``AsyncConnection.run_sync`` on the daemon's engine;
``BlockingConfigStore`` (``config_blocking``) runs them on a plain ``sqlite3`` connection for the
short commands. The version is the audit table's highest id (one index lookup), so a daemon
polling every second reads the overrides themselves only after a change. A change is written in
one transaction together with its audit rows, and only if the version is still the one the
caller validated against (two operators editing at once cannot both win with a stale check).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from traild.adapters.store.engine import describe
from traild.adapters.store.tables import TRAILING_CONFIG, TRAILING_CONFIG_AUDIT
from traild.core.errors import StoreError
from traild.core.overrides import ConfigChange, ConfigOverride

T = TypeVar("T")
BY_CHARS = 64
_PG_LOCK_KEY = 0x7472_6169_6C63  # "trailc": one configuration writer at a time


class ConfigConflict(StoreError):
    """The configuration changed after the caller read (and validated) it."""


class ConfigService(ABC):
    """``traild.ports.ConfigSource`` plus the writes of ``traild config set``, over a store's
    ``_transact``: run ``fn(connection)`` in one read or write transaction and return its
    result. A database error becomes one StoreError; ConfigConflict passes as it is."""

    @abstractmethod
    async def _transact(self, fn: Callable[[sa.Connection], T], write: bool) -> T: ...

    async def _run(self, fn: Callable[[sa.Connection], T], write: bool) -> T:
        try:
            return await self._transact(fn, write)
        except (SQLAlchemyError, OSError) as exc:
            action = "writing" if write else "reading"
            raise StoreError(f"{action} the configuration failed: {describe(exc)}") from exc

    async def config_version(self) -> int:
        """The id of the latest change (0: never changed)."""
        return await self._run(version, write=False)

    async def config_overrides(self) -> tuple[int, list[ConfigOverride]]:
        """The version and every override, read in one transaction."""
        return await self._run(overrides, write=False)

    async def config_history(
        self, scope: str | None = None, limit: int | None = None
    ) -> list[ConfigChange]:
        """Audit rows, oldest first (the last ``limit`` of them; one scope when given)."""
        return await self._run(lambda conn: history(conn, scope, limit), write=False)

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
            lambda conn: apply_changes(conn, changes, who, when, expected_version), write=True
        )


def version(conn: sa.Connection) -> int:
    """The id of the latest change (0: never changed)."""
    return int(conn.scalar(sa.select(sa.func.max(TRAILING_CONFIG_AUDIT.c.id))) or 0)


def overrides(conn: sa.Connection) -> tuple[int, list[ConfigOverride]]:
    """The version and every override, read in one transaction."""
    c = TRAILING_CONFIG.c
    rows = conn.execute(sa.select(TRAILING_CONFIG).order_by(c.scope, c.key)).mappings()
    found = [
        ConfigOverride(r["scope"], r["key"], r["value"], r["updated_at"], r["updated_by"])
        for r in rows
    ]
    return version(conn), found


def history(conn: sa.Connection, scope: str | None, limit: int | None) -> list[ConfigChange]:
    """Audit rows, oldest first (the last ``limit`` of them; one scope when given)."""
    a = TRAILING_CONFIG_AUDIT.c
    statement = sa.select(TRAILING_CONFIG_AUDIT).order_by(a.id.desc())
    if scope is not None:
        statement = statement.where(a.scope == scope)
    if limit is not None:
        statement = statement.limit(limit)
    rows = conn.execute(statement).mappings().all()
    return [_change(r) for r in reversed(rows)]


def apply_changes(
    conn: sa.Connection,
    changes: Mapping[tuple[str, str], Any],
    who: str,
    when: datetime,
    expected_version: int,
) -> list[ConfigChange]:
    """Set (value) or remove (None) each ``(scope, key)``; audit rows for real changes.

    Run inside a write transaction (SQLite: ``BEGIN IMMEDIATE`` already serialises writers).
    ConfigConflict when the version is no longer ``expected_version``.
    """
    who = who[:BY_CHARS]
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    current = version(conn)
    if current != expected_version:
        raise ConfigConflict(
            f"the configuration changed meanwhile (version {current}, "
            f"read {expected_version}): check `traild config history` and retry"
        )
    out = []
    for (scope, key), new in changes.items():
        old = _current(conn, scope, key)
        if old == new:
            continue
        _store(conn, scope, key, old, new, who, when)
        out.append(_audit(conn, scope, key, old, new, who, when))
    return out


def _current(conn: sa.Connection, scope: str, key: str) -> Any:
    c = TRAILING_CONFIG.c
    return conn.scalar(sa.select(c.value).where(c.scope == scope, c.key == key))


def _store(
    conn: sa.Connection, scope: str, key: str, old: Any, new: Any, who: str, when: datetime
) -> None:
    c = TRAILING_CONFIG.c
    where = sa.and_(c.scope == scope, c.key == key)
    if new is None:
        conn.execute(TRAILING_CONFIG.delete().where(where))
    elif old is None:
        conn.execute(
            TRAILING_CONFIG.insert().values(
                scope=scope, key=key, value=new, updated_at=when, updated_by=who
            )
        )
    else:
        conn.execute(
            TRAILING_CONFIG.update().where(where).values(value=new, updated_at=when, updated_by=who)
        )


def _audit(
    conn: sa.Connection, scope: str, key: str, old: Any, new: Any, who: str, when: datetime
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
    row_id = conn.execute(a.insert().values(**values).returning(a.c.id)).scalar_one()
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
