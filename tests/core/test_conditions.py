"""Conditions from traild's own prices: sessions, ATR(14) of M15 mid bars, regime; tick guard."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from traild.core.conditions import (
    BarHistory,
    ConditionParams,
    GuardParams,
    TickGuard,
    regime_of,
    session_of,
)

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
    assert g.check(T, 1.1, 1.1002) is None
    assert g.check(T - timedelta(milliseconds=1), 1.1, 1.1001) == "out_of_order"
    assert (g.accepted, g.rejected) == (2, 1)


def test_an_exact_duplicate_of_the_last_tick_is_rejected() -> None:
    g = TickGuard()
    assert g.check(T, 1.1, 1.1001) is None
    assert g.check(T, 1.1, 1.1001) == "duplicate"
    assert g.by_reason == {"duplicate": 1}


def test_a_naive_timestamp_is_rejected() -> None:
    assert TickGuard().check(datetime(2014, 5, 1), 1.1, 1.1001) == "naive_timestamp"


def test_a_crossed_quote_is_accepted_and_counted() -> None:
    g = TickGuard()
    assert g.check(T, 1.1002, 1.1001) is None
    assert (g.accepted, g.crossed) == (1, 1)


EURUSD = GuardParams.for_pip(0.0001)


def _quiet(g: TickGuard, n: int = 50, start: datetime = T) -> datetime:
    """n quiet ticks one second apart around 1.1000; returns the last tick's time."""
    ts = start
    for i in range(n):
        ts = start + timedelta(seconds=i)
        mid = 1.1 + 0.00002 * (i % 3)
        assert g.check(ts, mid, mid + 0.0001) is None
    return ts


def test_one_tick_far_in_the_future_costs_exactly_that_tick() -> None:
    g = TickGuard(EURUSD)
    ts = _quiet(g)
    assert g.check(ts + timedelta(days=38), 1.1, 1.1001) == "future_timestamp"
    assert g.last_ts == ts  # the clock did not move
    assert g.check(ts + timedelta(seconds=1), 1.10001, 1.10011) is None
    assert g.by_reason == {"future_timestamp": 1}


def test_a_tick_ahead_of_the_wall_clock_is_rejected_and_never_re_anchors() -> None:
    g = TickGuard(EURUSD)
    ts = _quiet(g, 5)
    wall = ts + timedelta(seconds=1)
    for i in range(10):
        ahead = ts + timedelta(hours=1, seconds=i)  # a time-zone slip of one hour
        assert g.check(ahead, 1.1, 1.1001, now=wall) == "future_timestamp"
    assert g.last_ts == ts
    assert g.check(wall, 1.1, 1.1001, now=wall) is None


def test_consistent_out_of_order_ticks_re_anchor_the_clock() -> None:
    g = TickGuard(EURUSD)
    _quiet(g, 5, T + timedelta(hours=2))  # a feed that started with a clock 2 h ahead
    reasons = [
        g.check(T + timedelta(seconds=i), 1.1, 1.1001 + i * 1e-5)
        for i in range(EURUSD.reanchor_ticks)
    ]
    assert reasons == ["out_of_order"] * (EURUSD.reanchor_ticks - 1) + [None]
    assert g.reanchored == 1
    assert g.check(T + timedelta(seconds=10), 1.1, 1.1001) is None


def test_inconsistent_out_of_order_ticks_never_re_anchor() -> None:
    g = TickGuard(EURUSD)
    ts = _quiet(g, 5, T + timedelta(hours=2))
    for i in range(20):  # newest first: each is older than the one before
        assert g.check(ts - timedelta(seconds=i + 1), 1.1, 1.1001) == "out_of_order"
    assert g.reanchored == 0


def test_a_150_pip_bad_print_is_rejected_on_quiet_data() -> None:
    g = TickGuard(EURUSD)
    ts = _quiet(g)
    assert g.check(ts + timedelta(seconds=1), 1.115, 1.1151) == "spike"
    assert g.check(ts + timedelta(seconds=2), 1.1, 1.1001) is None


def test_three_600_pip_prints_in_a_row_do_not_become_the_level() -> None:
    g = TickGuard(EURUSD)
    ts = _quiet(g)
    for i in range(3):
        assert g.check(ts + timedelta(seconds=1 + i), 1.16, 1.1601) == "spike"
    assert g.last_mid == pytest.approx(1.10005, abs=1e-4)
    for i in range(10):  # the real prices that follow are all accepted
        assert g.check(ts + timedelta(seconds=5 + i), 1.1, 1.1001) is None
    assert g.by_reason == {"spike": 3}


def test_a_level_that_persists_is_a_real_move_and_re_anchors() -> None:
    g = TickGuard(EURUSD)
    ts = _quiet(g)
    reasons = [g.check(ts + timedelta(seconds=1 + i), 1.12, 1.1201) for i in range(5)]
    assert reasons == ["spike"] * 4 + [None]
    assert g.last_mid == pytest.approx(1.12005)


def test_the_spike_allowance_grows_with_volatility_and_with_time() -> None:
    quiet, busy = TickGuard(EURUSD), TickGuard(EURUSD)
    _quiet(quiet)
    for i in range(50):  # 2-pip moves every tick
        mid = 1.1 + 0.0002 * (i % 2)
        assert busy.check(T + timedelta(seconds=i), mid, mid) is None
    assert quiet.allowance() == pytest.approx(40 * 0.0001)  # the floor
    assert busy.allowance() > 100 * 0.0001
    assert quiet.allowance(3_600_000) > quiet.allowance()  # an hour later: more room
    assert quiet.allowance(10**10) == pytest.approx(500 * 0.0001)  # never past the ceiling
    # after a weekend, a 100-pip gap is a real open, not a spike
    assert quiet.check(T + timedelta(days=2), 1.11, 1.1101) is None


def test_a_real_gap_longer_than_max_gap_costs_the_ticks_before_the_re_anchor() -> None:
    g = TickGuard(EURUSD)
    ts = _quiet(g, 5)
    later = ts + timedelta(days=30)  # a data gap, not a bad tick: the ticks keep coming
    reasons = [g.check(later + timedelta(seconds=i), 1.1, 1.1001 + i * 1e-5) for i in range(6)]
    assert reasons == ["future_timestamp"] * 4 + [None, None]
    assert g.reanchored == 1 and g.last_ts == later + timedelta(seconds=5)
