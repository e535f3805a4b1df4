"""Alembic run in-process on a connection traild owns (Alembic's connection-sharing recipe).

These functions are synchronous and run through ``AsyncConnection.run_sync`` inside the store's
trio-asyncio loop. A database with a legacy ``trade_log`` but no traild version table is stamped at
revision 0001 (its rows kept) before the upgrade to head.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from loguru import logger

from traild.adapters.store.models import VERSION_TABLE
from traild.core.errors import SchemaOutOfDate, StoreError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LEGACY_REVISION = "0001"


@cache
def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _config(connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(connection: sa.Connection) -> str:
    """Bring the schema to head (stamping a legacy database first); returns the revision."""
    tables = set(sa.inspect(connection).get_table_names())
    cfg = _config(connection)
    if "trade_log" in tables and VERSION_TABLE not in tables:
        logger.bind(event="store.legacy_schema", revision=LEGACY_REVISION).info(
            "existing trade_log without {}: stamped at revision {}", VERSION_TABLE, LEGACY_REVISION
        )
        command.stamp(cfg, LEGACY_REVISION)
    command.upgrade(cfg, "head")
    revision = current_revision(connection)
    assert revision is not None
    return revision


def downgrade(connection: sa.Connection, revision: str) -> None:
    """Step the schema back (tests and development only; ``traild migrate`` only upgrades)."""
    command.downgrade(_config(connection), revision)


def check(connection: sa.Connection) -> None:
    """Raise SchemaOutOfDate unless the database is at head."""
    current = current_revision(connection)
    head = head_revision()
    if current == head:
        return
    known = {s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(
            f"database schema revision {current} is unknown to this traild (a newer version?)"
        )
    raise SchemaOutOfDate(
        f"database schema is at revision {current or 'none'}, traild needs {head}: "
        "run `traild migrate`"
    )
