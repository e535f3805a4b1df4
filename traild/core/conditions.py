"""Market conditions from traild's own price history: session, ATR(14) and volatility regime.

ATR = mean true range of the last ``atr_period`` closed mid-price bars of ``bar_minutes``;
the regime is the percentile rank of the current ATR among the previous ``regime_lookback``
ATR values. Pure: time arrives with the data.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from traild.core.market import MarketConditions
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
    """Session of an instant by its UTC hour: asian [21,7), london [7,12), overlap [12,16),
    new_york [16,21). An aware time in any zone is converted to UTC first (07:30 London
    summer time is 06:30 UTC: asian); a naive one is taken to be UTC."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
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
    rank = percentile_rank(current, history)
    if rank is None:
        return None
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
        "_market",
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
        self._market: tuple[int, str | None] = (-1, None)  # (bars_closed, regime) memo

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
        seen, market = self._market
        if seen != self.bars_closed:  # it changes only when a bar closes: once per bar
            market = market_regime_of_bars(self._bars, percentile, p.adx_period, p.er_period)
            self._market = (self.bars_closed, market)
        return MarketConditions(epic, atr_pips, regime, session_of(ts, p), market)


@dataclass(frozen=True, slots=True)
class GuardParams:
    """How the tick guard judges a tick (``[conditions]`` settings; prices in price units).

    A tick whose mid moves from the last accepted mid by more than
    ``clamp(spike_multiple * recent mean |tick move|, spike_floor, max_jump)`` is a ``spike``;
    the allowance grows with the square root of the time since the last accepted tick (a
    weekend gap may move more than a second does), never past ``max_jump``. A tick more than
    ``max_gap_s`` after the last accepted one, or (live) more than ``max_clock_ahead_s`` after the
    wall clock, is a ``future_timestamp``. ``reanchor_ticks`` consecutive rejected ticks
    that agree with each other (in time order, within the allowance of each other) are the
    market, not noise: the last of them is accepted and becomes the new anchor.
    """

    spike_floor: float = 0.004
    spike_multiple: float = 100.0
    max_jump: float = 0.05
    max_gap_s: float = 96 * 3600.0
    max_clock_ahead_s: float = 300.0
    reanchor_ticks: int = 5
    ewma_alpha: float = 0.05

    @classmethod
    def for_pip(
        cls,
        pip: float,
        floor_pips: float = 40.0,
        multiple: float = 100.0,
        max_jump_pips: float = 500.0,
        max_gap_hours: float = 96.0,
        max_clock_ahead_s: float = 300.0,
        reanchor_ticks: int = 5,
    ) -> GuardParams:
        """Params with pip distances converted to price units."""
        return cls(
            spike_floor=floor_pips * pip,
            spike_multiple=multiple,
            max_jump=max(max_jump_pips, floor_pips) * pip,  # settings refuse floor > ceiling
            max_gap_s=max_gap_hours * 3600.0,
            max_clock_ahead_s=max_clock_ahead_s,
            reanchor_ticks=reanchor_ticks,
        )


_TIME_SCALE_S = 60.0  # below a minute between ticks the spike allowance does not grow


class TickGuard:
    """Rejects ticks that must never be applied; one bad tick costs exactly that tick.

    Reasons: ``non_finite``, ``non_positive``, ``naive_timestamp``, ``out_of_order``,
    ``future_timestamp``, ``duplicate`` (the same time and prices as the last accepted tick)
    and ``spike`` (see ``GuardParams``). A rejected tick never moves the guard's clock or
    level. Crossed quotes (bid > ask) are accepted but counted; real feeds have them.
    ``by_reason`` counts the rejections. Pure: the wall clock arrives as ``now_ms``.
    """

    __slots__ = (
        "_last_quote",
        "_move",
        "_run",
        "accepted",
        "by_reason",
        "crossed",
        "last_mid",
        "last_ms",
        "p",
        "reanchored",
        "rejected",
    )

    def __init__(self, params: GuardParams | None = None) -> None:
        self.p = params or GuardParams()
        self.last_mid: float | None = None
        self.last_ms: int | None = None
        self._move: float | None = None  # recent mean |mid move| per accepted tick (EWMA)
        self._run: list[tuple[int, float]] = []  # consecutive rejected ticks that agree
        self._last_quote: tuple[float, float] | None = None
        self.accepted = 0
        self.rejected = 0
        self.crossed = 0
        self.reanchored = 0
        self.by_reason: dict[str, int] = {}

    @property
    def last_ts(self) -> datetime | None:
        return None if self.last_ms is None else _from_ms(self.last_ms)

    def check(
        self, ts: datetime, bid: float, ask: float, now: datetime | None = None
    ) -> str | None:
        """None when the tick is accepted, else the reason it is rejected."""
        if ts.tzinfo is None:
            return self._reject("naive_timestamp")
        now_ms = None if now is None else _to_ms(now)
        return self.check_ms(_to_ms(ts), bid, ask, now_ms)

    def check_ms(self, ms: int, bid: float, ask: float, now_ms: int | None = None) -> str | None:
        """``check`` on epoch milliseconds (the tick-file and backtest form)."""
        if not (math.isfinite(bid) and math.isfinite(ask)):
            return self._reject("non_finite")
        if bid <= 0 or ask <= 0:
            return self._reject("non_positive")
        if now_ms is not None and ms > now_ms + self.p.max_clock_ahead_s * 1000:
            return self._reject("future_timestamp")  # the wall clock is the truth: no run
        mid = (bid + ask) / 2.0
        last_ms, last_mid = self.last_ms, self.last_mid
        if last_ms is None or last_mid is None:
            return self._accept(ms, mid, bid, ask)
        reason = None
        if ms < last_ms:
            reason = "out_of_order"
        elif ms > last_ms + self.p.max_gap_s * 1000:
            reason = "future_timestamp"
        elif abs(mid - last_mid) > self.allowance(ms - last_ms):
            reason = "spike"
        elif ms == last_ms and self._last_quote == (bid, ask):
            return self._reject("duplicate")
        if reason is None:
            return self._accept(ms, mid, bid, ask)
        if self._extend_run(ms, mid):
            return self._accept(ms, mid, bid, ask, reanchor=True)
        return self._reject(reason)

    def accept_steps(
        self,
        moves: Sequence[float],
        last_ms: int,
        last_mid: float,
        last_quote: tuple[float, float],
        crossed: int,
    ) -> None:
        """Accept, in order, ticks that the caller has checked each pass against the tick
        before them, the first against the last accepted tick (finite positive prices, a time
        in order within ``max_gap_s``, a mid move within ``min(spike_floor, max_jump)``, which
        no allowance is below, and not a duplicate): the state ``check_ms`` would leave.
        ``moves``: each tick's |mid move|; the last tick's time, mid and quote; how many of the
        ticks are crossed. For a column-wise caller (``adapters.tickfiles.guard_columns``)."""
        if not moves:
            return
        assert self.last_mid is not None, "a run of steps follows an accepted tick"
        a = self.p.ewma_alpha
        keep = 1 - a
        move_avg = self._move
        for move in moves:  # exactly _accept's update, one tick at a time
            move_avg = move if move_avg is None else keep * move_avg + a * move
        self._move = move_avg
        self._run.clear()
        self.last_ms = last_ms
        self.last_mid = last_mid
        self._last_quote = last_quote
        self.accepted += len(moves)
        self.crossed += crossed

    def allowance(self, elapsed_ms: int = 0) -> float:
        """The largest mid move accepted after ``elapsed_ms`` (price units)."""
        p = self.p
        base = p.spike_floor
        if self._move is not None:
            base = max(base, p.spike_multiple * self._move)
        if elapsed_ms > _TIME_SCALE_S * 1000:
            base *= math.sqrt(elapsed_ms / (_TIME_SCALE_S * 1000))
        return min(base, p.max_jump)

    def _extend_run(self, ms: int, mid: float) -> bool:
        """Add a rejected tick to the run of agreeing ones; True when the run re-anchors."""
        run = self._run
        if run:
            prev_ms, prev_mid = run[-1]
            agrees = prev_ms <= ms <= prev_ms + self.p.max_gap_s * 1000 and abs(
                mid - prev_mid
            ) <= self.allowance(ms - prev_ms)
            if not agrees:
                run.clear()
        run.append((ms, mid))
        return len(run) >= self.p.reanchor_ticks

    def _accept(
        self, ms: int, mid: float, bid: float, ask: float, reanchor: bool = False
    ) -> str | None:
        if reanchor:
            self.reanchored += 1
        elif self.last_mid is not None:
            move = abs(mid - self.last_mid)
            a = self.p.ewma_alpha
            self._move = move if self._move is None else (1 - a) * self._move + a * move
        self._run.clear()
        self.last_ms = ms
        self.last_mid = mid
        self._last_quote = (bid, ask)
        self.accepted += 1
        if bid > ask:
            self.crossed += 1
        return None

    def _reject(self, reason: str) -> str:
        self.rejected += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        return reason


def _to_ms(ts: datetime) -> int:
    return round(ts.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
