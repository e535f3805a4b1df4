"""The paired rollout gate: dynamic minus fixed on the same trades.

Every closed live trade with recorded ticks has a counterfactual in both methods
(``dynamic+lock`` and ``fixed+lock``, ``reporting.counterfactual``): the same entry, stop,
limit, conditions and ticks. Their difference ``d = pnl_dyn - pnl_fix`` carries no
between-trade noise (different weeks, markets or signals), so far fewer trades decide.

The plan's criterion "dynamic expectancy >= fixed + 10 %" is judged on the margin
``g = mean(d) - threshold x |mean(pnl_fix)|`` (pips). Its interval is a bootstrap over whole
trading days (21:00-21:00 UTC; trades of one day share the market and are not independent),
expanded for few days as the live intervals are (``live.expanded_tail``):
``met`` when the whole interval is above 0, ``not_met`` when below, else ``undecidable``; also
``undecidable`` with fewer than ``min_trades`` trades or ``min_days`` trading days (a day
bootstrap over a handful of days is too narrow to trust). Trades still needed assume the
interval narrows as 1/sqrt(n) around today's estimate: a planning figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from traild.reporting.counterfactual import CounterfactualSet
from traild.reporting.live import Bootstrap, Estimate, ratio

MET, NOT_MET, UNDECIDABLE = "met", "not_met", "undecidable"
DYNAMIC_VARIANT, FIXED_VARIANT = "dynamic+lock", "fixed+lock"


@dataclass(frozen=True, slots=True)
class PairedTrade:
    epic: str
    day: int  # trading day of the entry (core.tradingday.trading_day_number)
    dynamic: float  # pnl pips
    fixed: float


@dataclass(frozen=True, slots=True)
class PairedPolicy:
    threshold: float = 0.10
    min_trades: int = 30
    min_days: int = 10
    boot: Bootstrap = field(default_factory=Bootstrap)


@dataclass(frozen=True, slots=True)
class PairedResult:
    verdict: str
    trades: int
    days: int
    dynamic_expectancy: float | None
    fixed_expectancy: float | None
    difference_pips: Estimate  # mean(dynamic - fixed)
    improvement_pct: Estimate  # 100 x mean(d) / |mean(fixed)|
    margin_pips: Estimate  # mean(d) - threshold x |mean(fixed)|: > 0 is the target met
    trades_needed: int | None
    days_needed: int | None
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "trades": self.trades,
            "trading_days": self.days,
            "dynamic_expectancy_pips": _r(self.dynamic_expectancy),
            "fixed_expectancy_pips": _r(self.fixed_expectancy),
            "difference_pips": self.difference_pips.as_dict(),
            "improvement_pct": self.improvement_pct.as_dict(),
            "margin_pips": self.margin_pips.as_dict(),
            "trades_needed": self.trades_needed,
            "days_needed": self.days_needed,
            "why": self.why,
        }


def paired_trades(
    cf: CounterfactualSet, dynamic: str = DYNAMIC_VARIANT, fixed: str = FIXED_VARIANT
) -> list[PairedTrade]:
    """Both counterfactuals of every replayed trade."""
    return [
        PairedTrade(
            t.trade.epic, t.trading_day, t.variants[dynamic].pnl_pips, t.variants[fixed].pnl_pips
        )
        for t in cf.trades
        if dynamic in t.variants and fixed in t.variants
    ]


def evaluate_paired(trades: Sequence[PairedTrade], policy: PairedPolicy) -> PairedResult:
    """The gate on ``trades`` (one pair, or several pooled)."""
    n = len(trades)
    if n == 0:
        nothing = Estimate(None)
        why = "no closed trade has counterfactuals yet (turn on [feed] record)"
        return PairedResult(
            UNDECIDABLE,
            0,
            0,
            None,
            None,
            nothing,
            nothing,
            nothing,
            policy.min_trades,
            policy.min_days,
            why,
        )
    days = sorted({t.day for t in trades})
    index = {d: i for i, d in enumerate(days)}
    day_of = np.array([index[t.day] for t in trades], dtype=np.int64)

    def per_day(values: Sequence[float]) -> npt.NDArray[np.float64]:
        summed = np.bincount(day_of, weights=np.asarray(values, np.float64), minlength=len(days))
        return summed.astype(np.float64)

    count, dyn, fix = (
        per_day([1.0] * n),
        per_day([t.dynamic for t in trades]),
        per_day([t.fixed for t in trades]),
    )
    e_dyn, e_fix = float(dyn.sum() / n), float(fix.sum() / n)
    w = policy.boot.weights(len(days))
    d_dyn, d_fix = ratio(w @ dyn, w @ count), ratio(w @ fix, w @ count)
    estimates = []
    for sample, drawn in (
        (e_dyn - e_fix, d_dyn - d_fix),
        (_improvement(e_dyn, e_fix), 100 * ratio(d_dyn - d_fix, np.abs(d_fix))),
        (
            e_dyn - e_fix - policy.threshold * abs(e_fix),
            d_dyn - d_fix - policy.threshold * np.abs(d_fix),
        ),
    ):
        estimates.append(
            Estimate(None)
            if sample is None
            else Estimate(sample, *policy.boot.interval(drawn, len(days)))
        )
    diff, imp, g = estimates
    verdict, why = _verdict(n, len(days), g, policy)
    needed = _needed(n, len(days), g, policy) if verdict == UNDECIDABLE else (0, 0)
    return PairedResult(verdict, n, len(days), e_dyn, e_fix, diff, imp, g, *needed, why)


def paired_gate(trades: Sequence[PairedTrade], policy: PairedPolicy) -> dict[str, Any]:
    """Pooled over every pair, and per pair."""
    pairs = sorted({t.epic for t in trades})
    return {
        "basis": "paired: dynamic+lock minus fixed+lock on the same trades (counterfactuals)",
        "threshold_pct": round(100 * policy.threshold, 2),
        "min_trades": policy.min_trades,
        "min_days": policy.min_days,
        "confidence": policy.boot.confidence,
        "pooled": evaluate_paired(trades, policy).as_dict(),
        "pairs": {
            e: evaluate_paired([t for t in trades if t.epic == e], policy).as_dict() for e in pairs
        },
    }


def _improvement(e_dyn: float, e_fix: float) -> float | None:
    return None if e_fix == 0 else 100 * (e_dyn - e_fix) / abs(e_fix)


def _verdict(n: int, days: int, g: Estimate, policy: PairedPolicy) -> tuple[str, str]:
    pct = f"{policy.threshold:.0%}"
    if n < policy.min_trades or days < policy.min_days:
        return UNDECIDABLE, (
            f"{n} paired trades on {days} trading days; at least {policy.min_trades} trades "
            f"on {policy.min_days} trading days are needed"
        )
    if g.low is None or g.high is None:
        return UNDECIDABLE, "no interval (too few trades in the resampled days)"
    if g.low > 0:
        return MET, f"dynamic beats fixed by more than {pct} on the same trades"
    if g.high < 0:
        return NOT_MET, f"dynamic falls short of fixed + {pct} on the same trades"
    return UNDECIDABLE, f"the interval straddles the {pct} target"


def _needed(n: int, days: int, g: Estimate, policy: PairedPolicy) -> tuple[int | None, int | None]:
    """More trades, and trading days at today's pace, before a verdict (a planning figure)."""
    floor = max(0, policy.min_trades - n)
    day_floor = max(0, policy.min_days - days)
    projected: int | None = None
    if g.value is not None and g.low is not None and g.high is not None and g.value != 0:
        half = (g.high - g.low) / 2
        projected = max(0, math.ceil(n * (half / abs(g.value)) ** 2) - n)
    if projected is None and days >= policy.min_days and n >= policy.min_trades:
        return None, None  # exactly at the target: no sample size decides it
    trades = max(floor, projected or 0, 1 if floor == 0 and day_floor == 0 else 0)
    pace = n / days
    return trades, max(day_floor, math.ceil(trades / pace))


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2) + 0.0
