"""Backtest metrics (SPEC §8): per variant, overall and by volatility regime, market regime,
session and currency pair (``by_pair``, keyed ``EURUSD``: ``report --vs-backtest`` compares a
pair's live trades with its own backtest figures).

Definitions (pips unless named otherwise; a metric with no data is ``None`` -> JSON null):

* ``win_rate``            share of trades with pnl > 0 (0..1)
* ``expectancy_pips``     mean pnl; ``total_pips`` its sum
* ``profit_factor``       gross win / gross loss (null without a losing trade)
* ``profit_capture_pct``  100 x sum(pnl) / sum(MFE) over winning trades
* ``premature_stopouts``  stop exits (the initial stop included) whose take-profit level
                          traded within the lookahead after the exit
* ``protected_share``     share of trades whose MFE reached the profit-lock trigger
                          (measured in every variant, lock on or off)
* ``median_minutes_to_lock`` entry to the first tick at the trigger, over those trades
* ``lock_violations``     trades that reached the trigger and were stopped with a confirmed
                          stop short of entry + profit_lock_pips (0 for lock variants)
* ``lock_slippage_losses`` trades that reached the trigger and closed below entry only
                          because of slippage: stopped with a stop at/beyond entry, filled
                          below entry (a trade stopped at its initial stop is not one)
* ``gap_fills``           stop exits filled beyond the stop level
* ``mean_slippage_pips``  mean distance of stop fills beyond their stop (0 when at the level)
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from traild.backtest.rows import TradeRow
from traild.core.calculator import REGIMES
from traild.core.errors import InstrumentError
from traild.core.instruments import symbol_of
from traild.core.regime import MARKET_REGIMES

SESSION_ORDER = ("asian", "london", "overlap", "new_york")
UNKNOWN = "unknown"
METRICS = (
    "trades",
    "win_rate",
    "expectancy_pips",
    "total_pips",
    "profit_factor",
    "profit_capture_pct",
    "premature_stopouts",
    "protected_share",
    "median_minutes_to_lock",
    "lock_violations",
    "lock_slippage_losses",
    "gap_fills",
    "mean_slippage_pips",
    "methods",
    "fallback_reasons",
)


def number(value: float | None, digits: int) -> float | None:
    """A JSON-safe rounded number: None for missing, NaN or infinite values."""
    if value is None or not math.isfinite(value):
        return None
    rounded = round(value, digits)
    return rounded + 0.0  # no "-0.0" in reports


def metrics(rows: Sequence[TradeRow]) -> dict[str, Any]:
    """Every SPEC §8 metric over ``rows`` (one variant's trades, or a bucket of them)."""
    n = len(rows)
    pnl = [r.pnl_pips for r in rows]
    wins = [r for r in rows if r.pnl_pips > 0]
    gross_win = math.fsum(r.pnl_pips for r in wins)
    gross_loss = -math.fsum(p for p in pnl if p < 0)
    win_mfe = math.fsum(r.mfe_pips for r in wins)
    stops = [r for r in rows if r.exit_reason == "stop"]
    slips = [r.slippage_pips for r in stops if r.slippage_pips is not None]
    locks = [r.minutes_to_lock for r in rows if r.minutes_to_lock is not None]
    return {
        "trades": n,
        "win_rate": number(len(wins) / n, 4) if n else None,
        "expectancy_pips": number(math.fsum(pnl) / n, 2) if n else None,
        "total_pips": number(math.fsum(pnl), 2),
        "profit_factor": number(gross_win / gross_loss, 3) if gross_loss > 0 else None,
        "profit_capture_pct": number(100 * gross_win / win_mfe, 2) if win_mfe > 0 else None,
        "premature_stopouts": sum(r.premature for r in rows),
        "protected_share": number(len(locks) / n, 4) if n else None,
        "median_minutes_to_lock": number(statistics.median(locks), 2) if locks else None,
        "lock_violations": sum(r.lock_violation for r in rows),
        "lock_slippage_losses": sum(r.lock_slippage_loss for r in rows),
        "gap_fills": sum(r.gap for r in stops),
        "mean_slippage_pips": number(math.fsum(slips) / len(slips), 2) if slips else None,
        "methods": _counts(r.method for r in rows),
        "fallback_reasons": _counts(r.fallback_reason for r in rows if r.fallback_reason),
    }


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    return {k: v for k, v in sorted(Counter(str(v) for v in values).items())}


def regime_of(row: TradeRow) -> str:
    return (row.volatility_regime or UNKNOWN).strip().lower()


def market_regime_of(row: TradeRow) -> str:
    return (row.market_regime or UNKNOWN).strip().lower()


def session_of(row: TradeRow) -> str:
    return (row.session or UNKNOWN).strip().lower()


def kind_of(row: TradeRow) -> str:
    return "scalp" if row.is_scalp else "regular"


def by(
    rows: Sequence[TradeRow], key: Callable[[TradeRow], str], order: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Metrics per bucket, buckets in ``order`` first, then others sorted, ``unknown`` last."""
    groups: dict[str, list[TradeRow]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(groups, key=lambda g: (g == UNKNOWN, rank.get(g, len(rank)), g))
    return {g: metrics(groups[g]) for g in names}


def summarize(rows: Sequence[TradeRow], variants: Sequence[str]) -> dict[str, Any]:
    """The ``summary.json`` object of SPEC §8."""
    out: dict[str, Any] = {}
    for name in variants:
        mine = [r for r in rows if r.variant == name]
        out[name] = {
            **metrics(mine),
            "by_regime": by(mine, regime_of, REGIMES),
            "by_session": by(mine, session_of, SESSION_ORDER),
            "by_market_regime": by(mine, market_regime_of, MARKET_REGIMES),
            "by_pair": by(mine, pair_of, ()),
        }
    return {"variants": out}


def pair_of(row: TradeRow) -> str:
    """The currency pair (``EURUSD``) of a row, whatever epic spelling its file gave."""
    try:
        return symbol_of(row.epic)
    except InstrumentError:
        return row.epic.upper()


def by_kind(rows: Sequence[TradeRow], variants: Sequence[str]) -> dict[str, Any]:
    """Scalp versus regular trades per variant (the seed's scalp expectancy question)."""
    return {
        name: by([r for r in rows if r.variant == name], kind_of, ("scalp", "regular"))
        for name in variants
    }
