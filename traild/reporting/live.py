"""Closed live trades as metrics with bootstrap intervals (the backtest's definitions, SPEC §8).

* ``expectancy_pips``  mean pnl;  ``win_rate`` share with pnl > 0 (0..1)
* ``profit_capture_pct`` 100 x sum(pnl) / sum(MFE) over winning trades (MFE from best_price)
* ``protected_share``  share of trades that reached the profit-lock trigger
* ``median_minutes_to_lock`` opening to the confirmed profit lock, over those trades

Intervals resample whole trading days, as the backtest does (``traild.core.tradingday``: 21:00
to 21:00 UTC, by the trade's entry): trades of one day share the market and are not independent.
Deterministic for a given seed. The interval is the percentile interval expanded for few days
(``expanded_tail``): the plain one is too narrow on the 10-30 days a rollout step has.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from traild.core.calculator import DYNAMIC, FIXED
from traild.core.errors import InstrumentError
from traild.core.instruments import InstrumentTable
from traild.core.messages import TradeRecord, TradeStatus
from traild.core.tradingday import trading_day

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
    day: date  # the trading day of its entry (traild.core.tradingday)
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
                trading_day(t.opened_at or t.closed_at),
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
    """Resampling of whole trading days: ``weights`` says how often each day is drawn."""

    samples: int = 1000
    confidence: float = 0.95
    seed: int = 1

    def weights(self, n_days: int) -> npt.NDArray[np.float64]:
        """(samples x n_days) draw counts; every row draws ``n_days`` days with replacement."""
        rng = np.random.default_rng(self.seed)
        picks = rng.integers(0, n_days, size=(self.samples, n_days))
        rows = np.arange(self.samples)[:, None] * n_days
        counts = np.bincount((picks + rows).ravel(), minlength=self.samples * n_days)
        return counts.reshape(self.samples, n_days).astype(np.float64)

    def interval(
        self, values: npt.NDArray[np.float64], units: int | None = None
    ) -> tuple[float | None, float | None]:
        """The percentile interval of the resampled ``values``; with the number of resampled
        ``units`` (days), expanded for a small sample (see ``expanded_tail``)."""
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return None, None
        tail = (1 - self.confidence) / 2
        if units is not None:
            tail = expanded_tail(tail, units)
        low, high = np.quantile(finite, [tail, 1 - tail])  # linear interpolation
        return float(low), float(high)


def expanded_tail(tail: float, n: int) -> float:
    """Hesterberg's expanded percentile interval: the plain one is too narrow on few units (the
    resamples' spread is the sample's times sqrt((n-1)/n), and a normal quantile where a t
    quantile belongs), so it takes the tail at Phi(-sqrt(n/(n-1)) t(1-tail, n-1)) instead.
    E.g. 95 % on 10 days uses the 0.9 % and 99.1 % points, on 30 days 1.9 % and 98.1 %."""
    if n < 2:
        return tail
    normal = NormalDist()
    return normal.cdf(-math.sqrt(n / (n - 1)) * _t_quantile(1 - tail, n - 1))


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile by the Cornish-Fisher expansion around the normal one (Hill 1970;
    within 0.001 of the exact value for df >= 5 at the usual levels)."""
    z = NormalDist().inv_cdf(p)
    z3, z5, z7, z9 = z**3, z**5, z**7, z**9
    return (
        z
        + (z3 + z) / (4 * df)
        + (5 * z5 + 16 * z3 + 3 * z) / (96 * df**2)
        + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * df**3)
        + (79 * z9 + 776 * z7 + 1482 * z5 - 1920 * z3 - 945 * z) / (92160 * df**4)
    )


class DaySums:
    """Per-day sums of per-trade quantities: a ratio metric of any resample is then
    ``(W @ sum_num) / (W @ sum_den)`` for its weight row ``W``."""

    def __init__(self, trades: Sequence[LiveTrade]) -> None:
        self.days = sorted({t.day for t in trades})
        index = {d: i for i, d in enumerate(self.days)}
        self.day_of = np.array([index[t.day] for t in trades], dtype=np.int64)

    def sums(self, per_trade: Sequence[float]) -> npt.NDArray[np.float64]:
        values = np.asarray(per_trade, dtype=np.float64)
        summed = np.bincount(self.day_of, weights=values, minlength=len(self.days))
        return summed.astype(np.float64)


def ratio(num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Elementwise num / den with NaN where den is 0 (that resample has no data)."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _ratio_parts(trades: Sequence[LiveTrade]) -> dict[str, tuple[list[float], list[float]]]:
    ones = [1.0] * len(trades)
    won = [t.pnl_pips > 0 and t.mfe_pips is not None for t in trades]
    return {
        "expectancy_pips": ([t.pnl_pips for t in trades], ones),
        "win_rate": ([float(t.pnl_pips > 0) for t in trades], ones),
        "profit_capture_pct": (
            [100 * t.pnl_pips if w else 0.0 for t, w in zip(trades, won, strict=True)],
            [(t.mfe_pips or 0.0) if w else 0.0 for t, w in zip(trades, won, strict=True)],
        ),
        "protected_share": ([float(t.protected) for t in trades], ones),
    }


def metric_table(trades: Sequence[LiveTrade], boot: Bootstrap) -> dict[str, Estimate]:
    """Every metric of ``trades`` with its interval (the same day draws for all of them)."""
    values = {name: fn(trades) for name, fn in METRICS.items()}
    if not trades:
        return {name: Estimate(None) for name in METRICS}
    sums = DaySums(trades)
    w = boot.weights(len(sums.days))
    out = {}
    for name, (num, den) in _ratio_parts(trades).items():
        drawn = ratio(w @ sums.sums(num), w @ sums.sums(den))
        out[name] = _estimate(values[name], boot, drawn, len(sums.days))
    out["median_minutes_to_lock"] = _estimate(
        values["median_minutes_to_lock"], boot, _median_lock(trades, sums, w), len(sums.days)
    )
    return out


def _median_lock(
    trades: Sequence[LiveTrade], sums: DaySums, w: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The median of every resample: a weighted median over the sorted lock times."""
    locked = [(t.minutes_to_lock, d) for t, d in zip(trades, sums.day_of, strict=True)]
    pairs = sorted((m, d) for m, d in locked if m is not None)
    if not pairs:
        return np.full(w.shape[0], np.nan)
    minutes = np.array([m for m, _ in pairs])
    weights = w[:, [d for _, d in pairs]]  # (samples x locked trades)
    cum = np.cumsum(weights, axis=1)
    total = cum[:, -1:]
    lo = np.argmax(cum >= total / 2, axis=1)  # statistics.median: the mean of the two middles
    hi = np.argmax(cum > total / 2, axis=1)
    even = (total[:, 0] % 2 == 0) & (total[:, 0] > 0)
    med = np.where(even, (minutes[lo] + minutes[hi]) / 2, minutes[hi])
    return np.where(total[:, 0] > 0, med, np.nan)


def _estimate(
    value: float | None, boot: Bootstrap, drawn: npt.NDArray[np.float64], days: int
) -> Estimate:
    if value is None:
        return Estimate(None)
    return Estimate(value, *boot.interval(drawn, days))


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits) + 0.0
