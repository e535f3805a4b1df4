"""Real-time recalculation in the supervisor: at a closed bar with a two-level regime shift
the trade's stages are recalculated, logged and stored; every kill switch stops it at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing
from loguru import logger

from tests.runtime.fakes import MemoryStore, ScriptedBroker
from tests.runtime.test_supervisor import EPIC, T0
from traild.config.settings import Settings
from traild.core.conditions import BarHistory
from traild.core.messages import AlertRecord, Direction, Position, Tick, TradeRecord
from traild.daemon.app import make_policy
from traild.runtime.gateway import Gateway
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """The ``extra`` of every loguru record emitted during the test."""
    records: list[dict[str, Any]] = []
    handler = logger.add(lambda m: records.append(dict(m.record["extra"])), level="DEBUG")
    yield records
    logger.remove(handler)


SETTINGS: dict[str, Any] = {
    "trailing": {"enable_dynamic_trailing": True, "realtime_recalc": True, "atr_clamp": "ladder"},
    "conditions": {
        "bar_minutes": 1,
        "atr_period": 3,
        "regime_lookback": 20,
        "regime_min_history": 5,
    },
}


class RecalcRig:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = MemoryStore()
        self.broker = ScriptedBroker()
        self.now = T0
        self.history = BarHistory(0.0001, settings.condition_params())
        self.gateway = Gateway(self.broker, self.store, lambda: self.now, retry_base=0.1)
        self.router = Router(lockstep=True, settle=self.gateway.wait_idle)
        self.sup = Supervisor(
            make_policy(settings, self.broker),
            self.store,
            self.broker,
            self.gateway,
            self.router,
            settings.instrument_table(),
            {EPIC: self.history},
            lambda: self.now,
        )

    async def tick(self, mid: float) -> None:
        """One tick through the daemon's order: bars, actors, then the bar-close hook."""
        self.now += timedelta(seconds=5)
        tick = Tick(EPIC, self.now, mid - 0.00003, mid + 0.00003)
        closed = self.history.add(tick.ts, tick.bid, tick.ask)
        await self.router.publish(tick)
        if closed:
            self.sup.on_bar_closed(EPIC)


async def _calm_then_surge(rig: RecalcRig) -> None:
    for i in range(12 * 12):  # twelve quiet one-minute bars
        await rig.tick(1.1 + 0.00004 * (i % 2))
    for k in range(13):  # a 25-pip bar, closed by the 13th tick
        await rig.tick(1.1 + 0.0025 * min(k + 1, 12) / 12)


async def _setup(settings: Settings) -> RecalcRig:
    rig = RecalcRig(settings)
    await rig.store.add_alert(
        AlertRecord(1, EPIC, atr=0.0008, volatility_regime="normal", market_session="asian")
    )
    await rig.store.add_trade(
        TradeRecord(
            "D1",
            EPIC,
            Direction.BUY,
            entry_price=1.1,
            sl_price=1.098,
            initial_sl_price=1.098,
            opened_at=T0,
            alert_id=1,
        )
    )
    rig.broker.positions["D1"] = Position("D1", EPIC, Direction.BUY, 1.0, 1.1, 1.098, None)
    return rig


async def _drive(rig: RecalcRig, before_surge: Any = None) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(rig.gateway.run)
            await nursery.start(rig.sup.run)
            if before_surge is not None:
                await before_surge(rig)
            await _calm_then_surge(rig)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()


async def test_a_two_level_shift_recalculates_once_stores_and_logs_it(
    autojump_clock: trio.testing.MockClock, events: list[dict[str, Any]]
) -> None:
    rig = await _setup(Settings(**SETTINGS))
    await _drive(rig)
    [rec] = rig.store.recalculations
    assert (rec.old_volatility_regime, rec.new_volatility_regime) == ("normal", "extreme")
    assert rec.old_stages["stages"]["early_be_trigger"] == 13.5  # 15 x normal 1.0 x asian 0.9
    # re-measured: extreme, and the session of the bar (10:13 UTC, london 1.1)
    assert rec.new_stages["stages"]["early_be_trigger"] == 26.4
    trade = rig.store.trades[1]
    assert trade.calculated_stages == rec.new_stages
    actor = rig.sup.slots[1].actor
    assert actor.current_plan.stages.volatility_regime == "extreme"
    assert rig.sup.counts["recalculated"] == 1
    [logged] = [e for e in events if e.get("event") == "stages.recalculated"]
    assert (logged["old_regime"], logged["new_regime"]) == ("normal", "extreme")


async def _halt(rig: RecalcRig) -> None:
    rig.gateway.set_halted(True)


async def _dynamic_off(rig: RecalcRig) -> None:
    off = dict(SETTINGS, trailing={**SETTINGS["trailing"], "enable_dynamic_trailing": False})
    rig.sup.apply_policy(make_policy(Settings(**off), rig.broker))


async def _forced_fixed(rig: RecalcRig) -> None:
    forced = {**SETTINGS["trailing"], "force_fixed_trailing_pairs": ["EURUSD"]}
    rig.sup.apply_policy(make_policy(Settings(**dict(SETTINGS, trailing=forced)), rig.broker))


async def _override(value: str, rig: RecalcRig) -> None:
    rig.store.trades[1] = dataclasses.replace(rig.store.trades[1], trailing_override=value)
    await rig.sup.poll_store()


async def _recalc_off(rig: RecalcRig) -> None:
    off = dict(SETTINGS, trailing={**SETTINGS["trailing"], "realtime_recalc": False})
    rig.sup.apply_policy(make_policy(Settings(**off), rig.broker))


@pytest.mark.parametrize(
    "switch",
    [
        _halt,
        _dynamic_off,
        _forced_fixed,
        lambda rig: _override("fixed", rig),
        lambda rig: _override("off", rig),
        _recalc_off,
    ],
    ids=["halt", "dynamic_off", "forced_fixed_pair", "override_fixed", "override_off", "off"],
)
async def test_every_kill_switch_stops_recalculation_at_once(
    autojump_clock: trio.testing.MockClock, switch: Any
) -> None:
    rig = await _setup(Settings(**SETTINGS))
    await _drive(rig, switch)
    assert rig.store.recalculations == []
    assert "recalculated" not in rig.sup.counts
