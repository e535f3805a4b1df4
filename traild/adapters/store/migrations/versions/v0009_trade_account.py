"""The broker account of a trade (issue #22): ``trade_log.account``.

Daemons of several broker accounts may share one database, one lease each; without this column
each would adopt the others' trades too. A daemon adopts, polls and settles only the trades of
its own account (the lease's key: ``paper``, ``ig:<account_id>``) and those with no account
(NULL, every row written before this revision: a database one account uses). Trades traild
inserts itself carry its account.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # a plain ADD COLUMN (not a batch copy): SQLite keeps trade_log's change_seq triggers
    op.add_column("trade_log", sa.Column("account", sa.String(128)))


def downgrade() -> None:
    # a plain DROP COLUMN too (SQLite 3.35+): a batch copy of trade_log would drop its triggers
    op.execute("ALTER TABLE trade_log DROP COLUMN account")
