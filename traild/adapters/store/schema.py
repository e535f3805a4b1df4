"""Alembic run in-process on a connection traild owns (Alembic's connection-sharing recipe).

These functions are synchronous and run through ``AsyncConnection.run_sync`` inside the store's
trio-asyncio loop. A database with a legacy ``trade_log`` but no traild version table is stamped at
revision 0001 (its rows kept) before the upgrade to head.

Checking the schema (every command that opens the store) does not import Alembic (a tenth of a
second of a short command's start-up): the revisions are read from the migration files' own
``revision`` / ``down_revision`` lines, the database's from the version table.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from loguru import logger

from traild.adapters.store.tables import VERSION_TABLE
from traild.core.errors import SchemaOutOfDate, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LEGACY_REVISION = "0001"
_REVISION_LINE = re.compile(r'^(down_revision|revision)\b[^=]*=\s*(?:"([^"]*)"|None)', re.M)


@cache
def revisions() -> dict[str, str | None]:
    """Every migration's revision and the one it follows, from the files Alembic runs."""
    found: dict[str, str | None] = {}
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        lines = dict((m[1], m[2]) for m in _REVISION_LINE.finditer(path.read_text("utf-8")))
        if lines.get("revision"):
            found[lines["revision"]] = lines.get("down_revision") or None
    return found


@cache
def head_revision() -> str:
    """The one revision no other follows (a fork would be a packaging error)."""
    chain = revisions()
    followed = set(chain.values())
    (head,) = [r for r in chain if r not in followed]
    return head


def _config(connection: sa.Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection: sa.Connection) -> str | None:
    """The database's revision (None: never migrated)."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    return connection.scalar(sa.select(version.c.version_num))


def upgrade(connection: sa.Connection) -> str:
    """Bring the schema to head (stamping a legacy database first); returns the revision."""
    from alembic import command

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
    from alembic import command

    command.downgrade(_config(connection), revision)


def check(connection: sa.Connection) -> None:
    """Raise SchemaOutOfDate unless the database is at head."""
    current = current_revision(connection)
    head = head_revision()
    if current == head:
        return
    if current is not None and current not in revisions():
        raise StoreError(
            f"database schema revision {current} is unknown to this traild (a newer version?)"
        )
    raise SchemaOutOfDate(
        f"database schema is at revision {current or 'none'}, traild needs {head}: "
        "run `traild migrate`"
    )
