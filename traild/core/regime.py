"""Market regime from closed bars (SPEC §3, the origin's rules): ADX(14), ER(10), ATR percentile.

* ``breakout`` if the ATR percentile > 70 and ADX > 18
* ``trending`` if ADX > 25 and ER > 0.5
* ``ranging``  if ADX < 20 and ER < 0.3
* otherwise ``unknown``; ``None`` while the history is too short to compute all three.

Pure and stdlib only: bars in, one label per bar out (the regime as of that bar's close).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MARKET_REGIMES = ("trending", "ranging", "breakout", "unknown")
_TIE_REL = 1e-9  # values this close (relative) are one value in a percentile rank


@dataclass(frozen=True, slots=True)
class RegimeParams:
    adx_period: int = 14
    er_period: int = 10
    atr_period: int = 14
    atr_lookback: int = 96
    atr_min_history: int = 20
    breakout_atr_percentile: float = 70.0
    breakout_adx: float = 18.0
    trending_adx: float = 25.0
    trending_er: float = 0.5
    ranging_adx: float = 20.0
    ranging_er: float = 0.3


def classify(adx: float, er: float, atr_percentile: float, p: RegimeParams = RegimeParams()) -> str:
    """The origin's rules, in their order (breakout first)."""
    if atr_percentile > p.breakout_atr_percentile and adx > p.breakout_adx:
        return "breakout"
    if adx > p.trending_adx and er > p.trending_er:
        return "trending"
    if adx < p.ranging_adx and er < p.ranging_er:
        return "ranging"
    return "unknown"


def adx_series(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], period: int = 14
) -> list[float | None]:
    """Wilder's ADX per bar (None until 2 x period bars have closed)."""
    n = len(close)
    out: list[float | None] = [None] * n
    tr_s = pdm_s = mdm_s = 0.0
    dxs: list[float] = []
    adx: float | None = None
    for i in range(1, n):
        up, down = high[i] - high[i - 1], low[i - 1] - low[i]
        pdm = up if up > down and up > 0 else 0.0
        mdm = down if down > up and down > 0 else 0.0
        tr = max(high[i], close[i - 1]) - min(low[i], close[i - 1])
        if i <= period:  # the first smoothed values are plain sums
            tr_s, pdm_s, mdm_s = tr_s + tr, pdm_s + pdm, mdm_s + mdm
            if i < period:
                continue
        else:
            tr_s += tr - tr_s / period
            pdm_s += pdm - pdm_s / period
            mdm_s += mdm - mdm_s / period
        pdi = 100 * pdm_s / tr_s if tr_s > 0 else 0.0
        mdi = 100 * mdm_s / tr_s if tr_s > 0 else 0.0
        dx = 100 * abs(pdi - mdi) / (pdi + mdi) if pdi + mdi > 0 else 0.0
        if adx is None:
            dxs.append(dx)
            if len(dxs) == period:
                adx = sum(dxs) / period
        else:
            adx = (adx * (period - 1) + dx) / period
        out[i] = adx
    return out


def efficiency_ratio(close: Sequence[float], period: int = 10) -> list[float | None]:
    """Kaufman's ER: |net move| / sum of |moves| over ``period`` bars (0 for a flat stretch)."""
    out: list[float | None] = [None] * len(close)
    for i in range(period, len(close)):
        path = sum(abs(close[j] - close[j - 1]) for j in range(i - period + 1, i + 1))
        out[i] = abs(close[i] - close[i - period]) / path if path > 0 else 0.0
    return out


def atr_percentiles(
    high: Sequence[float], low: Sequence[float], close: Sequence[float], p: RegimeParams
) -> list[float | None]:
    """Percentile rank of ATR(atr_period) among the previous ``atr_lookback`` ATR values."""
    n = len(close)
    out: list[float | None] = [None] * n
    trs: list[float] = []
    atrs: list[float] = []
    for i in range(n):
        prev = close[i - 1] if i else None
        tr = high[i] - low[i] if prev is None else max(high[i], prev) - min(low[i], prev)
        trs.append(tr)
        if len(trs) < p.atr_period:
            continue
        atr = sum(trs[-p.atr_period :]) / p.atr_period
        history = atrs[-p.atr_lookback :]
        if len(history) >= p.atr_min_history:
            out[i] = percentile_rank(atr, history)
        atrs.append(atr)
    return out


def regime_series(
    high: Sequence[float],
    low: Sequence[float],
    close: Sequence[float],
    p: RegimeParams = RegimeParams(),
) -> list[str | None]:
    """The market regime as of each bar's close (None while any input is missing)."""
    adx = adx_series(high, low, close, p.adx_period)
    er = efficiency_ratio(close, p.er_period)
    pct = atr_percentiles(high, low, close, p)
    return [
        None if a is None or e is None or q is None else classify(a, e, q, p)
        for a, e, q in zip(adx, er, pct, strict=True)
    ]


# -- the latest bar only (the daemon's BarHistory, simulate, real-time recalculation) --------
TRENDING, RANGING, BREAKOUT, UNKNOWN = MARKET_REGIMES
Bar = tuple[float, float, float]  # high, low, close


def adx(bars: Sequence[Bar], n: int = 14) -> float | None:
    """Wilder's ADX(n) as of the latest of ``bars`` (oldest first); None with < 2 n bars."""
    if n < 1 or not bars:
        return None
    high, low, close = (list(c) for c in zip(*bars, strict=True))
    return adx_series(high, low, close, n)[-1]


def percentile_rank(current: float, history: Sequence[float]) -> float | None:
    """Mid-rank percentile (0..100) of ``current`` in ``history``: the share below plus half
    the share equal (to a relative 1e-9), so a value tied with the whole history ranks 50
    (``normal``), not 0 (``low``); None for an empty history. The one definition: the
    daemon's regime, the backtest's and the market regime's ATR percentile all use it."""
    if not history:
        return None
    tol = _TIE_REL * abs(current)  # ATRs are float means: equal volatility, unequal last bits
    below = sum(1 for h in history if h < current - tol)
    equal = sum(1 for h in history if abs(h - current) <= tol)
    return 100.0 * (below + 0.5 * equal) / len(history)


def classify_market_regime(
    adx_value: float | None,
    er: float | None,
    atr_percentile: float | None,
    p: RegimeParams = RegimeParams(),
) -> str:
    """``classify`` when a value is missing: the rules that need it are false (``unknown``
    unless another rule holds), never a guess."""
    if adx_value is None:
        return UNKNOWN
    if atr_percentile is not None and er is not None:
        return classify(adx_value, er, atr_percentile, p)
    pct = atr_percentile
    if pct is not None and pct > p.breakout_atr_percentile and adx_value > p.breakout_adx:
        return BREAKOUT
    if er is None:
        return UNKNOWN
    if adx_value > p.trending_adx and er > p.trending_er:
        return TRENDING
    if adx_value < p.ranging_adx and er < p.ranging_er:
        return RANGING
    return UNKNOWN


def market_regime_of_bars(
    bars: Sequence[Bar],
    atr_percentile: float | None,
    adx_period: int = 14,
    er_period: int = 10,
    p: RegimeParams = RegimeParams(),
) -> str | None:
    """The regime as of the latest closed bar; None while there are too few bars for ADX."""
    a = adx(bars, adx_period)
    if a is None:
        return None
    er = _last_efficiency_ratio([b[2] for b in bars], er_period)
    return classify_market_regime(a, er, atr_percentile, p)


def _last_efficiency_ratio(close: Sequence[float], period: int) -> float | None:
    """``efficiency_ratio(close, period)[-1]``, computing only that value (same sums, in the
    same order: the same float)."""
    i = len(close) - 1
    if i < period:
        return None
    path = sum(abs(close[j] - close[j - 1]) for j in range(i - period + 1, i + 1))
    return abs(close[i] - close[i - period]) / path if path > 0 else 0.0
