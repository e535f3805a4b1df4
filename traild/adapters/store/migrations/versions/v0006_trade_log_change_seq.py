"""trade_log.change_seq: a change sequence the daemon polls incrementally (issue #13).

Every insert, and every update that changes what the daemon adopts on (``status``,
``trailing_override``, ``entry_price``), gives the row the next sequence number — set by
triggers, so a trading app inserting rows needs no change. The daemon keeps a high-water mark
and reads only rows above it, instead of every open trade each poll.

On PostgreSQL the trigger takes a transaction-level advisory lock before ``nextval``, so
sequence numbers become visible in commit order (otherwise a transaction holding a lower number
could commit after the poller moved past it, and its trade would never be adopted). SQLite
writers are serialised anyway; there ``MAX(change_seq) + 1`` (indexed) is the next number.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_WATCHED = ("status", "trailing_override", "entry_price")
_CHANGED = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _WATCHED)
_PG_CHANGED = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _WATCHED)
_LOCK_KEY = 0x7472_6169_6C64  # "traild": the advisory lock serialising change_seq allocation
_SQLITE_NEXT = "(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM trade_log)"

_SQLITE = [
    f"""CREATE TRIGGER trade_log_change_seq_insert AFTER INSERT ON trade_log
    FOR EACH ROW BEGIN
        UPDATE trade_log SET change_seq = {_SQLITE_NEXT} WHERE id = NEW.id;
    END""",
    f"""CREATE TRIGGER trade_log_change_seq_update AFTER UPDATE OF {", ".join(_WATCHED)}
    ON trade_log FOR EACH ROW WHEN {_CHANGED} BEGIN
        UPDATE trade_log SET change_seq = {_SQLITE_NEXT} WHERE id = NEW.id;
    END""",
]
_POSTGRES = [
    "CREATE SEQUENCE IF NOT EXISTS trade_log_change_seq",
    "SELECT setval('trade_log_change_seq', "
    "(SELECT COALESCE(MAX(change_seq), 0) + 1 FROM trade_log), false)",
    f"""CREATE OR REPLACE FUNCTION traild_trade_log_change_seq() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({_LOCK_KEY});
        NEW.change_seq := nextval('trade_log_change_seq');
        RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER trade_log_change_seq_insert BEFORE INSERT ON trade_log
    FOR EACH ROW EXECUTE FUNCTION traild_trade_log_change_seq()""",
    f"""CREATE TRIGGER trade_log_change_seq_update BEFORE UPDATE OF {", ".join(_WATCHED)}
    ON trade_log FOR EACH ROW WHEN ({_PG_CHANGED})
    EXECUTE FUNCTION traild_trade_log_change_seq()""",
]


def upgrade() -> None:
    with op.batch_alter_table("trade_log") as batch:
        batch.add_column(sa.Column("change_seq", sa.BigInteger))
    op.execute("UPDATE trade_log SET change_seq = id")
    op.create_index(op.f("ix_trade_log_change_seq"), "trade_log", ["change_seq"])
    statements = _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger in ("trade_log_change_seq_insert", "trade_log_change_seq_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON trade_log" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS traild_trade_log_change_seq()")
        op.execute("DROP SEQUENCE IF EXISTS trade_log_change_seq")
    op.drop_index(op.f("ix_trade_log_change_seq"), table_name="trade_log")
    with op.batch_alter_table("trade_log") as batch:
        batch.drop_column("change_seq")
