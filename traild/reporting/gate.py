"""The plan's rollout gate: "10 %+ expectancy improvement", dynamic against fixed, live.

Both methods are compared within each pair (pairs weighted by their share of the trades), then
the decisive number is the margin ``g = E_dyn - E_fix - threshold x |E_fix|`` (pips): the gate is
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


def evaluate(trades: Sequence[LiveTrade], policy: GatePolicy) -> GateResult:
    """The gate over ``trades`` (one pair, or several compared pair by pair)."""
    n_dyn = sum(t.method == DYNAMIC for t in trades)
    n_fix = sum(t.method == FIXED for t in trades)
    e_dyn, e_fix = arm_means(trades)
    g_hat, imp = margin(e_dyn, e_fix, policy.threshold), improvement(e_dyn, e_fix)
    g_est, i_est = Estimate(g_hat), Estimate(imp)
    if g_hat is not None:
        g_draws, i_draws = _draws(trades, policy)
        g_est = Estimate(g_hat, *policy.boot.interval(g_draws))
        if imp is not None:
            i_est = Estimate(imp, *policy.boot.interval(i_draws))
    paired = [t for t in trades if t.epic in strata(trades)]  # pairs with both methods
    s_dyn = sum(t.method == DYNAMIC for t in paired)
    verdict, why = _verdict(s_dyn, len(paired) - s_dyn, g_est, policy)
    needed = _needed(s_dyn, len(paired) - s_dyn, g_est, policy) if verdict == UNDECIDABLE else 0
    return GateResult(verdict, n_dyn, n_fix, e_dyn, e_fix, i_est, g_est, needed, why)


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


def _verdict(n_dyn: int, n_fix: int, g: Estimate, policy: GatePolicy) -> tuple[str, str]:
    pct = f"{policy.threshold:.0%}"
    if g.value is None:
        return UNDECIDABLE, "no pair has closed trades of both methods yet"
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
