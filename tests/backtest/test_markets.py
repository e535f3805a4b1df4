"""Backtest markets: the runtime's tick acceptance, exact tick conversion, entry conditions."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.markets import Market, TickSource, accepted_mask, entry_conditions
from traild.core.conditions import BarHistory, ConditionParams, TickGuard
from traild.core.errors import DataError
from traild.core.regime import regime_series


def test_vectorised_acceptance_rejects_exactly_what_the_tick_guard_rejects() -> None:
    ts = np.array([0, 5, 3, 5, 9, 8, 8, 10, 11, 12, 7, 12], dtype=np.int64)
    nan, inf = math.nan, math.inf
    bid = np.array([1.1, 1.1, 1.1, nan, 1.1, 1.1, 1.2, 0.0, 1.1, 1.3, 1.1, -1.0])
    ask = np.array([1.2, 1.2, 1.2, 1.2, inf, 1.2, 1.1, 1.2, 1.2, 1.2, 1.2, 1.2])
    guard = TickGuard()
    expected = [
        guard.check(ms_to_datetime(int(t)), b, a) is None
        for t, b, a in zip(ts, bid, ask, strict=True)
    ]
    assert accepted_mask(ts, bid, ask).tolist() == expected
    # Rejected: two out of order, NaN, inf, zero, negative. The tick at t=8 after the
    # rejected t=9 is accepted: a rejected tick never moves the order floor.
    assert [i for i, ok in enumerate(expected) if not ok] == [2, 3, 4, 7, 10, 11]


def test_prices_become_the_ticks_instrument_to_ticks_gives(oanda: Market) -> None:
    inst = oanda.instrument
    sample = np.linspace(0, len(oanda) - 1, 2000).astype(int)
    assert [inst.to_ticks(float(p)) for p in oanda.bid_px[sample]] == oanda.bid[sample].tolist()
    assert [inst.to_ticks(float(p)) for p in oanda.ask_px[sample]] == oanda.ask[sample].tolist()


def test_entry_conditions_equal_a_bar_history_fed_every_earlier_tick(oanda: Market) -> None:
    params = ConditionParams()
    keys = oanda.ts_ms // 1000 // (params.bar_minutes * 60)
    bar_starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    entries = [0, 1, 5_000, 20_000, 39_999, int(bar_starts[60]), int(bar_starts[61]) + 3]
    got = entry_conditions(oanda, entries, params)
    history = BarHistory(float(oanda.instrument.pip_size), params)
    expected = {}
    for i in range(max(entries) + 1):
        ts = ms_to_datetime(int(oanda.ts_ms[i]))
        if i in entries:
            expected[i] = history.conditions(oanda.epic, ts)
        history.add(ts, float(oanda.bid_px[i]), float(oanda.ask_px[i]))
    # the market regime at entry comes from regime_series over all bars (not BarHistory's)
    strip = {k: replace(c, market_regime=None) for k, c in expected.items()}
    assert {k: replace(c, market_regime=None) for k, c in got.items()} == strip
    assert got[39_999].atr_pips is not None and got[39_999].volatility_regime is not None
    assert got[0].atr_pips is None  # no closed bars yet: the calculator falls back (no_atr)


def test_tick_source_takes_the_epic_after_an_equals_sign_or_from_the_file_name() -> None:
    assert TickSource.parse("/d/x.csv=CS.D.EURUSD.MINI.IP") == TickSource(
        Path("/d/x.csv"), "CS.D.EURUSD.MINI.IP"
    )
    assert TickSource.parse("/d/GBPJPY_dukascopy.csv.gz").epic == "GBPJPY"
    with pytest.raises(DataError, match="currency pair"):
        TickSource.parse("/d/ticks.csv.gz")
    with pytest.raises(DataError, match="empty epic"):
        TickSource.parse("/d/x.csv=")


def test_entry_market_regime_is_the_regime_of_the_last_bar_closed_before_the_entry(
    oanda: Market,
) -> None:
    params = ConditionParams()
    period = params.bar_minutes * 60_000
    entries = [30_000, 60_001, 120_000]
    got = entry_conditions(oanda, entries, params)
    mid = (oanda.bid_px + oanda.ask_px) / 2
    for entry in entries:
        # independently: every M15 mid bar that ended by the entry time, then the core rules
        end = int(oanda.ts_ms[entry]) // period * period
        bars: dict[int, list[float]] = {}
        for t, m in zip(oanda.ts_ms.tolist(), mid.tolist(), strict=True):
            if t >= end:
                break
            bars.setdefault(t // period, []).append(m)
        values = list(bars.values())
        labels = regime_series(
            [max(v) for v in values], [min(v) for v in values], [v[-1] for v in values]
        )
        assert got[entry].market_regime == labels[-1]
    assert {c.market_regime for c in got.values()} <= {"trending", "ranging", "breakout", "unknown"}
