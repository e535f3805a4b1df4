"""The plan's rollout gate: "10 %+ expectancy improvement", dynamic against fixed, live.

The decisive number is the margin ``g = E_dyn - E_fix - threshold x |E_fix|`` (pips): the gate is
``met`` when the whole bootstrap interval of ``g`` is above 0, ``not_met`` when it is below 0,
otherwise (or with fewer than ``min_trades`` closed trades in either method) ``undecidable``.
The trades still needed assume the interval narrows as 1/sqrt(n) around the current estimate:
``n_needed = n x (half_width / |g|)^2`` — a planning figure, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

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
            "why": self.why,
        }


def margin(dyn: Sequence[LiveTrade], fix: Sequence[LiveTrade], threshold: float) -> float | None:
    e_d, e_f = expectancy(dyn), expectancy(fix)
    if e_d is None or e_f is None:
        return None
    return e_d - e_f - threshold * abs(e_f)


def improvement(dyn: Sequence[LiveTrade], fix: Sequence[LiveTrade]) -> float | None:
    e_d, e_f = expectancy(dyn), expectancy(fix)
    if e_d is None or e_f is None or e_f == 0:
        return None
    return 100 * (e_d - e_f) / abs(e_f)


def evaluate(trades: Sequence[LiveTrade], policy: GatePolicy) -> GateResult:
    """The gate over ``trades`` (one pair, or several pooled)."""
    dyn = [t for t in trades if t.method == DYNAMIC]
    fix = [t for t in trades if t.method == FIXED]
    g_hat, imp = margin(dyn, fix, policy.threshold), improvement(dyn, fix)
    g_est, i_est = Estimate(g_hat), Estimate(imp)
    if g_hat is not None:
        g_draws, i_draws = _draws(trades, policy)
        g_est = Estimate(g_hat, *policy.boot.interval(g_draws))
        if imp is not None:
            i_est = Estimate(imp, *policy.boot.interval(i_draws))
    verdict, why = _verdict(len(dyn), len(fix), g_est, policy)
    needed = _needed(len(dyn), len(fix), g_est, policy) if verdict == UNDECIDABLE else 0
    return GateResult(
        verdict, len(dyn), len(fix), expectancy(dyn), expectancy(fix), i_est, g_est, needed, why
    )


def _draws(
    trades: Sequence[LiveTrade], policy: GatePolicy
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Margin and improvement (%) of every resample of the trading days (NaN: an empty arm)."""
    sums = DaySums(trades)
    w = policy.boot.weights(len(sums.days))
    means = {}
    for method in (DYNAMIC, FIXED):
        pnl = [t.pnl_pips if t.method == method else 0.0 for t in trades]
        count = [1.0 if t.method == method else 0.0 for t in trades]
        means[method] = ratio(w @ sums.sums(pnl), w @ sums.sums(count))
    e_d, e_f = means[DYNAMIC], means[FIXED]
    g = e_d - e_f - policy.threshold * np.abs(e_f)
    return g, 100 * ratio(e_d - e_f, np.abs(e_f))


def _verdict(n_dyn: int, n_fix: int, g: Estimate, policy: GatePolicy) -> tuple[str, str]:
    pct = f"{policy.threshold:.0%}"
    if min(n_dyn, n_fix) < policy.min_trades:
        return UNDECIDABLE, (
            f"{n_dyn} dynamic and {n_fix} fixed closed trades; at least {policy.min_trades} "
            "of each are needed"
        )
    assert g.low is not None and g.high is not None
    if g.low > 0:
        return MET, f"dynamic beats fixed by more than {pct} (whole interval above the target)"
    if g.high < 0:
        return NOT_MET, f"dynamic falls short of fixed + {pct} (whole interval below the target)"
    return UNDECIDABLE, f"the interval straddles the {pct} target"


def _needed(n_dyn: int, n_fix: int, g: Estimate, policy: GatePolicy) -> int | None:
    """More closed trades (both methods together) before the interval clears the target."""
    floor = max(0, policy.min_trades - n_dyn) + max(0, policy.min_trades - n_fix)
    if g.value is None or g.low is None or g.high is None:
        return floor if n_dyn and n_fix else None
    if g.value == 0:
        return None  # exactly at the target: no sample size decides it
    n = n_dyn + n_fix
    half = (g.high - g.low) / 2
    total = math.ceil(n * (half / abs(g.value)) ** 2)
    return max(floor, total - n, 1 if floor == 0 else 0)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2) + 0.0
