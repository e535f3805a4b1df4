"""No global lock on trade_log writes; a natural key for stage recalculations (issue #27).

PostgreSQL: 0006's trigger took a transaction-level advisory lock (the migration lock's key)
before ``nextval``, so every insert and status/override/entry change by any writer waited for
every other one to commit: a trading-app transaction left open held traild's status writes. Now
``change_seq`` is the writing transaction's id (``pg_current_xact_id()``) plus a fixed offset
that puts it above every number 0006 gave out; no lock, no sequence (0006's stays, unused, for
a downgrade). Rows a transaction writes share its number. Needs PostgreSQL 13 or later (xid8).
The daemon's poll reads only below ``traild_change_horizon()`` = offset + the oldest transaction
still running (``pg_snapshot_xmin`` of the statement's snapshot): every
transaction below it has ended, so no row can later commit below the horizon and a high-water
mark never passes a row still to come. A long-open writing transaction delays the adoption of
later changes until it ends; it blocks nobody.

SQLite writers are serialised anyway: its triggers (``MAX(change_seq) + 1``) stay as they are.

``stage_recalculation``: (trade_id, recalculated_at) becomes unique, so a retried insert whose
first commit landed adds nothing (``ON CONFLICT DO NOTHING``); duplicates already written by
such retries are removed, the first of each kept.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

_XID = "pg_current_xact_id()::text::bigint"
_HORIZON = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_OLD_LOCK_KEY = 0x7472_6169_6C64  # 0006's key, restored by the downgrade
_UNIQUE = "uq_stage_recalculation_trade_id_recalculated_at"


def _postgres_upgrade() -> None:
    # Wait for writers still running 0006's trigger, keep new ones out until this commits:
    # no row gets an old-style number after the offset is fixed.
    op.execute("LOCK TABLE trade_log IN SHARE ROW EXCLUSIVE MODE")
    offset = op.get_bind().scalar(
        sa.text(
            "SELECT GREATEST(COALESCE(MAX(change_seq), 0), "
            "(SELECT last_value FROM trade_log_change_seq)) + 1 FROM trade_log"
        )
    )
    op.execute(
        f"""CREATE OR REPLACE FUNCTION traild_trade_log_change_seq() RETURNS trigger AS $$
        BEGIN
            NEW.change_seq := {int(offset)} + {_XID};
            RETURN NEW;
        END $$ LANGUAGE plpgsql"""
    )
    op.execute(
        f"""CREATE OR REPLACE FUNCTION traild_change_horizon() RETURNS bigint AS $$
            SELECT {int(offset)} + {_HORIZON}
        $$ LANGUAGE sql STABLE"""
    )


def _postgres_downgrade() -> None:
    op.execute("LOCK TABLE trade_log IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "SELECT setval('trade_log_change_seq', "
        "(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM trade_log), false)"
    )
    op.execute(
        f"""CREATE OR REPLACE FUNCTION traild_trade_log_change_seq() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({_OLD_LOCK_KEY});
            NEW.change_seq := nextval('trade_log_change_seq');
            RETURN NEW;
        END $$ LANGUAGE plpgsql"""
    )
    op.execute("DROP FUNCTION IF EXISTS traild_change_horizon()")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_upgrade()
    op.execute(
        "DELETE FROM stage_recalculation WHERE id NOT IN (SELECT MIN(id) FROM "
        "stage_recalculation GROUP BY trade_id, recalculated_at)"
    )
    op.create_index(_UNIQUE, "stage_recalculation", ["trade_id", "recalculated_at"], unique=True)


def downgrade() -> None:
    op.drop_index(_UNIQUE, table_name="stage_recalculation")
    if op.get_bind().dialect.name == "postgresql":
        _postgres_downgrade()
