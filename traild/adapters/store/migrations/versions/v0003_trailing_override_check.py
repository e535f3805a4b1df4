"""trade_log.trailing_override: existing spellings normalised, then a CHECK constraint.

``trailing_override`` is the per-trade kill switch (``fixed`` or ``off``). A misspelt value
(``'OFF'``, ``'Off '``) used to be reported as engaged and then ignored. Rows are normalised
(trimmed, lower case, empty -> NULL); a value that still is not an override is set to NULL and
reported on stderr. The constraint then refuses anything but NULL, '' or a spelling of ``fixed`` /
``off`` (case and surrounding blanks are accepted: the store normalises them on read).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from loguru import logger

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

CONSTRAINT = "trailing_override"  # ck_trade_log_trailing_override by the naming convention
CHECK = "trailing_override IS NULL OR lower(trim(trailing_override)) IN ('fixed', 'off', '')"


def upgrade() -> None:
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE trade_log SET trailing_override = lower(trim(trailing_override)) "
            "WHERE trailing_override IS NOT NULL"
        )
    )
    bind.execute(
        sa.text("UPDATE trade_log SET trailing_override = NULL WHERE trailing_override = ''")
    )
    bad = bind.execute(
        sa.text(
            "SELECT id, trailing_override FROM trade_log WHERE trailing_override IS NOT NULL "
            "AND trailing_override NOT IN ('fixed', 'off', '')"
        )
    ).all()
    for row_id, value in bad:
        logger.bind(event="store.bad_override", trade_id=row_id, value=value).warning(
            "trade {}: trailing_override {!r} is not 'fixed' or 'off'; cleared", row_id, value
        )
    if bad:
        bind.execute(
            sa.text(
                "UPDATE trade_log SET trailing_override = NULL WHERE trailing_override "
                "IS NOT NULL AND trailing_override NOT IN ('fixed', 'off', '')"
            )
        )
    with op.batch_alter_table("trade_log") as batch:
        batch.create_check_constraint(CONSTRAINT, sa.text(CHECK))


def downgrade() -> None:
    with op.batch_alter_table("trade_log") as batch:
        batch.drop_constraint(op.f(f"ck_trade_log_{CONSTRAINT}"), type_="check")
