"""The Core half of the schema: the metadata every table is declared on, the UTC timestamp type,
and the configuration service's two tables (``trailing_config`` and its audit trail).

It imports SQLAlchemy Core only, not the ORM: the short commands that read or write the
configuration (``calc``, ``halt``, ``resume``, ``config show``) load this module and
``config_sql``, not ``models`` (whose declarative classes and ``sqlalchemy.orm`` cost a tenth of
a second of their start-up). ``models`` declares the other tables on the same ``METADATA``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
VERSION_TABLE = "traild_alembic_version"  # not alembic_version: the trading app may use Alembic too
UNFINISHED_STATES = ("pending", "sent")  # AmendState values that are not final
UNFINISHED_SQL = "state IN ('pending', 'sent')"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on both engines.

    SQLite has no timezone type, so UTC is stored without an offset (ISO text that sorts); a naive
    value read back (SQLite, or a legacy ``timestamp`` column) is taken to be UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} (need timezone-aware UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite text SQLAlchemy did not parse itself
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


METADATA = sa.MetaData(naming_convention=NAMING_CONVENTION)

# Per-pair (and rollout) configuration overrides edited with ``traild config set``. ``scope`` is
# ``trailing`` or a pair key (``DEFAULT``, an epic, a symbol); ``key`` the path below it
# (``regular.stage1_trigger``); ``value`` JSON. The TOML file keeps the defaults.
TRAILING_CONFIG = sa.Table(
    "trailing_config",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("updated_by", sa.String(64), nullable=False),
    sa.UniqueConstraint("scope", "key"),
)

# Append-only: every change of ``trailing_config`` (who, what, when, old, new). Its highest id
# is the configuration's version: the daemon re-reads the overrides only when it moved.
TRAILING_CONFIG_AUDIT = sa.Table(
    "trailing_config_audit",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("scope", sa.String(64), nullable=False),
    sa.Column("key", sa.String(128), nullable=False),
    sa.Column("old_value", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("new_value", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("changed_by", sa.String(64), nullable=False),
    sa.Column("changed_at", UTCDateTime, nullable=False),
)
