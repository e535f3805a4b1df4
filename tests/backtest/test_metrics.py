"""Backtest metric formulas on tiny, hand-made trade lists."""

from __future__ import annotations

import json
from dataclasses import replace

from traild.backtest.engine import TradeRow
from traild.backtest.metrics import METRICS, metrics, summarize
from traild.core.instruments import symbol_of

ROW = TradeRow(
    variant="v",
    trade_id=0,
    epic="EURUSD",
    direction="BUY",
    is_scalp=False,
    entry_ts=0,
    entry=1.1,
    initial_stop=1.098,
    limit=1.105,
    method="fixed",
    fallback_reason="disabled",
    atr_pips=None,
    volatility_regime="low",
    session="london",
    market_regime=None,
    exit_ts=60_000,
    exit_price=1.1,
    exit_reason="stop",
    exit_stop=1.1,
    gap=False,
    pnl_pips=0.0,
    mfe_pips=0.0,
    slippage_pips=0.0,
    minutes_to_lock=None,
    lock_violation=False,
    lock_slippage_loss=False,
    premature=False,
    amendments=0,
    path="fast",
)


def _rows() -> list[TradeRow]:
    return [
        replace(
            ROW,
            trade_id=0,
            pnl_pips=10.0,
            mfe_pips=20.0,
            exit_reason="limit",
            slippage_pips=None,
            minutes_to_lock=4.0,
        ),
        replace(
            ROW,
            trade_id=1,
            pnl_pips=5.0,
            mfe_pips=5.0,
            minutes_to_lock=2.0,
            slippage_pips=0.5,
            gap=True,
            method="dynamic_volatility",
            fallback_reason=None,
        ),
        replace(
            ROW,
            trade_id=2,
            pnl_pips=-6.0,
            mfe_pips=3.0,
            slippage_pips=1.0,
            gap=True,
            premature=True,
            volatility_regime=None,
            session="asian",
        ),
        replace(
            ROW,
            trade_id=3,
            pnl_pips=-3.0,
            mfe_pips=11.0,
            slippage_pips=0.0,
            minutes_to_lock=9.0,
            lock_violation=True,
            lock_slippage_loss=True,
        ),
    ]


def test_metrics_follow_their_definitions() -> None:
    m = metrics(_rows())
    assert m == {
        "trades": 4,
        "win_rate": 0.5,
        "expectancy_pips": 1.5,  # (10 + 5 - 6 - 3) / 4
        "total_pips": 6.0,
        "profit_factor": 1.667,  # 15 / 9
        "profit_capture_pct": 60.0,  # (10 + 5) / (20 + 5), winners only
        "premature_stopouts": 1,
        "protected_share": 0.75,
        "median_minutes_to_lock": 4.0,
        "lock_violations": 1,
        "lock_slippage_losses": 1,
        "gap_fills": 2,  # stop exits through their level
        "mean_slippage_pips": 0.5,  # (0.5 + 1 + 0) / 3 stop exits
        "methods": {"dynamic_volatility": 1, "fixed": 3},
        "fallback_reasons": {"disabled": 3},
    }
    assert tuple(m) == METRICS


def test_metrics_without_data_are_null_never_nan_or_infinite() -> None:
    winners_only = metrics(
        [replace(ROW, pnl_pips=4.0, mfe_pips=0.0, slippage_pips=None, exit_reason="limit")]
    )
    assert winners_only["profit_factor"] is None  # no losing trade: not infinity
    assert winners_only["profit_capture_pct"] is None  # no MFE to divide by
    assert (
        winners_only["mean_slippage_pips"] is None
        and winners_only["median_minutes_to_lock"] is None
    )
    empty = metrics([])
    assert empty["trades"] == 0 and empty["win_rate"] is None and empty["expectancy_pips"] is None
    json.dumps(summarize([], ["v"]), allow_nan=False)


def test_summary_buckets_by_regime_market_regime_and_session_in_a_stable_order() -> None:
    rows = _rows() + [replace(r, variant="w") for r in _rows()[:1]]
    rows[0] = replace(rows[0], market_regime="ranging")
    rows[1] = replace(rows[1], market_regime="trending")
    summary = summarize(rows, ["v", "w"])
    v = summary["variants"]["v"]
    assert list(v["by_regime"]) == ["low", "unknown"]
    assert list(v["by_session"]) == ["asian", "london"]
    assert v["by_regime"]["unknown"]["trades"] == 1 and v["by_session"]["london"]["trades"] == 3
    assert set(v["by_regime"]["low"]) == set(METRICS)
    assert summary["variants"]["w"]["trades"] == 1
    assert set(v) == {*METRICS, "by_regime", "by_session", "by_market_regime", "by_pair"}
    assert list(v["by_market_regime"]) == ["trending", "ranging", "unknown"]
    assert set(v["by_market_regime"]["trending"]) == set(METRICS)


def test_summary_has_each_pairs_own_figures_keyed_by_symbol() -> None:
    rows = _rows()
    rows[0] = replace(rows[0], epic="CS.D.GBPUSD.MINI.IP", pnl_pips=-7.0)
    v = summarize(rows, ["v"])["variants"]["v"]
    others = [r for r in rows[1:] if r.variant == "v"]
    assert set(v["by_pair"]) == {"GBPUSD", symbol_of(others[0].epic)}
    assert v["by_pair"]["GBPUSD"]["trades"] == 1
    assert v["by_pair"]["GBPUSD"]["expectancy_pips"] == -7.0
    assert sum(b["trades"] for b in v["by_pair"].values()) == v["trades"]
