"""Persistence: SQLAlchemy models, Alembic migrations and the trio-facing TradeStore.

``await migrate_database(url)`` brings the schema to head (``traild migrate``);
``async with open_store(url) as store:`` refuses a schema that is not at head.
"""

from traild.adapters.store.config_store import ConfigConflict, SqlConfigStore
from traild.adapters.store.engine import display_url, resolve_database_url
from traild.adapters.store.migrate import migrate_database
from traild.adapters.store.store import SqlTradeStore, open_store
from traild.adapters.store.writer import StoreStatistics
from traild.core.errors import WriteQueued

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
