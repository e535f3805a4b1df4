"""The seed plan's trade_log columns, traild's own columns, the stop_amendment log and indexes.

Written to upgrade both a fresh database (revision 0001) and a legacy one that was stamped at 0001:
columns and tables are added only where missing (the seed's ALTER TABLE list may have been applied
by hand), and on PostgreSQL naive ``timestamp`` columns of trade_log become ``timestamptz``
(read as UTC). Batch mode keeps SQLite's ALTER TABLE limits out of the way.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_REQUIRED = ("id", "deal_id", "epic", "direction")
_SEED_COLUMNS = (
    ("atr_at_entry", sa.Float()),
    ("volatility_regime", sa.String(20)),
    ("market_regime_at_entry", sa.String(50)),
    ("session_at_entry", sa.String(20)),
    ("calculated_stages", sa.JSON()),
    ("trailing_calculation_method", sa.String(50)),
)
_TRAILD_COLUMNS = (
    ("fallback_reason", sa.String(32)),
    ("trailing_override", sa.String(8)),
    ("profit_lock_applied_at", sa.DateTime(timezone=True)),
    ("stop_pips", sa.Float()),
    ("limit_pips", sa.Float()),
)
_TIMESTAMPS = ("opened_at", "closed_at", "profit_lock_applied_at")
_UNFINISHED = "state IN ('pending', 'sent')"


def _legacy_columns() -> list[sa.Column[Any]]:
    """Columns of 0001 a hand-made legacy trade_log might lack (NOT NULL ones with defaults)."""
    return [
        sa.Column("size", sa.Float, nullable=False, server_default=sa.text("1")),
        sa.Column("entry_price", sa.Float),
        sa.Column("sl_price", sa.Float),
        sa.Column("initial_sl_price", sa.Float),
        sa.Column("limit_price", sa.Float),
        sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'open'")),
        sa.Column("opened_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("exit_price", sa.Float),
        sa.Column("exit_reason", sa.String(32)),
        sa.Column("pnl_pips", sa.Float),
        sa.Column("is_scalp_trade", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("alert_id", sa.Integer),
        sa.Column("best_price", sa.Float),
    ]


def _inspector() -> sa.engine.Inspector:
    return sa.inspect(op.get_bind())


def upgrade() -> None:
    _ensure_alert_history()
    columns = {c["name"] for c in _inspector().get_columns("trade_log")}
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise RuntimeError(f"trade_log lacks {missing}: not a trade table traild can manage")
    wanted = _legacy_columns() + [sa.Column(n, t) for n, t in _SEED_COLUMNS + _TRAILD_COLUMNS]
    with op.batch_alter_table("trade_log") as batch:
        for column in wanted:
            if column.name not in columns:
                batch.add_column(column)
    _timestamps_to_utc()
    _ensure_unique_deal_id()
    op.create_index(op.f("ix_trade_log_status"), "trade_log", ["status"])
    op.create_table(
        "stop_amendment",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("trade_id", sa.Integer, sa.ForeignKey("trade_log.id"), nullable=False),
        sa.Column("deal_id", sa.String(64), nullable=False),
        sa.Column("requested_level", sa.Float, nullable=False),
        sa.Column("previous_level", sa.Float),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("broker_ref", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(op.f("ix_stop_amendment_trade_id"), "stop_amendment", ["trade_id"])
    op.create_index(
        op.f("ix_stop_amendment_unfinished"),
        "stop_amendment",
        ["state"],
        sqlite_where=sa.text(_UNFINISHED),
        postgresql_where=sa.text(_UNFINISHED),
    )


def _ensure_alert_history() -> None:
    """A legacy database stamped at 0001 may not have the alerts table at all."""
    if _inspector().has_table("alert_history"):
        return
    op.create_table(
        "alert_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("epic", sa.String(64), nullable=False),
        sa.Column("atr", sa.Float),
        sa.Column("volatility_regime", sa.String(20)),
        sa.Column("market_regime", sa.String(50)),
        sa.Column("market_session", sa.String(20)),
        sa.Column("strategy", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True)),
    )


def _timestamps_to_utc() -> None:
    """PostgreSQL: a legacy naive ``timestamp`` column is converted, its values taken as UTC."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in _inspector().get_columns("trade_log"):
        kind = column["type"]
        if column["name"] in _TIMESTAMPS and isinstance(kind, sa.DateTime) and not kind.timezone:
            op.alter_column(
                "trade_log",
                column["name"],
                type_=sa.DateTime(timezone=True),
                postgresql_using=f"{column['name']} AT TIME ZONE 'UTC'",
            )


def _ensure_unique_deal_id() -> None:
    inspector = _inspector()
    unique = [list(u["column_names"]) for u in inspector.get_unique_constraints("trade_log")]
    indexed = [list(i["column_names"]) for i in inspector.get_indexes("trade_log") if i["unique"]]
    if ["deal_id"] not in unique and ["deal_id"] not in indexed:
        op.create_index(op.f("uq_trade_log_deal_id"), "trade_log", ["deal_id"], unique=True)


def downgrade() -> None:
    op.drop_table("stop_amendment")
    op.drop_index(op.f("ix_trade_log_status"), table_name="trade_log")
    with op.batch_alter_table("trade_log") as batch:
        for name, _type in _SEED_COLUMNS + _TRAILD_COLUMNS:
            batch.drop_column(name)
