"""The seed's success criteria, judged (SPEC §8): target, measured value, 95 % CI, verdict.

Trades that overlap in time are not independent, so every interval is a bootstrap over whole
trading days (``traild.core.tradingday``: 21:00 to 21:00 UTC, the FX roll-over, so Sunday's open
belongs to Monday; the live rollout gate uses the same days): days are drawn with replacement
and the statistic is recomputed from all trades of the drawn days. A comparison is paired: the
same trades, in the candidate variant and in its baseline, so they move together in every draw.

Verdict: ``met`` when the whole interval is on the target's side, ``not_met`` when the whole
interval is on the other side, ``inconclusive`` when it straddles the target, or when the sample
is too small to judge: fewer than ``MIN_TRADES`` trades or ``MIN_DAYS`` trading days (with one
day every draw is the same day and the interval has no width; an empty sample proves nothing).
The one exception is a confirmed-stop lock violation: any count above 0 is ``not_met`` on any
sample, since it is an exact count of a bug, not an estimate. Deterministic: a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from traild.backtest.metrics import number
from traild.backtest.rows import TradeRow
from traild.core.tradingday import trading_day_number as trading_day

Floats = NDArray[np.float64]
CONFIDENCE = 0.95
DRAWS = 1000
SEED = 20_240_601
MIN_TRADES = 30  # below this many trades, or
MIN_DAYS = 10  # this many trading days, a claim is inconclusive whatever its interval
HIGH_VOL = frozenset(("high", "extreme"))
MET, NOT_MET, INCONCLUSIVE = "met", "not_met", "inconclusive"


@dataclass(frozen=True, slots=True)
class Criterion:
    """One criterion: how to measure it on per-day sums, its target and which side wins."""

    key: str
    text: str
    target: float
    at_least: bool  # True: value >= target is met; False: value <= target is met
    unit: str
    pick: Callable[[TradeRow], bool]  # which trades it is about
    paired: bool  # a candidate against its baseline, or one variant on its own


def _scalp(r: TradeRow) -> bool:
    return r.is_scalp


def _high_vol(r: TradeRow) -> bool:
    return (r.volatility_regime or "").lower() in HIGH_VOL


def _trending(r: TradeRow) -> bool:
    return (r.market_regime or "").lower() == "trending"


def _all(r: TradeRow) -> bool:
    return True


CRITERIA = (
    Criterion(
        "lock_violations",
        "0 trades into loss after +10 pips: confirmed stops short of the lock",
        0.0, False, "trades", _all, False,
    ),
    Criterion(
        "lock_slippage_loss_share",
        "0 trades into loss after +10 pips: fills below entry through a locked stop "
        "(share of the trades that reached the trigger)",
        0.0, False, "share", _all, False,
    ),
    Criterion(
        "expectancy_gain",
        ">= +10 % expectancy, dynamic vs fixed, all trades (the rollout gate's criterion)",
        0.10, True, "relative", _all, True,
    ),
    Criterion(
        "scalp_expectancy_gain",
        ">= +10 % expectancy for scalps, dynamic vs fixed",
        0.10, True, "relative", _scalp, True,
    ),
    Criterion(
        "premature_reduction_high_vol",
        ">= 15 % fewer premature stop-outs in high/extreme volatility",
        0.15, True, "relative", _high_vol, True,
    ),
    Criterion(
        "capture_gain_trending",
        ">= 20 % more profit capture in trending markets",
        0.20, True, "relative", _trending, True,
    ),
    Criterion(
        "losing_rate_change",
        "no increase in the losing-trade rate (difference of shares)",
        0.0, False, "share", _all, True,
    ),
    Criterion(
        "scalp_minutes_to_lock",
        "scalp profit-lock speed < 5 min (median minutes to the trigger)",
        5.0, False, "minutes", _scalp, False,
    ),
    Criterion(
        "scalp_protected_share",
        "scalp protected share > 40 % (trades reaching the profit lock)",
        0.40, True, "share", _scalp, False,
    ),
)  # fmt: skip


class DaySums:
    """Per-trading-day sums of one variant's picked trades, aligned to a shared day list."""

    def __init__(self, rows: Sequence[TradeRow], days: list[int]) -> None:
        day = np.searchsorted(
            np.asarray(days, dtype=np.int64),
            np.array([trading_day(r.entry_ts) for r in rows], dtype=np.int64),
        )
        pnl = np.array([r.pnl_pips for r in rows], dtype=np.float64)
        win = pnl > 0
        mfe = np.array([r.mfe_pips for r in rows], dtype=np.float64)
        minutes = [r.minutes_to_lock for r in rows]
        values = np.stack(
            (
                np.ones(len(rows)),
                pnl,
                np.where(win, pnl, 0.0),
                np.where(win, mfe, 0.0),
                np.array([r.premature for r in rows], dtype=np.float64),
                (pnl < 0).astype(np.float64),
                np.array([r.lock_violation for r in rows], dtype=np.float64),
                np.array([r.lock_slippage_loss for r in rows], dtype=np.float64),
                np.array([m is not None for m in minutes], dtype=np.float64),
            )
        ).reshape(9, len(rows))
        self.cols: Floats = np.zeros((9, len(days)))
        for c in range(9):
            self.cols[c] = np.bincount(day, weights=values[c], minlength=len(days))
        self.lock_minutes: list[list[float]] = [[] for _ in days]
        for d, m in zip(day.tolist(), minutes, strict=True):
            if m is not None:
                self.lock_minutes[d].append(m)

    def totals(self, weights: Floats) -> Floats:
        """[9, draws] sums for day weights [draws, days] (one row of ones: the sample)."""
        out: Floats = self.cols @ weights.T
        return out


def statistic(key: str, t: Floats) -> Floats:
    """The statistic of one variant from its summed columns (NaN where undefined)."""
    n, pnl, win_pnl, win_mfe, premature, losers, viol, slip, locked = t
    with np.errstate(divide="ignore", invalid="ignore"):
        table: dict[str, Floats] = {
            "expectancy": pnl / n,
            "capture": win_pnl / win_mfe,
            "premature": premature,
            "losing_rate": losers / n,
            "lock_violations": viol,
            "lock_slippage_loss_share": slip / locked,
            "scalp_protected_share": locked / n,
        }
    return table[key]


_PAIRED = {
    "expectancy_gain": ("expectancy", "gain"),
    "scalp_expectancy_gain": ("expectancy", "gain"),
    "premature_reduction_high_vol": ("premature", "reduction"),
    "capture_gain_trending": ("capture", "gain"),
    "losing_rate_change": ("losing_rate", "difference"),
}


def _compare(kind: str, cand: Floats, base: Floats) -> Floats:
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "gain":
            out: Floats = (cand - base) / np.abs(base)
        elif kind == "reduction":
            out = 1.0 - cand / base
        else:
            out = cand - base
    return out


def _median_minutes(days: DaySums, draws: NDArray[np.int64]) -> Floats:
    """Median minutes to lock per draw of day indices [draws, days]."""
    out = np.full(draws.shape[0], np.nan)
    per_day = [np.asarray(m) for m in days.lock_minutes]
    for b, pick in enumerate(draws):
        values = [per_day[i] for i in pick if per_day[i].size]
        if values:
            out[b] = float(np.median(np.concatenate(values)))
    return out


def day_draws(n_days: int) -> tuple[NDArray[np.int64], Floats]:
    """Bootstrap draws of day indices [draws, days] and their weights [1 + draws, days].

    Row 0 of the weights is the sample itself (every day once).
    """
    rng = np.random.default_rng(SEED)
    picks = rng.integers(0, max(n_days, 1), size=(DRAWS, n_days))
    weights = np.zeros((DRAWS + 1, n_days))
    np.add.at(weights, (np.repeat(np.arange(1, DRAWS + 1), n_days), picks.ravel()), 1.0)
    weights[0] = 1.0
    return picks, weights


def verdict(low: float | None, high: float | None, target: float, at_least: bool) -> str:
    if low is None or high is None:
        return INCONCLUSIVE
    if at_least:
        return MET if low >= target else NOT_MET if high < target else INCONCLUSIVE
    return MET if high <= target else NOT_MET if low > target else INCONCLUSIVE


def interval(values: Floats) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size < 0.9 * values.size or finite.size == 0:
        return None, None  # undefined in too many draws (too few trades of the kind)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _judge(
    c: Criterion, sample: float, draws: Floats, n_trades: int, n_days: int
) -> dict[str, Any]:
    exact = c.key == "lock_violations"  # a count that must be exactly 0: no sampling question
    if exact:
        low = high = sample if math.isfinite(sample) else None
    else:
        low, high = interval(draws)
    value = sample if math.isfinite(sample) else None
    digits = 2 if c.unit == "minutes" else 4
    decided = verdict(low, high, c.target, c.at_least) if value is not None else INCONCLUSIVE
    short = _too_small(n_trades, n_days)
    if short is not None and not (exact and decided == NOT_MET):
        decided = INCONCLUSIVE
    out = {
        "value": number(value, digits),
        "ci_low": number(low, digits),
        "ci_high": number(high, digits),
        "trades": n_trades,
        "days": n_days,
        "verdict": decided,
    }
    if short is not None and decided == INCONCLUSIVE:
        out["why"] = short
    return out


def _too_small(n_trades: int, n_days: int) -> str | None:
    """Why a sample cannot decide a claim (None: large enough)."""
    if n_trades == 0:
        return "no trades of this kind"
    if n_trades < MIN_TRADES or n_days < MIN_DAYS:
        return (
            f"{n_trades} trades on {n_days} trading days; at least {MIN_TRADES} trades "
            f"on {MIN_DAYS} days are needed"
        )
    return None


def judge_claims(
    rows: Sequence[TradeRow],
    variants: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    lock: set[str],
) -> dict[str, Any]:
    """``summary.json["claims"]``: per criterion, per variant (pair), value, CI and verdict."""
    by_variant: dict[str, list[TradeRow]] = {v: [] for v in variants}
    for r in rows:
        by_variant[r.variant].append(r)
    days = sorted({trading_day(r.entry_ts) for r in rows})
    picks, weights = day_draws(len(days))
    out: dict[str, Any] = {
        "method": {
            "confidence": CONFIDENCE,
            "bootstrap_draws": DRAWS,
            "resampling_unit": "trading day (21:00-21:00 UTC)",
            "seed": SEED,
            "min_trades": MIN_TRADES,
            "min_days": MIN_DAYS,
        },
        "criteria": {},
    }
    for c in CRITERIA:
        results: dict[str, Any] = {}
        subjects: list[tuple[str, str | None]] = (
            [(a, b) for a, b in pairs] if c.paired else [(v, None) for v in variants if v in lock]
        )
        for cand, base in subjects:
            mine = [r for r in by_variant[cand] if c.pick(r)]
            cd = DaySums(mine, days)
            if c.key == "scalp_minutes_to_lock":
                vals = np.concatenate(
                    ([_median_minutes(cd, np.arange(len(days))[None, :])[0]],
                     _median_minutes(cd, picks))
                )  # fmt: skip
            elif base is None:
                vals = statistic(c.key, cd.totals(weights))
            else:
                stat, kind = _PAIRED[c.key]
                bd = DaySums([r for r in by_variant[base] if c.pick(r)], days)
                vals = _compare(
                    kind, statistic(stat, cd.totals(weights)), statistic(stat, bd.totals(weights))
                )
            name = cand if base is None else f"{cand} vs {base}"
            n_days = len({trading_day(r.entry_ts) for r in mine})
            results[name] = _judge(c, float(vals[0]), vals[1:], len(mine), n_days)
        out["criteria"][c.key] = {
            "criterion": c.text,
            "target": c.target,
            "direction": ">=" if c.at_least else "<=",
            "unit": c.unit,
            "results": results,
        }
    return out


def expectancy_difference(
    cand: Sequence[TradeRow], base: Sequence[TradeRow]
) -> tuple[float | None, float | None, float | None]:
    """Mean pnl of ``cand`` minus ``base`` (the same trades) with its day-bootstrap 95 % CI."""
    if not cand:
        return None, None, None
    days = sorted({trading_day(r.entry_ts) for r in cand})
    _, weights = day_draws(len(days))
    diff = statistic("expectancy", DaySums(cand, days).totals(weights)) - statistic(
        "expectancy", DaySums(base, days).totals(weights)
    )
    low, high = interval(diff[1:])
    return float(diff[0]), low, high
