"""Frozen values that cross boundaries: ticks, trade records, commands and events.

Commands are imperative (``MoveStop``), events past tense (``StopConfirmed``). Prices here are
plain floats already rounded to the instrument's tick; the ladder works in integer ticks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL: the sign of a favourable price move."""
        return 1 if self is Direction.BUY else -1

    @classmethod
    def parse(cls, text: str) -> Direction:
        value = text.strip().upper()
        if value in ("BUY", "LONG", "B"):
            return cls.BUY
        if value in ("SELL", "SHORT", "S"):
            return cls.SELL
        raise ValueError(f"direction must be BUY or SELL, not {text!r}")


class TradeStatus(StrEnum):
    PENDING = "pending"  # recorded, waiting for the paper broker's fill
    OPEN = "open"
    CLOSED = "closed"
    UNMANAGED = "unmanaged"  # past its restart budget; the broker stop stays as it is


class AmendState(StrEnum):
    PENDING = "pending"  # written before it is sent (write-ahead)
    SENT = "sent"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (AmendState.CONFIRMED, AmendState.REJECTED, AmendState.FAILED)


class Reason(StrEnum):
    """The rung that determined an amendment's level."""

    PROFIT_LOCK = "profit_lock"
    EARLY_BE = "early_be"
    STAGE1 = "stage1"
    STAGE2 = "stage2"
    STAGE3 = "stage3"
    # Not a rung: the broker's stop was found looser than the confirmed one, or gone (moved
    # at the broker, by a person or by the broker): the confirmed level is sent again.
    RESTORE = "restore"


@dataclass(frozen=True, slots=True)
class Tick:
    """One quote. ``ts`` is timezone-aware UTC."""

    epic: str
    ts: datetime
    bid: float
    ask: float


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A row of ``alert_history``: the signal's market conditions (ATR in price units)."""

    id: int
    epic: str
    atr: float | None = None
    volatility_regime: str | None = None
    market_regime: str | None = None
    market_session: str | None = None
    strategy: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A row of ``trade_log`` in traild's own types (no ORM object ever leaves the store)."""

    deal_id: str
    epic: str
    direction: Direction
    size: float = 1.0
    entry_price: float | None = None
    sl_price: float | None = None
    initial_sl_price: float | None = None
    limit_price: float | None = None
    status: TradeStatus = TradeStatus.OPEN
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    exit_price: float | None = None
    exit_reason: str | None = None
    pnl_pips: float | None = None
    is_scalp_trade: bool = False
    alert_id: int | None = None
    best_price: float | None = None
    atr_at_entry: float | None = None
    volatility_regime: str | None = None
    market_regime_at_entry: str | None = None
    session_at_entry: str | None = None
    calculated_stages: dict[str, Any] | None = None
    trailing_calculation_method: str | None = None
    fallback_reason: str | None = None
    trailing_override: str | None = None
    profit_lock_applied_at: datetime | None = None
    # Relative stop/limit for trades recorded before their fill (``traild trade add --stop-pips``).
    stop_pips: float | None = None
    limit_pips: float | None = None
    id: int | None = None

    def position(self, stop: float | None) -> Position:
        """The broker position of this filled trade, with ``stop`` (a paper book learning it)."""
        assert self.entry_price is not None
        return Position(
            self.deal_id,
            self.epic,
            self.direction,
            self.size,
            self.entry_price,
            stop,
            self.limit_price,
            self.opened_at,
        )


@dataclass(frozen=True, slots=True)
class AmendmentRecord:
    """A row of ``stop_amendment``: the write-ahead audit of one stop change."""

    id: int
    trade_id: int
    deal_id: str
    requested_level: float
    previous_level: float | None
    reason: str
    state: AmendState
    broker_ref: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """An open position as the broker reports it (prices in traild units, not wire units)."""

    deal_id: str
    epic: str
    direction: Direction
    size: float
    level: float
    stop: float | None
    limit: float | None
    opened_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """Ask the (paper) broker to fill a position at the next tick."""

    epic: str
    direction: Direction
    size: float
    stop_pips: float | None = None
    stop: float | None = None
    limit_pips: float | None = None
    limit: float | None = None
    deal_id: str | None = None


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The broker's verdict on an amendment."""

    accepted: bool
    level: float | None
    reference: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MoveStop:
    """Command: move the trade's stop to ``level`` (ticks) because of ``reason``."""

    level: int
    reason: Reason
    priority: bool = False  # profit-lock and rung amendments jump the gateway's queue


@dataclass(frozen=True, slots=True)
class PositionClosed:
    """Event: the broker closed the position (stop, limit or manual)."""

    deal_id: str
    exit_price: float
    reason: str
    ts: datetime
    gap: bool = False


@dataclass(frozen=True, slots=True)
class PositionOpened:
    """Event: the broker reports a position (a pending trade filled, or one traild did not know)."""

    position: Position
    ts: datetime
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PositionAmended:
    """Event: the broker reports the position's stop or limit now (pushed, e.g. IG's OPU):
    the trader moved it, or an amendment landed. traild never loosens its own floor for it."""

    deal_id: str
    stop: float | None
    limit: float | None
    ts: datetime


@dataclass(frozen=True, slots=True)
class OpenRefused:
    """Event: the broker refused to fill an order registered with ``submit_open``."""

    deal_id: str
    reason: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class StageRecalculation:
    """A row of ``stage_recalculation``: one real-time recalculation of a trade's stages
    (append-only history; the trade's ``calculated_stages`` holds the latest)."""

    trade_id: int
    recalculated_at: datetime
    old_volatility_regime: str | None
    new_volatility_regime: str | None
    market_regime: str | None
    atr_pips: float | None
    session: str | None
    method: str
    fallback_reason: str | None
    old_stages: dict[str, Any]
    new_stages: dict[str, Any]
    id: int | None = None
