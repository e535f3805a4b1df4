"""Closed live trades as metrics with bootstrap intervals (the backtest's definitions, SPEC §8).

* ``expectancy_pips``  mean pnl;  ``win_rate`` share with pnl > 0 (0..1)
* ``profit_capture_pct`` 100 x sum(pnl) / sum(MFE) over winning trades (MFE from best_price)
* ``protected_share``  share of trades that reached the profit-lock trigger
* ``median_minutes_to_lock`` opening to the confirmed profit lock, over those trades

Intervals resample whole trading days (UTC date of the close), as the backtest does: trades of
one day share the market and are not independent. Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from traild.core.calculator import DYNAMIC, FIXED
from traild.core.errors import InstrumentError
from traild.core.instruments import InstrumentTable
from traild.core.messages import TradeRecord, TradeStatus

METRIC_NAMES = (
    "expectancy_pips",
    "win_rate",
    "profit_capture_pct",
    "protected_share",
    "median_minutes_to_lock",
)
METHODS = (DYNAMIC, FIXED)


@dataclass(frozen=True, slots=True)
class LiveTrade:
    """What the rollout needs of one closed trade."""

    epic: str
    method: str
    pnl_pips: float
    day: date
    mfe_pips: float | None = None
    protected: bool = False
    minutes_to_lock: float | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    """A metric with its bootstrap interval (None where there is no data)."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def as_dict(self, digits: int = 2) -> dict[str, float | None]:
        return {"value": _round(self.value, digits), "low": _round(self.low, digits),
                "high": _round(self.high, digits)}  # fmt: skip


def live_trades(
    records: Sequence[TradeRecord], table: InstrumentTable, lock_trigger_pips: float
) -> list[LiveTrade]:
    """Closed trades with a pnl and a known method (dynamic or fixed); others are skipped."""
    out = []
    for t in records:
        if t.status is not TradeStatus.CLOSED or t.pnl_pips is None or t.closed_at is None:
            continue
        if t.trailing_calculation_method not in METHODS:
            continue
        mfe = _mfe(t, table)
        lock = None
        if t.profit_lock_applied_at is not None and t.opened_at is not None:
            lock = (t.profit_lock_applied_at - t.opened_at).total_seconds() / 60
        protected = t.profit_lock_applied_at is not None or (
            mfe is not None and mfe >= lock_trigger_pips
        )
        out.append(
            LiveTrade(
                t.epic,
                t.trailing_calculation_method,
                float(t.pnl_pips),
                t.closed_at.date(),
                mfe,
                protected,
                lock,
            )
        )
    return out


def _mfe(t: TradeRecord, table: InstrumentTable) -> float | None:
    if t.best_price is None or t.entry_price is None:
        return None
    try:
        pip = float(table.resolve(t.epic).pip_size)
    except InstrumentError:
        return None
    return max(0.0, t.direction.sign * (t.best_price - t.entry_price) / pip)


# -- metrics ------------------------------------------------------------------------------------
def expectancy(trades: Sequence[LiveTrade]) -> float | None:
    return math.fsum(t.pnl_pips for t in trades) / len(trades) if trades else None


def win_rate(trades: Sequence[LiveTrade]) -> float | None:
    return sum(t.pnl_pips > 0 for t in trades) / len(trades) if trades else None


def profit_capture(trades: Sequence[LiveTrade]) -> float | None:
    wins = [t for t in trades if t.pnl_pips > 0 and t.mfe_pips is not None]
    mfe = math.fsum(t.mfe_pips or 0.0 for t in wins)
    return 100 * math.fsum(t.pnl_pips for t in wins) / mfe if mfe > 0 else None


def protected_share(trades: Sequence[LiveTrade]) -> float | None:
    return sum(t.protected for t in trades) / len(trades) if trades else None


def median_minutes_to_lock(trades: Sequence[LiveTrade]) -> float | None:
    locks = [t.minutes_to_lock for t in trades if t.minutes_to_lock is not None]
    return statistics.median(locks) if locks else None


METRICS: dict[str, Callable[[Sequence[LiveTrade]], float | None]] = {
    "expectancy_pips": expectancy,
    "win_rate": win_rate,
    "profit_capture_pct": profit_capture,
    "protected_share": protected_share,
    "median_minutes_to_lock": median_minutes_to_lock,
}


# -- bootstrap ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bootstrap:
    """Resampling of whole trading days."""

    samples: int = 1000
    confidence: float = 0.95
    seed: int = 1

    def resamples(self, trades: Sequence[LiveTrade]) -> list[list[LiveTrade]]:
        by_day: dict[date, list[LiveTrade]] = {}
        for t in trades:
            by_day.setdefault(t.day, []).append(t)
        days = sorted(by_day)
        if not days:
            return []
        rng = random.Random(self.seed)
        out = []
        for _ in range(self.samples):
            sample: list[LiveTrade] = []
            for day in rng.choices(days, k=len(days)):
                sample.extend(by_day[day])
            out.append(sample)
        return out

    def interval(self, values: Sequence[float]) -> tuple[float | None, float | None]:
        if not values:
            return None, None
        ordered = sorted(values)
        tail = (1 - self.confidence) / 2
        return _quantile(ordered, tail), _quantile(ordered, 1 - tail)


def estimate(
    trades: Sequence[LiveTrade],
    metric: Callable[[Sequence[LiveTrade]], float | None],
    boot: Bootstrap,
    resamples: Sequence[Sequence[LiveTrade]] | None = None,
) -> Estimate:
    value = metric(trades)
    if value is None:
        return Estimate(None)
    samples = boot.resamples(trades) if resamples is None else resamples
    values = [v for v in (metric(s) for s in samples) if v is not None]
    low, high = boot.interval(values)
    return Estimate(value, low, high)


def metric_table(trades: Sequence[LiveTrade], boot: Bootstrap) -> dict[str, Estimate]:
    """Every metric of ``trades`` with its interval (one set of resamples for all)."""
    resamples = boot.resamples(trades)
    return {name: estimate(trades, fn, boot, resamples) for name, fn in METRICS.items()}


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits) + 0.0
