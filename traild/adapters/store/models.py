"""The schema as SQLAlchemy 2 models: ``trade_log``, ``alert_history``, ``stop_amendment``,
``stage_recalculation``, ``traild_lease`` (the configuration tables are Core tables declared on
the same metadata in ``tables``).

The migrations under ``migrations/versions`` are the DDL source of truth (frozen snapshots); these
models describe head and are what the store queries. A test checks the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from traild.adapters.store.tables import METADATA, UNFINISHED_SQL, UTCDateTime


class Base(DeclarativeBase):
    metadata = METADATA


class TradeLog(Base):
    """One row per trade (SPEC §5); traild owns ``sl_price`` once it has adopted the row."""

    __tablename__ = "trade_log"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    deal_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    epic: Mapped[str] = mapped_column(sa.String(64))
    direction: Mapped[str] = mapped_column(sa.String(8))
    size: Mapped[float] = mapped_column(sa.Float, server_default=sa.text("1"))
    entry_price: Mapped[float | None] = mapped_column(sa.Float)
    sl_price: Mapped[float | None] = mapped_column(sa.Float)
    initial_sl_price: Mapped[float | None] = mapped_column(sa.Float)
    limit_price: Mapped[float | None] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(16), server_default=sa.text("'open'"))
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exit_price: Mapped[float | None] = mapped_column(sa.Float)
    exit_reason: Mapped[str | None] = mapped_column(sa.String(32))
    pnl_pips: Mapped[float | None] = mapped_column(sa.Float)
    is_scalp_trade: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    alert_id: Mapped[int | None] = mapped_column(sa.Integer)
    best_price: Mapped[float | None] = mapped_column(sa.Float)
    # The seed plan's columns (its "Migration SQL").
    atr_at_entry: Mapped[float | None] = mapped_column(sa.Float)
    volatility_regime: Mapped[str | None] = mapped_column(sa.String(20))
    market_regime_at_entry: Mapped[str | None] = mapped_column(sa.String(50))
    session_at_entry: Mapped[str | None] = mapped_column(sa.String(20))
    calculated_stages: Mapped[Any | None] = mapped_column(sa.JSON)
    trailing_calculation_method: Mapped[str | None] = mapped_column(sa.String(50))
    # traild's own.
    fallback_reason: Mapped[str | None] = mapped_column(sa.String(32))
    trailing_override: Mapped[str | None] = mapped_column(sa.String(8))
    profit_lock_applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_pips: Mapped[float | None] = mapped_column(sa.Float)
    limit_pips: Mapped[float | None] = mapped_column(sa.Float)
    # Migration 0009: the broker account the trade belongs to (a lease's key: "paper",
    # "ig:<account_id>"); NULL: whichever daemon uses this database (one account).
    account: Mapped[str | None] = mapped_column(sa.String(128))
    # Set by triggers (migrations 0006, 0007) on insert and on a change of status,
    # trailing_override or entry_price: the daemon's poll reads only rows above its high-water
    # mark (PostgreSQL: the writing transaction's id, read below traild_change_horizon()).
    change_seq: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.Index("ix_trade_log_status", "status"),
        sa.Index("ix_trade_log_change_seq", "change_seq"),
        # migration 0003; the store normalises case and blanks on read
        sa.CheckConstraint(
            "trailing_override IS NULL OR lower(trim(trailing_override)) IN ('fixed', 'off', '')",
            name="trailing_override",
        ),
    )


class AlertHistory(Base):
    """The trading app's signal; ATR in price units. Legacy tables may say ``volatility_state``."""

    __tablename__ = "alert_history"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    epic: Mapped[str] = mapped_column(sa.String(64))
    atr: Mapped[float | None] = mapped_column(sa.Float)
    volatility_regime: Mapped[str | None] = mapped_column(sa.String(20))
    market_regime: Mapped[str | None] = mapped_column(sa.String(50))
    market_session: Mapped[str | None] = mapped_column(sa.String(20))
    strategy: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StopAmendment(Base):
    """Append-only audit and write-ahead log of stop changes. Ids are allocated by the store."""

    __tablename__ = "stop_amendment"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    trade_id: Mapped[int] = mapped_column(sa.ForeignKey("trade_log.id"))
    deal_id: Mapped[str] = mapped_column(sa.String(64))
    requested_level: Mapped[float] = mapped_column(sa.Float)
    previous_level: Mapped[float | None] = mapped_column(sa.Float)
    reason: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16))
    broker_ref: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # migration 0008: the fencing token of the lease its writer held (NULL: before leases)
    lease_token: Mapped[int | None] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.Index("ix_stop_amendment_trade_id", "trade_id"),
        sa.Index(
            "ix_stop_amendment_unfinished",
            "state",
            sqlite_where=sa.text(UNFINISHED_SQL),
            postgresql_where=sa.text(UNFINISHED_SQL),
        ),
    )


class StageRecalculationRow(Base):
    """Append-only history of real-time stage recalculations (SPEC §3, §5)."""

    __tablename__ = "stage_recalculation"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    trade_id: Mapped[int] = mapped_column(sa.ForeignKey("trade_log.id"))
    recalculated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    old_volatility_regime: Mapped[str | None] = mapped_column(sa.String(20))
    new_volatility_regime: Mapped[str | None] = mapped_column(sa.String(20))
    market_regime: Mapped[str | None] = mapped_column(sa.String(50))
    atr_pips: Mapped[float | None] = mapped_column(sa.Float)
    session: Mapped[str | None] = mapped_column(sa.String(20))
    method: Mapped[str] = mapped_column(sa.String(50))
    fallback_reason: Mapped[str | None] = mapped_column(sa.String(32))
    old_stages: Mapped[Any] = mapped_column(sa.JSON, nullable=False)
    new_stages: Mapped[Any] = mapped_column(sa.JSON, nullable=False)

    __table_args__ = (
        sa.Index("ix_stage_recalculation_trade_id", "trade_id"),
        # migration 0007: one row per recalculation, however often its insert is retried
        sa.Index(
            "uq_stage_recalculation_trade_id_recalculated_at",
            "trade_id",
            "recalculated_at",
            unique=True,
        ),
    )


class TraildLease(Base):
    """One owner per broker account (migration 0008, ``core/lease.py``): who, until when (the
    database's clock, seconds since the epoch) and the fencing token, one more per change of
    owner."""

    __tablename__ = "traild_lease"

    account: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(255))
    home: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column(sa.Integer)
    token: Mapped[int] = mapped_column(sa.BigInteger)
    acquired_at: Mapped[float] = mapped_column(sa.Float)
    expires_at: Mapped[float] = mapped_column(sa.Float)


TRADE_LOG = Base.metadata.tables["trade_log"]
ALERT_HISTORY = Base.metadata.tables["alert_history"]
STOP_AMENDMENT = Base.metadata.tables["stop_amendment"]
STAGE_RECALCULATION = Base.metadata.tables["stage_recalculation"]
TRAILD_LEASE = Base.metadata.tables["traild_lease"]
