"""Backtest markets: the runtime's tick acceptance, exact tick conversion, entry conditions."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.markets import Market, TickSource, entry_conditions, load_market
from traild.backtest.simulate import iso
from traild.core.conditions import BarHistory, ConditionParams, GuardParams, TickGuard
from traild.core.errors import DataError
from traild.core.instruments import InstrumentTable
from traild.core.regime import market_regime_of_bars, percentile_rank


def test_a_market_keeps_exactly_the_ticks_the_shared_tick_guard_accepts(tmp_path: Path) -> None:
    rows = [
        ("2014-05-01T00:00:00.000Z", 1.1, 1.1001),
        ("2014-05-01T00:00:01.000Z", 1.1, 1.1001),
        ("2014-05-01T00:00:00.500Z", 1.1, 1.1001),  # out of order
        ("2014-05-01T00:00:02.000Z", 1.16, 1.1601),  # a 600-pip print
        ("2014-05-01T00:00:03.000Z", 1.16, 1.1601),
        ("2014-06-09T00:00:00.000Z", 1.1, 1.1001),  # 39 days ahead
        ("2014-05-01T00:00:04.000Z", 1.1001, 1.1002),
        ("2014-05-01T00:00:04.000Z", 1.1001, 1.1002),  # duplicate
        ("2014-05-01T00:00:05.000Z", 0.0, 1.1002),
    ]
    path = tmp_path / "EURUSD_t.csv"
    path.write_text("ts_utc,bid,ask\n" + "".join(f"{t},{b},{a}\n" for t, b, a in rows))
    market = load_market(TickSource.parse(str(path)), InstrumentTable())
    guard = TickGuard(GuardParams.for_pip(0.0001))
    expected = [
        ts
        for ts, b, a in rows
        if guard.check(datetime.fromisoformat(ts.replace("Z", "+00:00")), b, a) is None
    ]
    assert [iso(ms_to_datetime(int(m))) for m in market.ts_ms] == expected
    assert len(expected) == 3
    assert (
        market.rejected_by
        == guard.by_reason
        == {
            "duplicate": 1,
            "future_timestamp": 1,
            "non_positive": 1,
            "out_of_order": 1,
            "spike": 2,
        }
    )


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
    # everything the daemon would know at that tick, its market regime included
    assert got == expected
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


def test_entry_market_regime_is_the_daemons_regime_of_the_last_bars_closed_before_the_entry(
    oanda: Market,
) -> None:
    params = ConditionParams()
    period = params.bar_minutes * 60_000
    entries = [30_000, 60_001, 120_000]
    got = entry_conditions(oanda, entries, params)
    mid = (oanda.bid_px + oanda.ask_px) / 2
    for entry in entries:
        # independently: every M15 mid bar that ended by the entry time, then the core rules
        # on the daemon's window (the last 4 x ADX period bars) and its ATR percentile
        end = int(oanda.ts_ms[entry]) // period * period
        bars: dict[int, list[float]] = {}
        for t, m in zip(oanda.ts_ms.tolist(), mid.tolist(), strict=True):
            if t >= end:
                break
            bars.setdefault(t // period, []).append(m)
        hlc = [(max(v), min(v), v[-1]) for v in bars.values()]
        trs = [hlc[0][0] - hlc[0][1]] + [
            max(h, prev[2]) - min(low, prev[2]) for prev, (h, low, _) in pairwise(hlc)
        ]
        atrs = [
            sum(trs[i - params.atr_period + 1 : i + 1]) / params.atr_period
            for i in range(params.atr_period - 1, len(trs))
        ]
        history = atrs[:-1][-params.regime_lookback :]
        percentile = percentile_rank(atrs[-1], history)
        window = hlc[-4 * params.adx_period :]
        assert got[entry].market_regime == market_regime_of_bars(window, percentile)
    assert {c.market_regime for c in got.values()} <= {"trending", "ranging", "breakout", "unknown"}
