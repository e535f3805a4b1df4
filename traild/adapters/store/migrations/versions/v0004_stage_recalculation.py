"""The append-only history of real-time stage recalculations (``stage_recalculation``).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "stage_recalculation",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("trade_id", sa.Integer, sa.ForeignKey("trade_log.id"), nullable=False),
        sa.Column("recalculated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("old_volatility_regime", sa.String(20)),
        sa.Column("new_volatility_regime", sa.String(20)),
        sa.Column("market_regime", sa.String(50)),
        sa.Column("atr_pips", sa.Float),
        sa.Column("session", sa.String(20)),
        sa.Column("method", sa.String(50), nullable=False),
        sa.Column("fallback_reason", sa.String(32)),
        sa.Column("old_stages", sa.JSON, nullable=False),
        sa.Column("new_stages", sa.JSON, nullable=False),
    )
    op.create_index("ix_stage_recalculation_trade_id", "stage_recalculation", ["trade_id"])


def downgrade() -> None:
    op.drop_index("ix_stage_recalculation_trade_id", table_name="stage_recalculation")
    op.drop_table("stage_recalculation")
