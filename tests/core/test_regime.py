"""Market regime rules (SPEC §3): ADX(14), ER(10) and ATR percentile of closed bars."""

from __future__ import annotations

import math

from traild.core.regime import adx_series, classify, efficiency_ratio, regime_series


def test_the_origin_rules_classify_in_order_breakout_first() -> None:
    assert classify(adx=19, er=0.1, atr_percentile=71) == "breakout"
    assert classify(adx=30, er=0.6, atr_percentile=50) == "trending"
    assert classify(adx=30, er=0.6, atr_percentile=80) == "breakout"
    assert classify(adx=15, er=0.2, atr_percentile=50) == "ranging"
    assert classify(adx=22, er=0.4, atr_percentile=50) == "unknown"


def test_efficiency_ratio_is_one_for_a_straight_line_and_zero_for_a_round_trip() -> None:
    assert efficiency_ratio([1.0 + i for i in range(11)])[-1] == 1.0
    assert efficiency_ratio([1.0, 2.0] * 6)[-1] == 0.0
    assert efficiency_ratio([1.0] * 5, period=10) == [None] * 5


def test_adx_is_high_in_a_steady_trend_and_low_in_a_sideways_market() -> None:
    up = [100.0 + i for i in range(60)]
    trend = adx_series([c + 0.5 for c in up], [c - 0.5 for c in up], up)
    assert trend[26] is None and trend[27] is not None  # Wilder: 2 x 14 bars of warm-up
    assert trend[-1] is not None and trend[-1] > 90
    side = [100.0 + math.sin(i) for i in range(60)]
    flat = adx_series([c + 0.5 for c in side], [c - 0.5 for c in side], side)
    assert flat[-1] is not None and flat[-1] < 20


def test_regime_series_labels_a_trend_trending_and_a_range_ranging() -> None:
    up = [100.0 + 0.5 * i for i in range(150)]
    assert regime_series([c + 0.3 for c in up], [c - 0.3 for c in up], up)[-1] == "trending"
    side = [100.0 + math.sin(i) for i in range(150)]
    labels = regime_series([c + 0.5 for c in side], [c - 0.5 for c in side], side)
    assert labels[0] is None and labels[-1] == "ranging"
    # a volatility burst at the end of a quiet drift: ATR percentile and ADX jump -> breakout
    calm = [100.0 + 0.01 * i for i in range(140)]
    burst = calm + [calm[-1] + 2.0 * k for k in range(1, 8)]
    high = [c + 0.05 for c in calm] + [c + 1.0 for c in burst[140:]]
    low = [c - 0.05 for c in calm] + [c - 1.0 for c in burst[140:]]
    assert regime_series(high, low, burst)[-1] == "breakout"
