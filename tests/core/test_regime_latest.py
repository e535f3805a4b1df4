"""The market regime of the latest closed bar (daemon, simulate, real-time recalculation)."""

from __future__ import annotations

import pytest

from traild.core.regime import (
    adx,
    classify_market_regime,
    market_regime_of_bars,
    percentile_rank,
)


def test_adx_matches_wilder_by_hand_for_a_short_period() -> None:
    bars = [(10.0, 9.0, 9.5), (11.0, 9.5, 10.5), (10.8, 9.8, 10.0), (10.9, 9.0, 9.2)]
    # DX at bar 2 = 100 (only +DM so far); at bar 3 Wilder-smoothed +DM 0.5, -DM 0.8 -> 23.08
    assert adx(bars, 2) == pytest.approx((100 + 100 * 0.3 / 1.3) / 2)


def test_adx_needs_two_periods_of_bars() -> None:
    bars = [(1.0 + i, 0.5 + i, 0.8 + i) for i in range(27)]
    assert adx(bars, 14) is None
    assert adx([*bars, (28.0, 27.5, 27.8)], 14) == pytest.approx(100.0)


def test_adx_of_a_zigzag_without_direction_is_low() -> None:
    bars = [(1.2, 1.0, 1.1) if i % 2 else (1.21, 1.01, 1.11) for i in range(60)]
    value = adx(bars)
    assert value is not None and value < 20


def test_percentile_rank_counts_lower_values_and_half_the_ties() -> None:
    assert percentile_rank(3.0, [1.0, 2.0, 3.0, 4.0]) == 62.5  # 2 below, 1 tie
    assert percentile_rank(3.5, [1.0, 2.0, 3.0, 4.0]) == 75.0
    assert percentile_rank(1.0, []) is None


@pytest.mark.parametrize(
    ("adx_value", "er", "pct", "regime"),
    [
        (19.0, 0.1, 71.0, "breakout"),  # breakout is checked first (SPEC order)
        (30.0, 0.6, 80.0, "breakout"),
        (30.0, 0.6, 70.0, "trending"),  # 70 is not > 70
        (25.0, 0.6, 50.0, "unknown"),  # 25 is not > 25
        (19.9, 0.29, 50.0, "ranging"),
        (19.9, 0.3, None, "unknown"),
        (18.0, 0.1, 95.0, "ranging"),  # ADX 18 is no breakout
        (None, 0.9, 95.0, "unknown"),
        (30.0, None, 50.0, "unknown"),
    ],
)
def test_classifier_follows_the_origin_rules(
    adx_value: float | None, er: float | None, pct: float | None, regime: str
) -> None:
    assert classify_market_regime(adx_value, er, pct) == regime


def test_a_steady_trend_of_bars_is_trending_and_short_history_is_none() -> None:
    bars = [(1.001 + 0.001 * i, 1.0 + 0.001 * i, 1.0005 + 0.001 * i) for i in range(40)]
    assert market_regime_of_bars(bars, atr_percentile=50.0) == "trending"
    assert market_regime_of_bars(bars[:20], atr_percentile=50.0) is None


def test_bar_history_reports_bar_closes_and_the_market_regime_of_its_bars() -> None:
    from datetime import UTC, datetime, timedelta

    from traild.core.conditions import BarHistory, ConditionParams

    history = BarHistory(0.0001, ConditionParams(bar_minutes=1, regime_min_history=5))
    t0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
    closes = 0
    for i in range(40 * 6):  # 40 one-minute bars, six ticks each, rising steadily
        price = 1.1 + 0.00002 * i
        closes += history.add(t0 + timedelta(seconds=10 * i), price, price + 0.00001)
    assert closes == 39 and history.bars_closed == 39
    cond = history.conditions("CS.D.EURUSD.MINI.IP", t0 + timedelta(minutes=40))
    assert cond.market_regime == "trending" and cond.session == "london"
