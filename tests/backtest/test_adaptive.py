"""Backtest variants that follow the market: regime tables and real-time recalculation, through
the same core as the daemon (the +rt variant equals ``traild simulate --realtime-recalc``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backtest.helpers import SMALL
from traild.adapters.tickfiles import ms_to_datetime
from traild.backtest.adaptive import Warmup, variant_tables
from traild.backtest.engine import BacktestRequest, execute, prepare
from traild.backtest.markets import Market, TickSource, load_market
from traild.backtest.simulate import SimulationRequest, iso, simulate
from traild.backtest.variants import parse_grid, parse_variants
from traild.config.settings import load
from traild.core.calculator import CalculatorParams
from traild.core.conditions import BarHistory, ConditionParams
from traild.core.errors import UsageError
from traild.core.instruments import InstrumentTable
from traild.core.messages import Direction

FAST_BARS = """
[trailing]
enable_dynamic_trailing = true
atr_clamp = "ladder"
realtime_regime_shift = 1
[conditions]
bar_minutes = 1
atr_period = 3
regime_lookback = 20
regime_min_history = 5
[pairs.DEFAULT.regular.regimes.trending]
early_be_trigger = 9
early_be_buffer = 3
"""
SIGNALS = [  # minutes after 23:00, direction, market regime
    (12, "BUY", "trending"),
    (25, "SELL", "ranging"),
    (41, "SELL", "trending"),
    (58, "BUY", "breakout"),
    (77, "SELL", "unknown"),
    (96, "BUY", "trending"),
    (118, "SELL", "ranging"),
]


@pytest.fixture
def small(ticks_dir: Path) -> Path:
    return ticks_dir / SMALL


@pytest.fixture
def signals(tmp_path: Path) -> Path:
    lines = [
        "ts_utc,epic,direction,stop_pips,limit_pips,is_scalp,atr_pips,volatility_regime,"
        "session,market_regime"
    ]
    for minute, direction, regime in SIGNALS:
        ts = (
            f"2019-01-01T23:{minute:02d}:30.000Z"
            if minute < 60
            else (f"2019-01-02T00:{minute - 60:02d}:30.000Z")
        )
        lines.append(f"{ts},EURUSD,{direction},6,12,false,2.5,normal,asian,{regime}")
    path = tmp_path / "signals.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_rt_variant_equals_simulate_with_recalculation_trade_by_trade(
    tmp_path: Path, small: Path, signals: Path
) -> None:
    config = tmp_path / "traild.toml"
    config.write_text(FAST_BARS)
    settings = load(config)
    ctx = prepare(
        settings,
        BacktestRequest((f"{small}=EURUSD",), str(signals), variants="dynamic+lock+regime+rt"),
    )
    rows = execute(ctx, jobs=1)
    assert len(rows) == len(SIGNALS)
    recalculated = 0
    for row, trade in zip(rows, ctx.trades, strict=True):
        sim = simulate(
            settings,
            SimulationRequest(
                str(small),
                "EURUSD",
                Direction(row.direction),
                stop_pips=6,
                limit_pips=12,
                at=ms_to_datetime(trade.entry_ts),
                atr_pips=2.5,
                regime="normal",
                session="asian",
                market_regime=trade.conditions.market_regime,
                realtime_recalc=True,
            ),
        )
        assert sim["entry"] == row.entry and sim["exit"]["reason"] == row.exit_reason
        assert sim["exit"]["price"] == row.exit_price
        assert sim["exit"]["ts"] == iso(ms_to_datetime(row.exit_ts))
        assert len(sim["amendments"]) == row.amendments
        assert len(sim["recalculations"]) == row.recalculations
        recalculated += bool(sim["recalculations"])
    assert recalculated >= 2  # the variant did recalculate on this data


def test_regime_tables_change_only_the_trades_in_that_regime(
    tmp_path: Path, small: Path, signals: Path
) -> None:
    config = tmp_path / "traild.toml"
    config.write_text(FAST_BARS)
    ctx = prepare(
        load(config),
        BacktestRequest(
            (f"{small}=EURUSD",), str(signals), variants="dynamic+lock,dynamic+lock+regime"
        ),
    )
    rows = execute(ctx, jobs=1)
    plain, regime = rows[: len(SIGNALS)], rows[len(SIGNALS) :]
    assert {r.variant for r in regime} == {"dynamic+lock+regime"}
    for a, b, (_, _, market) in zip(plain, regime, SIGNALS, strict=True):
        assert b.market_regime == market
        if market != "trending":
            assert (a.exit_ts, a.exit_price, a.amendments) == (
                b.exit_ts,
                b.exit_price,
                b.amendments,
            )


def test_grid_reaches_the_regime_tables() -> None:
    variants = parse_grid(["regime.trending.stage3_min_distance=12,15"], CalculatorParams())
    assert [v.name for v in variants] == [
        "dynamic+lock+regime[regime.trending.stage3_min_distance=12]",
        "dynamic+lock+regime[regime.trending.stage3_min_distance=15]",
    ]
    assert all(v.regime and v.dynamic and v.lock and not v.realtime for v in variants)
    configured = {"trending": {"stage3_trigger": 45.0}, "ranging": {"stage1_lock": 6.0}}
    assert variant_tables(configured, variants[1].overrides, False) == {
        "trending": {"stage3_trigger": 45.0, "stage3_min_distance": 15.0},
        "ranging": {"stage1_lock": 6.0},
    }
    assert variant_tables(configured, variants[1].overrides, True) == configured  # regular only
    [scalp] = parse_grid(["scalp_regime.ranging.stage1_lock=4"], CalculatorParams())
    assert variant_tables({}, scalp.overrides, True) == {"ranging": {"stage1_lock": 4.0}}
    assert variant_tables({}, scalp.overrides, False) == {}
    assert variants[0].calculator_params(CalculatorParams()).enable_dynamic_trailing
    with pytest.raises(UsageError, match=r"regime\.<market_regime>\.<stage key>"):
        parse_grid(["regime.trending.stage9=1"], CalculatorParams())


def test_adaptive_variants_are_named_and_switch_what_they_say() -> None:
    regime, rt, both = parse_variants("dynamic+lock+regime,dynamic+lock+rt,dynamic+lock+regime+rt")
    assert [(v.regime, v.realtime) for v in (regime, rt, both)] == [
        (True, False),
        (False, True),
        (True, True),
    ]


def test_warmed_up_bars_equal_bars_fed_the_whole_history(synthetic_eurusd: Path) -> None:
    source = TickSource.parse(f"{synthetic_eurusd}=EURUSD")
    market: Market = load_market(source, InstrumentTable())
    params = ConditionParams(bar_minutes=1, atr_period=3, regime_lookback=10, adx_period=5)
    warm = Warmup(market, params)
    assert warm.bars < 100  # so late entries really start from a truncated history
    entries = [len(market) // 3, len(market) - 5]
    full = BarHistory(float(market.instrument.pip_size), params)
    done = 0
    for entry in entries:
        for i in range(done, entry + 1):
            full.add(
                ms_to_datetime(int(market.ts_ms[i])),
                float(market.bid_px[i]),
                float(market.ask_px[i]),
            )
        done = entry + 1
        ts = ms_to_datetime(int(market.ts_ms[entry]))
        assert warm.history(entry).conditions("EURUSD", ts) == full.conditions("EURUSD", ts)
