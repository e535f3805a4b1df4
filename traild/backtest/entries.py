"""Test entry generators (``--entries``): deliberately simple trend-following entries.

THESE ARE TEST ENTRIES, NOT TRADING ADVICE. Trailing stops exist for trend-following entries;
random entries are the null test. These two give the backtest entries with a (possible) edge so
the seed's claims can be judged on both kinds, and nothing more:

* ``ema-cross``: EMA(9) crosses EMA(21) on M15 mid closes -> BUY (up) / SELL (down)
* ``breakout``:  an M15 close beyond the previous 20 bars' high (BUY) / low (SELL) -- a
                 20-bar Donchian breakout; only the first bar of a run of breakouts signals

The entry is the first tick (bar open) at/after the signal bar's close, only when it comes
within 5 minutes of it (no entry carried across a weekend). Stops and take-profits are the
``[backtest]`` regular-trade defaults.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from traild.backtest.markets import Floats, Ints, Market, mid_bars
from traild.backtest.signals import GAP_MS, RandomDefaults, Signal
from traild.core.errors import DataError
from traild.core.messages import Direction

EMA_CROSS, BREAKOUT = "ema-cross", "breakout"
GENERATORS = (EMA_CROSS, BREAKOUT)
BAR_MINUTES = 15
EMA_FAST, EMA_SLOW, DONCHIAN = 9, 21, 20


def ema(x: Floats, period: int) -> Floats:
    """Exponential moving average, alpha = 2 / (period + 1), seeded with the first value."""
    alpha = 2.0 / (period + 1)
    out = np.empty_like(x)
    acc = float(x[0]) if x.size else 0.0
    for i, v in enumerate(x.tolist()):
        acc = v if i == 0 else acc + alpha * (v - acc)
        out[i] = acc
    return out


def ema_cross_signs(close: Floats) -> Ints:
    """+1 at a bar where EMA(9) crosses above EMA(21), -1 below, 0 elsewhere (after warm-up)."""
    above = np.sign(ema(close, EMA_FAST) - ema(close, EMA_SLOW)).astype(np.int64)
    out = np.zeros(close.size, dtype=np.int64)
    cross = (above[1:] != above[:-1]) & (above[1:] != 0)
    out[1:] = np.where(cross, above[1:], 0)
    out[:EMA_SLOW] = 0
    return out


def breakout_signs(high: Floats, low: Floats, close: Floats) -> Ints:
    """+1 where a close first exceeds the previous 20 bars' high, -1 below their low."""
    n = close.size
    raw = np.zeros(n, dtype=np.int64)
    if n > DONCHIAN:
        win_hi = np.lib.stride_tricks.sliding_window_view(high, DONCHIAN)[:-1].max(1)
        win_lo = np.lib.stride_tricks.sliding_window_view(low, DONCHIAN)[:-1].min(1)
        c = close[DONCHIAN:]
        raw[DONCHIAN:] = np.where(c > win_hi, 1, np.where(c < win_lo, -1, 0))
    first = raw.copy()
    first[1:] = np.where(raw[1:] == raw[:-1], 0, raw[1:])
    return first


def generate(kind: str, markets: Sequence[Market], defaults: RandomDefaults) -> list[Signal]:
    """Every signal of ``kind`` over every market, sorted by time."""
    if kind not in GENERATORS:
        raise DataError(
            f"--entries: unknown generator {kind!r}; choose from {', '.join(GENERATORS)}"
        )
    out: list[Signal] = []
    for k, m in enumerate(markets):
        bars = mid_bars(m, BAR_MINUTES)
        if kind == EMA_CROSS:
            signs = ema_cross_signs(bars.close)
        else:
            signs = breakout_signs(bars.high, bars.low, bars.close)
        for j in np.flatnonzero(signs).tolist():
            at = int(bars.end_ms[j])
            idx = m.entry_index(at)
            if idx > len(m) - 2 or int(m.ts_ms[idx]) - at > GAP_MS:
                continue
            out.append(
                Signal(
                    ts_ms=at,
                    market=k,
                    epic=m.epic,
                    direction=Direction.BUY if signs[j] > 0 else Direction.SELL,
                    stop_pips=defaults.stop_pips,
                    limit_pips=defaults.limit_pips,
                    where=f"{kind} entry at bar {j} of {m.source.path.name}",
                )
            )
    if not out:
        raise DataError(f"--entries {kind}: no signal in the data")
    out.sort(key=lambda s: (s.ts_ms, s.market))
    return out
