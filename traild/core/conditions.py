"""Market conditions from traild's own price history: session, ATR(14) and volatility regime.

ATR = mean true range of the last ``atr_period`` closed mid-price bars of ``bar_minutes``;
the regime is the percentile rank of the current ATR among the previous ``regime_lookback``
ATR values. Pure: time arrives with the data.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from traild.core.calculator import MarketConditions
from traild.core.regime import market_regime_of_bars, percentile_rank


@dataclass(frozen=True, slots=True)
class ConditionParams:
    """How conditions are derived (``[conditions]`` settings)."""

    atr_period: int = 14
    bar_minutes: int = 15
    regime_lookback: int = 96
    regime_min_history: int = 20
    extreme_percentile: float = 90.0
    high_percentile: float = 70.0
    low_percentile: float = 20.0
    asian_start_hour: int = 21
    london_start_hour: int = 7
    overlap_start_hour: int = 12
    new_york_start_hour: int = 16
    adx_period: int = 14
    er_period: int = 10


def session_of(ts: datetime, p: ConditionParams = ConditionParams()) -> str:
    """Session of a UTC time: asian [21,7), london [7,12), overlap [12,16), new_york [16,21)."""
    minute = ts.hour * 60 + ts.minute
    bounds = sorted(
        (
            (p.asian_start_hour * 60, "asian"),
            (p.london_start_hour * 60, "london"),
            (p.overlap_start_hour * 60, "overlap"),
            (p.new_york_start_hour * 60, "new_york"),
        )
    )
    current = bounds[-1][1]  # before the first boundary of the day: the last session wraps
    for start, name in bounds:
        if minute >= start:
            current = name
    return current


def regime_of(
    current: float, history: list[float] | deque[float], p: ConditionParams
) -> str | None:
    """Percentile rank of ``current`` among ``history`` mapped to a regime (None: too little)."""
    if len(history) < p.regime_min_history:
        return None
    rank = 100.0 * sum(1 for h in history if h < current) / len(history)
    if rank > p.extreme_percentile:
        return "extreme"
    if rank > p.high_percentile:
        return "high"
    if rank < p.low_percentile:
        return "low"
    return "normal"


class BarHistory:
    """Builds closed mid-price bars from ticks and keeps ATR and its recent history.

    Feed it every accepted tick of one epic (``add``); ask ``conditions(epic, ts)``.
    Memory is bounded by ``regime_lookback`` and the market-regime window (the last
    ``4 x adx_period`` closed bars: Wilder's smoothing is seeded at the window's start).
    """

    __slots__ = (
        "_atrs",
        "_bar",
        "_bar_key",
        "_bars",
        "_prev_close",
        "_trs",
        "atr",
        "bars_closed",
        "p",
        "pip",
    )

    def __init__(self, pip_size: float, p: ConditionParams = ConditionParams()) -> None:
        self.p = p
        self.pip = pip_size
        self._bar_key: int | None = None
        self._bar: list[float] = []  # open, high, low, close
        self._prev_close: float | None = None
        self._trs: deque[float] = deque(maxlen=p.atr_period)
        self._atrs: deque[float] = deque(maxlen=p.regime_lookback + 1)
        window = max(4 * p.adx_period, p.er_period + 1)
        self._bars: deque[tuple[float, float, float]] = deque(maxlen=window)
        self.atr: float | None = None  # price units
        self.bars_closed = 0

    def add(self, ts: datetime, bid: float, ask: float) -> bool:
        """Take one tick; True when it closed a bar (it opens the next one)."""
        mid = (bid + ask) / 2.0
        if not math.isfinite(mid):
            return False
        key = int(ts.timestamp()) // (self.p.bar_minutes * 60)
        if key != self._bar_key:
            closed = self._bar_key is not None
            if closed:
                self._close_bar()
            self._bar_key = key
            self._bar = [mid, mid, mid, mid]
            return closed
        bar = self._bar
        if mid > bar[1]:
            bar[1] = mid
        elif mid < bar[2]:
            bar[2] = mid
        bar[3] = mid
        return False

    def _close_bar(self) -> None:
        _, high, low, close = self._bar
        self._bars.append((high, low, close))
        self.bars_closed += 1
        prev = self._prev_close
        tr = high - low if prev is None else max(high, prev) - min(low, prev)
        self._trs.append(tr)
        self._prev_close = close
        if len(self._trs) == self.p.atr_period:
            self.atr = sum(self._trs) / len(self._trs)
            self._atrs.append(self.atr)

    def conditions(self, epic: str, ts: datetime) -> MarketConditions:
        """ATR in pips, volatility and market regime, session as of now (fields None when
        the history is too short for them)."""
        atr_pips = None if self.atr is None else round(self.atr / self.pip, 2)
        regime = percentile = None
        if self.atr is not None:
            history = list(self._atrs)[:-1]
            regime = regime_of(self.atr, history, self.p)
            if len(history) >= self.p.regime_min_history:
                percentile = percentile_rank(self.atr, history)
        p = self.p
        market = market_regime_of_bars(self._bars, percentile, p.adx_period, p.er_period)
        return MarketConditions(epic, atr_pips, regime, session_of(ts, p), market)


class TickGuard:
    """Rejects ticks that must never be applied: non-finite, non-positive, or out of order.

    Crossed quotes (bid > ask) are accepted but counted; real feeds have them. A jump of the
    mid price by more than ``max_jump`` (price units; e.g. a wire level scaled x10000) from the
    last accepted tick is rejected as ``spike``: a real news move is far smaller.
    """

    __slots__ = ("_spikes", "accepted", "crossed", "last_mid", "last_ts", "max_jump", "rejected")

    def __init__(self, max_jump: float | None = None) -> None:
        self.max_jump = max_jump
        self._spikes = 0
        self.last_mid: float | None = None
        self.last_ts: datetime | None = None
        self.accepted = 0
        self.rejected = 0
        self.crossed = 0

    def check(self, ts: datetime, bid: float, ask: float) -> str | None:
        """None when the tick is accepted, else the reason it is rejected."""
        reason = None
        if not (math.isfinite(bid) and math.isfinite(ask)):
            reason = "non_finite"
        elif bid <= 0 or ask <= 0:
            reason = "non_positive"
        elif ts.tzinfo is None:
            reason = "naive_timestamp"
        elif self.last_ts is not None and ts < self.last_ts:
            reason = "out_of_order"
        elif (
            self.max_jump is not None
            and self.last_mid is not None
            and abs((bid + ask) / 2.0 - self.last_mid) > self.max_jump
        ):
            self._spikes += 1
            reason = "spike" if self._spikes < 3 else None
        if reason is not None:
            self.rejected += 1
            return reason
        self._spikes = 0
        self.last_ts = ts
        self.last_mid = (bid + ask) / 2.0
        self.accepted += 1
        if bid > ask:
            self.crossed += 1
        return None
