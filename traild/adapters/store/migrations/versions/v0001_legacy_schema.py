"""The trading app's schema before the seed plan: trade_log (no seed or traild columns), alerts.

A database that already has these tables (but no traild version table) is stamped at this revision
instead of running it, so its rows are kept.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "trade_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("deal_id", sa.String(64), nullable=False),
        sa.Column("epic", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
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
        sa.UniqueConstraint("deal_id", name=op.f("uq_trade_log_deal_id")),
    )
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


def downgrade() -> None:
    raise RuntimeError("revision 0001 is the trading app's own schema; traild never drops it")
