"""The plan's rollout gate: "10 %+ expectancy improvement", dynamic against fixed, live.

Both methods are compared within each pair (pairs weighted by their share of the trades), then
the decisive number is the margin ``g = E_dyn - E_fix - threshold x |E_fix|`` (pips): the gate is
``met`` when the whole bootstrap interval of ``g`` is above 0, ``not_met`` when it is below 0,
otherwise ``undecidable``. It is also ``undecidable``, whatever the interval, while the sample
cannot carry a verdict:

* a pair enters the comparison only once each method has closed trades on ``min_days`` trading
  days in it (with one day every resample is that day: an interval of zero width);
* fewer than ``min_trades`` closed trades of either method in the compared pairs;
* more than ``max_dropped_share`` of the resamples undefined (a resample without trades of one
  method in a pair has no margin: dropping many of them would narrow the interval unduly).

The trades and trading days still needed assume the interval narrows as 1/sqrt(n) around the
current estimate: ``n_needed = n x (half_width / |g|)^2`` — a planning figure, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import numpy.typing as npt

from traild.core.calculator import DYNAMIC, FIXED
from traild.reporting.live import Bootstrap, DaySums, Estimate, LiveTrade, expectancy, ratio

MET, NOT_MET, UNDECIDABLE = "met", "not_met", "undecidable"


@dataclass(frozen=True, slots=True)
class GatePolicy:
    threshold: float = 0.10
    min_trades: int = 30
    boot: Bootstrap = field(default_factory=Bootstrap)
    min_days: int = 10  # trading days with closed trades, per method and per pair
    max_dropped_share: float = 0.01  # of the resamples that may be undefined (NaN)


@dataclass(frozen=True, slots=True)
class GateResult:
    verdict: str
    dynamic_trades: int
    fixed_trades: int
    dynamic_expectancy: float | None
    fixed_expectancy: float | None
    improvement_pct: Estimate
    margin_pips: Estimate
    trades_needed: int | None
    why: str
    days_needed: int | None = None
    dropped_share: float | None = None  # of the resamples without a margin

    def as_dict(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "dynamic_trades": self.dynamic_trades,
            "fixed_trades": self.fixed_trades,
            "dynamic_expectancy_pips": _r(self.dynamic_expectancy),
            "fixed_expectancy_pips": _r(self.fixed_expectancy),
            "improvement_pct": self.improvement_pct.as_dict(),
            "margin_pips": self.margin_pips.as_dict(),
            "trades_needed": self.trades_needed,
            "days_needed": self.days_needed,
            "dropped_share": None if self.dropped_share is None else round(self.dropped_share, 4),
            "why": self.why,
        }


def margin(e_dyn: float | None, e_fix: float | None, threshold: float) -> float | None:
    if e_dyn is None or e_fix is None:
        return None
    return e_dyn - e_fix - threshold * abs(e_fix)


def improvement(e_dyn: float | None, e_fix: float | None) -> float | None:
    if e_dyn is None or e_fix is None or e_fix == 0:
        return None
    return 100 * (e_dyn - e_fix) / abs(e_fix)


def strata(trades: Sequence[LiveTrade]) -> dict[str, float]:
    """Pairs with closed trades of both methods, weighted by their share of those trades.

    Comparing within each pair keeps a different pair mix of the two methods (dynamic on the
    pilot pair, fixed everywhere) out of the comparison."""
    counts: dict[str, set[str]] = {}
    for t in trades:
        counts.setdefault(t.epic, set()).add(t.method)
    both = {e for e, methods in counts.items() if {DYNAMIC, FIXED} <= methods}
    total = sum(t.epic in both for t in trades)
    return {e: sum(t.epic == e for t in trades) / total for e in sorted(both)}


def arm_means(trades: Sequence[LiveTrade]) -> tuple[float | None, float | None]:
    """Dynamic and fixed expectancy, pair by pair, weighted by ``strata``."""
    weights = strata(trades)
    if not weights:
        return None, None
    out = []
    for method in (DYNAMIC, FIXED):
        means = [expectancy([t for t in trades if t.epic == e and t.method == method]) or 0.0
                 for e in weights]  # fmt: skip
        out.append(math.fsum(w * m for w, m in zip(weights.values(), means, strict=True)))
    return out[0], out[1]


def trading_days(trades: Sequence[LiveTrade]) -> dict[tuple[str, str], int]:
    """Distinct trading days with closed trades, per (pair, method)."""
    days: dict[tuple[str, str], set[date]] = {}
    for t in trades:
        days.setdefault((t.epic, t.method), set()).add(t.day)
    return {key: len(found) for key, found in days.items()}


def days_short(trades: Sequence[LiveTrade], min_days: int) -> dict[str, tuple[int, int]]:
    """Pairs with trades of both methods but fewer than ``min_days`` trading days of one:
    pair -> (dynamic days, fixed days)."""
    days = trading_days(trades)
    out = {}
    for epic in strata(trades):
        d, f = days.get((epic, DYNAMIC), 0), days.get((epic, FIXED), 0)
        if min(d, f) < min_days:
            out[epic] = (d, f)
    return out


def evaluate(trades: Sequence[LiveTrade], policy: GatePolicy) -> GateResult:
    """The gate over ``trades`` (one pair, or several compared pair by pair)."""
    n_dyn = sum(t.method == DYNAMIC for t in trades)
    n_fix = sum(t.method == FIXED for t in trades)
    short = days_short(trades, policy.min_days)
    both = strata(trades)
    ready = [t for t in trades if t.epic in both and t.epic not in short]
    e_dyn, e_fix = arm_means(ready or trades)
    g_hat, imp = margin(e_dyn, e_fix, policy.threshold), improvement(e_dyn, e_fix)
    g_est, i_est, dropped = Estimate(g_hat), Estimate(imp), None
    if ready and g_hat is not None:
        g_draws, i_draws = _draws(ready, policy)
        dropped = float(np.mean(~np.isfinite(g_draws)))
        n_days = len({t.day for t in ready})
        g_est = Estimate(g_hat, *policy.boot.interval(g_draws, n_days))
        if imp is not None:
            i_est = Estimate(imp, *policy.boot.interval(i_draws, n_days))
    counted = ready or [t for t in trades if t.epic in both]
    s_dyn = sum(t.method == DYNAMIC for t in counted)
    sample = _Sample(
        s_dyn, len(counted) - s_dyn, len({t.day for t in ready}), short, dropped, bool(ready)
    )
    verdict, why = _verdict(sample, g_est, policy)
    needed: tuple[int | None, int | None] = (0, 0)
    if verdict == UNDECIDABLE:
        needed = _needed(sample, g_est, policy) if both else (None, None)
    return GateResult(
        verdict, n_dyn, n_fix, e_dyn, e_fix, i_est, g_est, needed[0], why, needed[1], dropped
    )


@dataclass(frozen=True, slots=True)
class _Sample:
    """What the compared pairs hold: closed trades per method, trading days, the pairs left
    out for too few days, the share of undefined resamples (None: not resampled), and whether
    any pair has enough days (if not, the trades counted are those of the pairs left out)."""

    n_dyn: int
    n_fix: int
    days: int
    short: dict[str, tuple[int, int]]
    dropped: float | None
    ready: bool


def _draws(
    trades: Sequence[LiveTrade], policy: GatePolicy
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Margin and improvement (%) of every resample of the trading days (NaN: an empty arm)."""
    weights = strata(trades)
    kept = [t for t in trades if t.epic in weights]
    sums = DaySums(kept)
    w = policy.boot.weights(len(sums.days))
    means = {}
    for method in (DYNAMIC, FIXED):
        total = np.zeros(w.shape[0])
        for epic, share in weights.items():
            mine = [t.epic == epic and t.method == method for t in kept]
            pnl = [t.pnl_pips if m else 0.0 for t, m in zip(kept, mine, strict=True)]
            total += share * ratio(w @ sums.sums(pnl), w @ sums.sums([float(m) for m in mine]))
        means[method] = total
    e_d, e_f = means[DYNAMIC], means[FIXED]
    g = e_d - e_f - policy.threshold * np.abs(e_f)
    return g, 100 * ratio(e_d - e_f, np.abs(e_f))


def _verdict(s: _Sample, g: Estimate, policy: GatePolicy) -> tuple[str, str]:
    pct = f"{policy.threshold:.0%}"
    if g.value is None:
        return UNDECIDABLE, "no pair has closed trades of both methods yet"
    left_out = _left_out(s.short, policy.min_days)
    if not s.ready:
        return UNDECIDABLE, left_out
    note = f" ({left_out})" if left_out else ""
    if min(s.n_dyn, s.n_fix) < policy.min_trades:
        return UNDECIDABLE, (
            f"{s.n_dyn} dynamic and {s.n_fix} fixed closed trades; at least {policy.min_trades} "
            f"of each are needed{note}"
        )
    if s.dropped is not None and s.dropped > policy.max_dropped_share:
        return UNDECIDABLE, (
            f"{s.dropped:.1%} of the resampled day sets lack trades of one method in a pair "
            f"(at most {policy.max_dropped_share:.1%} may): the trading days are too few or "
            f"too uneven for an interval{note}"
        )
    assert g.low is not None and g.high is not None
    if g.low > 0:
        return MET, (
            f"dynamic beats fixed by more than {pct} (whole interval above the target){note}"
        )
    if g.high < 0:
        return NOT_MET, (
            f"dynamic falls short of fixed + {pct} (whole interval below the target){note}"
        )
    return UNDECIDABLE, f"the interval straddles the {pct} target{note}"


def _left_out(short: dict[str, tuple[int, int]], min_days: int) -> str:
    if not short:
        return ""
    pairs = "; ".join(f"{e}: dynamic {d}, fixed {f}" for e, (d, f) in short.items())
    return f"trading days with closed trades below {min_days} per method, left out: {pairs}"


def _needed(s: _Sample, g: Estimate, policy: GatePolicy) -> tuple[int | None, int | None]:
    """More closed trades (both methods together) and trading days before the interval can
    clear the target (None: no sample size decides it)."""
    floor = max(0, policy.min_trades - s.n_dyn) + max(0, policy.min_trades - s.n_fix)
    day_floor = 0  # no pair has enough days yet: the days the closest one lacks
    if not s.ready:
        day_floor = min(policy.min_days - min(d, f) for d, f in s.short.values())
    if g.value is None or g.low is None or g.high is None:
        return floor, day_floor
    if g.value == 0:
        return None, None  # exactly at the target: no sample size decides it
    scale = ((g.high - g.low) / 2 / abs(g.value)) ** 2
    n = s.n_dyn + s.n_fix
    trades = max(floor, math.ceil(n * scale) - n, 1 if floor == 0 else 0)
    days = max(day_floor, math.ceil(s.days * scale) - s.days, 1)
    return trades, days


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2) + 0.0
