"""Market regime of closed bars: ADX(14), efficiency ratio ER(10), ATR percentile (SPEC §3).

The origin's rules, in the order SPEC §3 gives them:

    breakout  if ATR percentile > 70 and ADX > 18
    trending  if ADX > 25 and ER > 0.5
    ranging   if ADX < 20 and ER < 0.3
    unknown   otherwise (or when the history is too short for an input)

Pure functions over plain floats (oldest bar first); the daemon (``conditions.BarHistory``), the
simulator and the backtest all call these, so a trade's regime is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TRENDING = "trending"
RANGING = "ranging"
BREAKOUT = "breakout"
UNKNOWN = "unknown"
# The regimes the classifier produces; an alert may name others (then: base stages, a warning).
MARKET_REGIMES = (TRENDING, RANGING, BREAKOUT, UNKNOWN)

Bar = tuple[float, float, float]  # high, low, close


@dataclass(frozen=True, slots=True)
class RegimeThresholds:
    """The classifier's cut-offs (the origin's SMC_SIMPLE values)."""

    breakout_atr_percentile: float = 70.0
    breakout_adx: float = 18.0
    trending_adx: float = 25.0
    trending_er: float = 0.5
    ranging_adx: float = 20.0
    ranging_er: float = 0.3


def adx(bars: Sequence[Bar], n: int = 14) -> float | None:
    """Wilder's ADX(n) of the latest bar, 0..100; None with fewer than ``2 n`` bars.

    True range and directional movement need the previous bar, the first DI needs ``n`` of
    them, and the first ADX is the mean of ``n`` DX values (then Wilder-smoothed).
    """
    if n < 1 or len(bars) < 2 * n:
        return None
    tr_s = plus_s = minus_s = 0.0
    adx_value: float | None = None
    dxs: list[float] = []
    for i in range(1, len(bars)):
        high, low, _ = bars[i]
        prev_high, prev_low, prev_close = bars[i - 1]
        tr = max(high, prev_close) - min(low, prev_close)
        up, down = high - prev_high, prev_low - low
        plus = up if up > down and up > 0 else 0.0
        minus = down if down > up and down > 0 else 0.0
        if i <= n:  # the first smoothed values are plain sums
            tr_s, plus_s, minus_s = tr_s + tr, plus_s + plus, minus_s + minus
            if i < n:
                continue
        else:
            tr_s += tr - tr_s / n
            plus_s += plus - plus_s / n
            minus_s += minus - minus_s / n
        dx = _dx(tr_s, plus_s, minus_s)
        if adx_value is None:
            dxs.append(dx)
            if len(dxs) == n:
                adx_value = sum(dxs) / n
        else:
            adx_value = (adx_value * (n - 1) + dx) / n
    return adx_value


def _dx(tr_s: float, plus_s: float, minus_s: float) -> float:
    if tr_s <= 0:
        return 0.0
    plus_di, minus_di = 100.0 * plus_s / tr_s, 100.0 * minus_s / tr_s
    total = plus_di + minus_di
    return 0.0 if total <= 0 else 100.0 * abs(plus_di - minus_di) / total


def efficiency_ratio(closes: Sequence[float], n: int = 10) -> float | None:
    """Kaufman's ER(n): |net change over n bars| / sum of |bar-to-bar changes|, 0..1.

    None with fewer than ``n + 1`` closes; a flat market (no movement at all) is 0.
    """
    if n < 1 or len(closes) < n + 1:
        return None
    window = closes[-(n + 1) :]
    path = sum(abs(window[i] - window[i - 1]) for i in range(1, len(window)))
    if path <= 0:
        return 0.0
    return abs(window[-1] - window[0]) / path


def percentile_rank(current: float, history: Sequence[float]) -> float | None:
    """Share (0..100) of ``history`` strictly below ``current``; None for an empty history."""
    if not history:
        return None
    return 100.0 * sum(1 for h in history if h < current) / len(history)


def classify_market_regime(
    adx_value: float | None,
    er: float | None,
    atr_percentile: float | None,
    t: RegimeThresholds = RegimeThresholds(),
) -> str:
    """``breakout`` / ``trending`` / ``ranging`` / ``unknown`` by the rules in the module doc.

    A missing input makes the rules that need it false (never a guess).
    """
    if adx_value is None:
        return UNKNOWN
    pct = atr_percentile
    if pct is not None and pct > t.breakout_atr_percentile and adx_value > t.breakout_adx:
        return BREAKOUT
    if er is None:
        return UNKNOWN
    if adx_value > t.trending_adx and er > t.trending_er:
        return TRENDING
    if adx_value < t.ranging_adx and er < t.ranging_er:
        return RANGING
    return UNKNOWN


def market_regime_of_bars(
    bars: Sequence[Bar],
    atr_percentile: float | None,
    adx_period: int = 14,
    er_period: int = 10,
    t: RegimeThresholds = RegimeThresholds(),
) -> str | None:
    """The regime of the latest closed bar; None while there are too few bars for ADX."""
    a = adx(bars, adx_period)
    if a is None:
        return None
    er = efficiency_ratio([b[2] for b in bars], er_period)
    return classify_market_regime(a, er, atr_percentile, t)
