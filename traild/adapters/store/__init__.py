"""Persistence: SQLAlchemy models, Alembic migrations and the trio-facing TradeStore.

``await migrate_database(url)`` brings the schema to head (``traild migrate``);
``async with open_store(url) as store:`` refuses a schema that is not at head.

The names below load on first use (PEP 562): importing one light submodule (``tables``,
``config_sql``, ``config_blocking``: what ``calc`` and ``halt`` need) does not pull in trio,
trio-asyncio and SQLAlchemy's ORM and asyncio extension with the whole store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traild.adapters.store.config_sql import ConfigConflict
    from traild.adapters.store.config_store import SqlConfigStore
    from traild.adapters.store.engine import display_url, resolve_database_url
    from traild.adapters.store.migrate import migrate_database
    from traild.adapters.store.store import SqlTradeStore, open_store
    from traild.adapters.store.writer import StoreStatistics
    from traild.core.errors import WriteQueued

_WHERE = {
    "ConfigConflict": "traild.adapters.store.config_sql",
    "SqlConfigStore": "traild.adapters.store.config_store",
    "SqlTradeStore": "traild.adapters.store.store",
    "StoreStatistics": "traild.adapters.store.writer",
    "WriteQueued": "traild.core.errors",
    "display_url": "traild.adapters.store.engine",
    "migrate_database": "traild.adapters.store.migrate",
    "open_store": "traild.adapters.store.store",
    "resolve_database_url": "traild.adapters.store.engine",
}

__all__ = [
    "ConfigConflict",
    "SqlConfigStore",
    "SqlTradeStore",
    "StoreStatistics",
    "WriteQueued",
    "display_url",
    "migrate_database",
    "open_store",
    "resolve_database_url",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
