"""``--bars``: the same core over M1 bars, walked pessimistically, equals ticks on that path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from traild.backtest.bars import inside_bar_fill, load_bar_market, read_bars
from traild.backtest.engine import BacktestRequest, plan_trades, prepare, run_backtest
from traild.backtest.kernel import PathResult
from traild.backtest.markets import TickSource
from traild.backtest.paths import run_trades
from traild.config.settings import Settings
from traild.core.errors import DataError
from traild.core.instruments import InstrumentTable

T0 = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)  # a Monday
TICK = 0.00001
SPREAD = 10  # ticks (1 pip)


def _bars(n: int, seed: int) -> np.ndarray:
    """Integer-tick OHLC of a random walk with wide-ranging bars (stops hit inside bars)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 4), dtype=np.int64)
    close = 110_000
    for i in range(n):
        o = close + int(rng.integers(-2, 3))
        c = o + int(rng.normal(0, 25))
        lo = min(o, c) - int(rng.integers(0, 30))
        hi = max(o, c) + int(rng.integers(0, 30))
        out[i] = (o, hi, lo, c)
        close = c
    return out


def _ts(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_bars(path: Path, ohlc: np.ndarray) -> Path:
    lines = ["ts_utc,open,high,low,close"]
    for i, row in enumerate(ohlc.tolist()):
        lines.append(
            _ts(T0 + timedelta(minutes=i)) + "," + ",".join(f"{v * TICK:.5f}" for v in row)
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_path_ticks(path: Path, ohlc: np.ndarray, order: list[int]) -> Path:
    """Four ticks per bar at +0/15/30/45 s: the bar's prices in ``order``; ask = bid + spread."""
    lines = ["ts_utc,bid,ask"]
    for i, row in enumerate(ohlc.tolist()):
        for k, col in enumerate(order):
            t = T0 + timedelta(minutes=i, seconds=15 * k)
            lines.append(f"{_ts(t)},{row[col] * TICK:.5f},{(row[col] + SPREAD) * TICK:.5f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _signals(path: Path, direction: str, n_bars: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    lines = ["ts_utc,epic,direction,stop_pips,limit_pips,is_scalp"]
    for minute in sorted(rng.choice(np.arange(200, n_bars - 5), 60, replace=False).tolist()):
        scalp = bool(rng.random() < 0.5)
        stop, limit = (10, 25) if scalp else (20, 50)
        lines.append(
            f"{_ts(T0 + timedelta(minutes=minute))},EURUSD,{direction},{stop},{limit},{scalp}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _raw_results(req: BacktestRequest) -> tuple[list[list[PathResult]], list[object]]:
    ctx = prepare(Settings(), req)
    market = ctx.markets[0]
    per_variant = []
    for variant in ctx.variants:
        jobs, _, _ = plan_trades(ctx, variant, market, ctx.trades)
        per_variant.append(run_trades(market, jobs)[0])
    return per_variant, [t.conditions for t in ctx.trades]


@pytest.mark.parametrize(("direction", "order"), [("BUY", [0, 2, 1, 3]), ("SELL", [0, 1, 2, 3])])
def test_bar_mode_equals_tick_mode_on_ticks_that_are_the_bars_pessimistic_path(
    tmp_path: Path, direction: str, order: list[int]
) -> None:
    n = 1500
    ohlc = _bars(n, seed=7)
    bars = _write_bars(tmp_path / "EURUSD_m1_bid.csv", ohlc)
    ticks = _write_path_ticks(tmp_path / "EURUSD_ticks.csv", ohlc, order)
    signals = _signals(tmp_path / "signals.csv", direction, n, seed=3)
    from_ticks = _raw_results(BacktestRequest(ticks=(str(ticks),), signals=signals))
    from_bars = _raw_results(
        BacktestRequest(ticks=(), bars=(str(bars),), signals=signals, bar_spread_pips=1.0)
    )
    assert from_bars == from_ticks  # exits, stops, amendments, lock times; and conditions
    results, conditions = from_bars
    assert {r.exit_reason for v in results for r in v} >= {"stop", "limit"}
    assert sum(len(r.amendments) for v in results for r in v) > 30
    assert any(getattr(c, "atr_pips", None) is not None for c in conditions)


def test_a_stop_inside_a_bar_fills_at_its_level_and_only_an_open_gaps(tmp_path: Path) -> None:
    # BUY at the open of bar 1 (ask 1.10010), stop 10 pips = 1.09910
    ohlc = np.array(
        [
            (110_000, 110_010, 109_990, 110_000),
            (110_000, 110_020, 109_800, 109_900),  # low far through the stop: fills at 1.09910
            (109_000, 109_100, 108_900, 109_000),
            (109_000, 109_100, 108_900, 109_000),
        ]
    )
    bars = _write_bars(tmp_path / "EURUSD_m1_bid.csv", ohlc)
    sig = tmp_path / "s.csv"
    sig.write_text(
        "ts_utc,epic,direction,stop_pips,limit_pips\n"
        f"{_ts(T0 + timedelta(minutes=1))},EURUSD,BUY,10,\n"
        f"{_ts(T0)},EURUSD,SELL,1,\n",  # SELL at 1.10000, stop 1.10010; bar 0's ask high 1.10020
    )
    req = BacktestRequest(ticks=(), bars=(str(bars),), signals=str(sig), variants="fixed")
    buy, sell = run_backtest(Settings(), req).rows
    assert (buy.exit_reason, buy.exit_price, buy.gap) == ("stop", 1.0991, False)
    assert buy.pnl_pips == pytest.approx(-10.0)
    assert (sell.exit_reason, sell.exit_price, sell.gap) == ("stop", 1.1001, False)
    gapped = PathResult(4, 0, 109_000, "stop", True, 109_910, None, None, ())
    assert inside_bar_fill(gapped, None) == gapped  # at a bar's open the gap fill stands


def test_bar_files_are_checked_line_by_line(tmp_path: Path) -> None:
    bad = tmp_path / "EURUSD_bad.csv"
    bad.write_text(
        "ts_utc,open,high,low,close\n2024-03-04T00:00:00Z,1.1,1.2,1.0,1.1\n"
        "2024-03-04T00:01:00Z,1.1,1.0,1.2,1.1\n"
    )
    with pytest.raises(DataError, match=r"EURUSD_bad.csv:3: bad bar"):
        read_bars(bad)
    bad.write_text("ts_utc,bid,ask\n")
    with pytest.raises(DataError, match="header must be ts_utc,open,high,low,close"):
        read_bars(bad)
    bad.write_text("ts_utc,open,high,low,close\n2024-03-04T00:00:00Z,1.1,x,1.0,1.1\n")
    with pytest.raises(DataError, match=":2: not a bar"):
        load_bar_market(TickSource.parse(str(bad)), InstrumentTable(), 1.0)
