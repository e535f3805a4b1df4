"""Counterfactual replays of a closed trade over recorded ticks (constructed path, known
answers), and which trades cannot be replayed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from traild.adapters.tickfiles import TickColumns
from traild.config.settings import Settings, load
from traild.core.calculator import DYNAMIC, FIXED, CalculatedStages
from traild.core.errors import ConfigError
from traild.core.messages import Direction, TradeRecord, TradeStatus
from traild.core.tradingday import trading_day
from traild.reporting.counterfactual import Replayer
from traild.reporting.paired import paired_trades

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)
PIP = 0.0001


class History:
    """Recorded ticks: one second apart; bids in pips from 1.10000, ask one pip above."""

    def __init__(self, bid_pips: list[float], start: datetime = T0, same_ms: int = 0) -> None:
        ms0 = int(start.timestamp() * 1000)
        ms = [ms0] * same_ms + [ms0 + 1000 * i for i in range(len(bid_pips) - same_ms)]
        bid = np.round(1.1 + np.asarray(bid_pips) * PIP, 5)
        self.cols = TickColumns(np.asarray(ms, dtype=np.int64).view("datetime64[ms]"), bid,
                                np.round(bid + PIP, 5))  # fmt: skip

    def epics(self) -> list[str]:
        return [EPIC]

    def columns(
        self, epic: str, since: datetime | None = None, until: datetime | None = None
    ) -> TickColumns:
        return self.cols


def _path() -> list[float]:
    """Fill at bid 0 (ask 1 = the entry), up to +13 (MFE +12 pips), then down to -25 in
    0.1-pip steps (every stop level is traded exactly: no gap fills)."""
    return [0, *range(1, 14), *(k / 10 for k in range(129, -251, -1))]


def _trade(settings: Settings, **kw: object) -> TradeRecord:
    stages = CalculatedStages(settings.stage_config(EPIC, False), FIXED, "disabled")
    base = TradeRecord(
        deal_id="D1",
        epic=EPIC,
        direction=Direction.BUY,
        entry_price=1.1001,
        initial_sl_price=1.0981,
        sl_price=1.1002,
        status=TradeStatus.CLOSED,
        opened_at=T0,
        closed_at=T0 + timedelta(seconds=30),
        exit_price=1.1002,
        exit_reason="stop",
        pnl_pips=1.0,
        calculated_stages=stages.to_json(),
        trailing_calculation_method=FIXED,
        fallback_reason="disabled",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _replayer(settings: Settings) -> Replayer:
    return Replayer(settings.calculator_params(), settings.ladder_policy(),
                    settings.stage_config, settings.instrument_table())  # fmt: skip


def test_the_lock_saves_the_trade_the_plain_fixed_ladder_loses() -> None:
    settings = Settings()
    cf = _replayer(settings).run([_trade(settings)], History(_path()))
    (t,) = cf.trades
    assert t.model.pnl_pips == pytest.approx(1.0) and t.model.exit_reason == "stop"
    assert t.variants["fixed+lock"].pnl_pips == pytest.approx(1.0)
    assert t.variants["fixed"].pnl_pips == pytest.approx(-20.0)  # the initial stop
    assert t.variants["fixed"].exit_ts == T0 + timedelta(seconds=_path().index(-19.0))  # bid 1.0981
    # no conditions stored: dynamic falls back exactly as it would have live
    assert t.variants["dynamic+lock"].fallback_reason == "no_conditions"
    assert t.as_dict()["live_minus_model_pips"] == 0.0
    day = paired_trades(cf)[0].day
    assert datetime(1970, 1, 1, tzinfo=UTC).date() + timedelta(days=day) == trading_day(T0)


def test_dynamic_stages_come_from_the_conditions_stored_at_adoption() -> None:
    settings = Settings()
    trade = _trade(settings, atr_at_entry=8 * PIP, volatility_regime="low",
                   session_at_entry="asian")  # fmt: skip
    (t,) = _replayer(settings).run([trade], History(_path())).trades
    dyn = t.variants["dynamic+lock"]
    assert dyn.method == DYNAMIC and dyn.fallback_reason is None
    # 15 x 0.7 x 0.9 = 9.45: early break-even (buffer 2 x 0.63 = 1.26 pips, rounded up to
    # the tick) is reached at +10 and holds +1.3, where fixed + lock holds +1
    assert dyn.pnl_pips == pytest.approx(1.3)
    assert t.variants["fixed+lock"].pnl_pips == pytest.approx(1.0)


def test_the_fill_tick_is_skipped_even_among_ticks_of_the_same_millisecond() -> None:
    settings = Settings()
    # three ticks at the open time: a stale quote, the fill (ask 1.1001), one after it
    path = [-30.0, 0.0, 2.0, *_path()[1:]]
    (t,) = _replayer(settings).run([_trade(settings)], History(path, same_ms=3)).trades
    assert t.model.pnl_pips == pytest.approx(1.0)  # the stale -30 would have stopped it


def test_trades_without_a_recording_or_still_open_are_skipped_with_a_reason() -> None:
    settings = Settings()
    early = _trade(settings, deal_id="EARLY", opened_at=T0 - timedelta(hours=1))
    still_open = _trade(settings, deal_id="OPEN", status=TradeStatus.OPEN, pnl_pips=None)
    other = _trade(settings, deal_id="GBP", epic="CS.D.GBPUSD.MINI.IP")
    cf = _replayer(settings).run([early, still_open, other], History(_path()))
    assert cf.trades == ()
    assert {(s.deal_id, s.reason) for s in cf.skipped} == {
        ("EARLY", "no_ticks"), ("OPEN", "not_closed"), ("GBP", "no_ticks"),
    }  # fmt: skip


def test_configured_regime_variant_replays_with_the_regime_table(tmp_path: Path) -> None:
    path = tmp_path / "traild.toml"
    path.write_text(
        "[rollout]\ncounterfactual_variants = ['dynamic+lock+regime']\n"
        "[pairs.DEFAULT.regular.regimes.trending]\nearly_be_buffer = 5\n"
    )
    settings = load(path, {})
    trade = _trade(settings, atr_at_entry=8 * PIP, volatility_regime="low",
                   session_at_entry="asian", market_regime_at_entry="trending")  # fmt: skip
    replayer = Replayer(
        settings.calculator_params(), settings.ladder_policy(), settings.stage_config,
        settings.instrument_table(), "fixed+lock,dynamic+lock,dynamic+lock+regime",
        regime_tables=settings.regime_tables,
    )  # fmt: skip
    (t,) = replayer.run([trade], History(_path())).trades
    # the trending table's buffer 5 x 0.63 = 3.15 pips, rounded up to the tick: +3.2
    assert t.variants["dynamic+lock+regime"].pnl_pips == pytest.approx(3.2)
    assert t.variants["dynamic+lock"].pnl_pips == pytest.approx(1.3)
    with pytest.raises(ConfigError, match="real time"):
        Replayer(settings.calculator_params(), settings.ladder_policy(), settings.stage_config,
                 settings.instrument_table(), "dynamic+lock+rt")  # fmt: skip
