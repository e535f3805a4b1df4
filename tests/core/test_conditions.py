"""Conditions from traild's own prices: sessions, ATR(14) of M15 mid bars, regime; tick guard."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from traild.core.conditions import BarHistory, ConditionParams, TickGuard, regime_of, session_of

P = ConditionParams()


@pytest.mark.parametrize(
    ("hhmm", "session"),
    [
        ("00:00", "asian"),
        ("06:59", "asian"),
        ("07:00", "london"),
        ("11:59", "london"),
        ("12:00", "overlap"),
        ("15:59", "overlap"),
        ("16:00", "new_york"),
        ("20:59", "new_york"),
        ("21:00", "asian"),
        ("23:59", "asian"),
    ],
)
def test_session_boundaries_follow_the_utc_hour(hhmm: str, session: str) -> None:
    h, m = map(int, hhmm.split(":"))
    assert session_of(datetime(2014, 5, 1, h, m, tzinfo=UTC)) == session


def test_session_hours_are_configurable() -> None:
    p = ConditionParams(asian_start_hour=22, london_start_hour=8)
    assert session_of(datetime(2014, 5, 1, 21, 30, tzinfo=UTC), p) == "new_york"
    assert session_of(datetime(2014, 5, 1, 7, 30, tzinfo=UTC), p) == "asian"


def test_regime_is_the_percentile_rank_of_the_current_atr() -> None:
    history = [float(i) for i in range(1, 101)]  # 100 values
    assert regime_of(95.5, history, P) == "extreme"  # 95 % below
    assert regime_of(80.5, history, P) == "high"
    assert regime_of(50.5, history, P) == "normal"
    assert regime_of(10.5, history, P) == "low"
    assert regime_of(20.5, history, P) == "normal"  # exactly 20 % below is not < 20


def test_regime_needs_enough_history() -> None:
    assert regime_of(1.0, [1.0] * (P.regime_min_history - 1), P) is None


def _feed_bars(h: BarHistory, ranges: list[float], start: datetime) -> datetime:
    """One bar per range: open at 1.1, up by the range, back; returns the next bar's start."""
    ts = start
    for r in ranges:
        h.add(ts, 1.1, 1.1)
        h.add(ts + timedelta(minutes=5), 1.1 + r, 1.1 + r)
        h.add(ts + timedelta(minutes=10), 1.1, 1.1)
        ts += timedelta(minutes=15)
    return ts


def test_atr_is_the_mean_true_range_of_the_last_14_closed_bars() -> None:
    h = BarHistory(0.0001)
    start = datetime(2014, 5, 1, tzinfo=UTC)
    nxt = _feed_bars(h, [0.0010] * 14, start)
    assert h.atr is None  # the 14th bar is not closed yet
    h.add(nxt, 1.1, 1.1)  # opens bar 15, closes bar 14
    assert h.atr == pytest.approx(0.0010)
    cond = h.conditions("EURUSD", nxt)
    assert cond.atr_pips == 10.0
    assert cond.session == "asian"
    assert cond.volatility_regime is None  # no ATR history yet


def test_true_range_includes_the_gap_from_the_previous_close() -> None:
    h = BarHistory(0.0001, ConditionParams(atr_period=1))
    t = datetime(2014, 5, 1, tzinfo=UTC)
    h.add(t, 1.1000, 1.1000)
    h.add(t + timedelta(minutes=15), 1.1050, 1.1050)  # closes bar 1 (range 0)
    h.add(t + timedelta(minutes=16), 1.1060, 1.1060)
    h.add(t + timedelta(minutes=30), 1.1060, 1.1060)  # closes bar 2: 1.1050..1.1060, prev 1.1
    assert h.atr == pytest.approx(0.0060)


def test_regime_from_bars_rises_to_extreme_after_a_volatility_burst() -> None:
    h = BarHistory(0.0001, ConditionParams(atr_period=2, regime_min_history=20))
    start = datetime(2014, 5, 1, tzinfo=UTC)
    nxt = _feed_bars(h, [0.0005] * 40 + [0.0050] * 2, start)
    h.add(nxt, 1.1, 1.1)
    assert h.conditions("EURUSD", nxt).volatility_regime == "extreme"


# -- tick guard ----------------------------------------------------------------------------------
T = datetime(2014, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bid", "ask", "reason"),
    [
        (math.nan, 1.1, "non_finite"),
        (1.1, math.inf, "non_finite"),
        (0.0, 1.1, "non_positive"),
        (1.1, -1.0, "non_positive"),
    ],
)
def test_bad_prices_are_rejected_and_counted(bid: float, ask: float, reason: str) -> None:
    g = TickGuard()
    assert g.check(T, bid, ask) == reason
    assert (g.accepted, g.rejected) == (0, 1)


def test_an_older_tick_is_rejected_but_an_equal_timestamp_is_accepted() -> None:
    g = TickGuard()
    assert g.check(T, 1.1, 1.1001) is None
    assert g.check(T, 1.1, 1.1001) is None
    assert g.check(T - timedelta(milliseconds=1), 1.1, 1.1001) == "out_of_order"
    assert (g.accepted, g.rejected) == (2, 1)


def test_a_naive_timestamp_is_rejected() -> None:
    assert TickGuard().check(datetime(2014, 5, 1), 1.1, 1.1001) == "naive_timestamp"


def test_a_crossed_quote_is_accepted_and_counted() -> None:
    g = TickGuard()
    assert g.check(T, 1.1002, 1.1001) is None
    assert (g.accepted, g.crossed) == (1, 1)


def test_a_spike_is_rejected_until_it_persists_for_three_ticks() -> None:
    g = TickGuard(max_jump=0.01)
    assert g.check(T, 1.1, 1.1) is None
    assert g.check(T, 11000.0, 11000.0) == "spike"  # a wire level scaled x10000
    assert g.check(T, 1.1001, 1.1001) is None  # back to normal: the spike counter resets
    assert g.check(T, 1.2, 1.2) == "spike"
    assert g.check(T, 1.2, 1.2) == "spike"
    assert g.check(T, 1.2, 1.2) is None  # a level that persists is a real move
