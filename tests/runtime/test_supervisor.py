"""Supervisor + actors + router + gateway with in-memory ports: adoption, ladder, crashes,
kill switches."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
import trio.testing
from loguru import logger

from tests.runtime.fakes import MemoryStore, ScriptedBroker
from traild.config.settings import Settings
from traild.core.messages import (
    AlertRecord,
    AmendState,
    Direction,
    Position,
    PositionClosed,
    Tick,
    TradeRecord,
    TradeStatus,
)
from traild.daemon.app import make_policy
from traild.runtime.gateway import Gateway
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor
from traild.runtime.trade_actor import TradeActor

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


class Rig:
    def __init__(self, settings: Settings | None = None, store: MemoryStore | None = None) -> None:
        self.settings = settings or Settings(daemon={"restart_backoff_s": 0.1})
        self.store = store or MemoryStore()
        self.broker = ScriptedBroker()
        self.now = T0
        self.gateway = Gateway(self.broker, self.store, lambda: self.now, retry_base=0.1)
        self.router = Router(lockstep=True, settle=self.gateway.wait_idle)
        self.sup = Supervisor(
            make_policy(self.settings, self.broker),
            self.store,
            self.broker,
            self.gateway,
            self.router,
            self.settings.instrument_table(),
            {},
            lambda: self.now,
        )

    async def add(
        self, deal: str, direction: Direction, entry: float, stop: float, **kw: Any
    ) -> TradeRecord:
        trade = await self.store.add_trade(
            TradeRecord(
                deal,
                EPIC,
                direction,
                entry_price=entry,
                sl_price=stop,
                initial_sl_price=stop,
                opened_at=T0,
                **kw,
            )
        )
        self.broker.positions[deal] = Position(deal, EPIC, direction, 1.0, entry, stop, None)
        return trade

    async def tick(self, bid: float, ask: float) -> None:
        self.now += timedelta(seconds=1)
        await self.router.publish(Tick(EPIC, self.now, bid, ask))


async def _run(rig: Rig, body: Any) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(rig.gateway.run)
            await nursery.start(rig.sup.run)
            await body()
            nursery.cancel_scope.cancel()


async def test_buy_trade_reaches_profit_lock_and_stage1(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = Rig()
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        for bid in (1.10050, 1.10099, 1.10100, 1.10150, 1.10200, 1.10120):
            await rig.tick(bid, bid + 0.0001)

    await _run(rig, body)
    assert [c[1] for c in rig.broker.calls] == [1.10010, 1.10020, 1.10080]
    trade = rig.store.trades[1]
    assert trade.sl_price == 1.10080
    assert trade.trailing_calculation_method == "fixed"
    assert trade.fallback_reason == "disabled"
    assert trade.profit_lock_applied_at is not None


async def test_sell_trade_moves_stop_down_when_ask_falls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = Rig()
    await rig.add("D1", Direction.SELL, 1.10000, 1.10200)

    async def body() -> None:
        for ask in (1.09950, 1.09900, 1.09850):
            await rig.tick(ask - 0.0001, ask)

    await _run(rig, body)
    assert [c[1] for c in rig.broker.calls] == [1.09990, 1.09980]
    assert rig.store.trades[1].sl_price == 1.09980


async def test_dynamic_trade_uses_alert_conditions_and_switches_to_fixed_on_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = Settings(trailing={"enable_dynamic_trailing": True})
    rig = Rig(settings)
    await rig.store.add_alert(
        AlertRecord(1, EPIC, atr=0.0008, volatility_regime="low", market_session="asian")
    )
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800, alert_id=1)

    async def body() -> None:
        trade = rig.store.trades[1]
        assert trade.trailing_calculation_method == "dynamic_volatility"
        assert trade.calculated_stages is not None
        assert trade.calculated_stages["stages"]["early_be_trigger"] == 9.45
        rig.sup.apply_policy(make_policy(Settings(), rig.broker))  # dynamic off
        await rig.tick(1.10095, 1.10105)  # +9.5: dynamic early BE would fire, fixed does not
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    assert rig.broker.calls == []
    assert rig.store.trades[1].trailing_calculation_method == "fixed"
    assert rig.store.trades[1].fallback_reason == "disabled"


class BrokenActor(TradeActor):
    """An actor with a bug: it raises on every tick."""

    def on_tick(self, tick: Tick) -> None:
        raise RuntimeError("bug in the actor")


async def test_crashing_actor_is_restarted_then_abandoned_keeping_its_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = Rig(Settings(daemon={"restart_budget": 2, "restart_backoff_s": 0.1}))
    rig.sup.actor_factory = BrokenActor
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        for i in range(6):
            await rig.tick(1.10000 + 0.0001 * i, 1.10010 + 0.0001 * i)
            await trio.sleep(1)

    await _run(rig, body)
    assert rig.sup.counts["crashed"] == 3
    assert rig.sup.counts["abandoned"] == 1
    assert rig.store.trades[1].status == TradeStatus.UNMANAGED
    assert rig.store.trades[1].sl_price == 1.09800


async def test_dynamic_trade_falls_back_to_fixed_after_repeated_crashes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    crashes = {"left": 2}

    class FlakyActor(TradeActor):
        def on_tick(self, tick: Tick) -> None:
            if crashes["left"] > 0:
                crashes["left"] -= 1
                raise RuntimeError("transient bug")
            super().on_tick(tick)

    rig = Rig(
        Settings(trailing={"enable_dynamic_trailing": True}, daemon={"restart_backoff_s": 0.1})
    )
    rig.sup.actor_factory = FlakyActor
    await rig.store.add_alert(
        AlertRecord(1, EPIC, atr=0.0008, volatility_regime="low", market_session="asian")
    )
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800, alert_id=1)

    async def body() -> None:
        for bid in (1.10010, 1.10020, 1.10030, 1.10100, 1.10200):
            await rig.tick(bid, bid + 0.0001)
            await trio.sleep(1)

    await _run(rig, body)
    trade = rig.store.trades[1]
    assert rig.sup.counts["crashed"] == 2
    assert trade.trailing_calculation_method == "fixed"
    assert trade.fallback_reason == "calculation_error"
    assert rig.sup.slots[1].actor.plan.stages.method == "fixed"
    # it kept trailing after the restarts: the +10 lock and the +20 stage 1 landed
    assert [c[1] for c in rig.broker.calls] == [1.10010, 1.10080]


async def test_broker_close_finalises_the_trade(autojump_clock: trio.testing.MockClock) -> None:
    rig = Rig()
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        await rig.tick(1.10120, 1.10130)
        await rig.sup.on_broker_event(PositionClosed("D1", 1.10010, "stop", rig.now))

    await _run(rig, body)
    trade = rig.store.trades[1]
    assert trade.status == TradeStatus.CLOSED
    assert trade.pnl_pips == 1.0
    assert trade.exit_reason == "stop"
    assert not rig.sup.slots


async def test_unknown_broker_position_is_adopted(autojump_clock: trio.testing.MockClock) -> None:
    rig = Rig()
    rig.broker.positions["X9"] = Position("X9", EPIC, Direction.BUY, 2.0, 1.2, 1.19, 1.25, T0)

    async def body() -> None:
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    trade = await rig.store.get_trade_by_deal("X9")
    assert trade is not None and trade.status == TradeStatus.OPEN
    assert trade.id in rig.sup.slots


async def test_per_trade_override_off_stops_amendments_and_fixed_moves_to_fixed_stages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = Settings(trailing={"enable_dynamic_trailing": True})
    rig = Rig(settings)
    await rig.store.add_alert(
        AlertRecord(1, EPIC, atr=0.0008, volatility_regime="low", market_session="asian")
    )
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800, alert_id=1)
    await rig.add("D2", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        assert rig.store.trades[1].trailing_calculation_method == "dynamic_volatility"
        rig.store.trades[1] = dataclasses.replace(rig.store.trades[1], trailing_override="fixed")
        rig.store.trades[2] = dataclasses.replace(rig.store.trades[2], trailing_override="off")
        await rig.sup.poll_store()
        await rig.tick(1.10095, 1.10105)  # +9.5: the dynamic early BE (9.45) would fire
        await rig.tick(1.10120, 1.10130)  # +12: the profit lock
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    # D1 on fixed stages: only the +10 lock; D2 switched off: nothing at all
    assert rig.broker.calls == [("D1", 1.10010, None)]
    assert rig.store.trades[1].trailing_calculation_method == "fixed"
    assert rig.store.trades[1].fallback_reason == "trade_override"


async def test_removing_a_pair_from_the_allowlist_moves_its_dynamic_trades_to_fixed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rollout = {"enable_dynamic_trailing": True, "dynamic_trailing_pairs": ["EURUSD"]}
    rig = Rig(Settings(trailing=rollout))
    await rig.store.add_alert(
        AlertRecord(1, EPIC, atr=0.0008, volatility_regime="low", market_session="asian")
    )
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800, alert_id=1)

    async def body() -> None:
        assert rig.store.trades[1].trailing_calculation_method == "dynamic_volatility"
        await rig.tick(1.10100, 1.10110)  # +10: dynamic early BE (9.45, buffer 1.26) confirmed
        await trio.testing.wait_all_tasks_blocked()
        widened = {**rollout, "dynamic_trailing_pairs": ["GBPUSD"]}  # EURUSD out of the rollout
        rig.sup.apply_policy(make_policy(Settings(trailing=widened), rig.broker))
        await rig.tick(1.10000, 1.10010)  # back to entry: the confirmed lock stays
        await rig.tick(1.10140, 1.10150)  # +14: dynamic stage 1 (12.6) would lock +5.04
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    assert rig.broker.calls == [("D1", 1.10013, None)]
    trade = rig.store.trades[1]
    assert (trade.trailing_calculation_method, trade.fallback_reason) == (
        "fixed",
        "not_in_rollout",
    )
    assert trade.sl_price == 1.10013  # fixed stages would only lock +1: never loosened


async def test_a_pair_outside_the_allowlist_is_adopted_on_fixed_stages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rollout = {"enable_dynamic_trailing": True, "dynamic_trailing_pairs": ["GBPUSD"]}
    rig = Rig(Settings(trailing=rollout))
    await rig.store.add_alert(
        AlertRecord(1, EPIC, atr=0.0008, volatility_regime="low", market_session="asian")
    )
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800, alert_id=1)

    async def body() -> None:
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    trade = rig.store.trades[1]
    assert (trade.trailing_calculation_method, trade.fallback_reason) == (
        "fixed",
        "not_in_rollout",
    )


async def test_a_database_override_reaches_running_fixed_trades_and_never_loosens_a_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from traild.config.service import apply_overrides
    from traild.core.overrides import ConfigOverride

    rig = Rig()
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    def override(**values: float) -> None:
        items = [ConfigOverride("EURUSD", f"regular.{k}", v) for k, v in values.items()]
        rig.sup.apply_policy(make_policy(apply_overrides(rig.settings, items), rig.broker))

    async def body() -> None:
        await rig.tick(1.10200, 1.10210)  # +20: stage 1 locks +8
        await trio.testing.wait_all_tasks_blocked()
        override(stage1_lock=5.0)  # looser: the confirmed +8 stays
        await rig.tick(1.10210, 1.10220)
        await trio.testing.wait_all_tasks_blocked()
        override(stage1_lock=12.0)  # tighter: applies from the next tick
        await rig.tick(1.10215, 1.10225)
        await trio.testing.wait_all_tasks_blocked()

    await _run(rig, body)
    assert [c[1] for c in rig.broker.calls] == [1.10080, 1.10120]
    assert rig.store.trades[1].sl_price == 1.10120


async def test_reconciled_confirmation_is_logged_with_trade_id_and_epic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = Rig()
    trade = await rig.add("D1", Direction.BUY, 1.10000, 1.09800)
    assert trade.id is not None
    amendment = await rig.store.write_amendment(trade.id, "D1", 1.10010, 1.098, "profit_lock", T0)
    rig.broker.positions["D1"] = dataclasses.replace(rig.broker.positions["D1"], stop=1.10010)
    records: list[dict[str, Any]] = []
    handler = logger.add(lambda m: records.append(dict(m.record["extra"])), level="INFO")
    try:
        await _run(rig, trio.lowlevel.checkpoint)
    finally:
        logger.remove(handler)
    (confirmed,) = [r for r in records if r.get("event") == "stop.confirmed"]
    assert confirmed["reconciled"] is True
    assert (confirmed["trade_id"], confirmed["deal_id"], confirmed["epic"]) == (
        trade.id,
        "D1",
        EPIC,
    )
    assert rig.store.amendments[amendment].state == AmendState.CONFIRMED


class OutageStore(MemoryStore):
    """Reads and writes that hang (a database that is gone); ``up`` brings it back."""

    def __init__(self) -> None:
        super().__init__()
        self.up = trio.Event()
        self.up.set()

    async def get_trade_by_deal(self, deal_id: str) -> TradeRecord | None:
        await self.up.wait()
        return await super().get_trade_by_deal(deal_id)

    async def close_trade(self, *args: Any, **kwargs: Any) -> None:
        await self.up.wait()
        await super().close_trade(*args, **kwargs)


async def test_a_close_during_a_database_outage_needs_no_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = OutageStore()
    rig = Rig(store=store)
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        await rig.tick(1.10120, 1.10130)
        store.up = trio.Event()  # the database goes away
        with trio.move_on_after(5) as waited:
            async with trio.open_nursery() as closing:
                closing.start_soon(
                    rig.sup.on_broker_event, PositionClosed("D1", 1.10010, "stop", rig.now)
                )
                await trio.sleep(1)
                assert not rig.sup.slots  # closed from memory, before the database is back
                store.up.set()
        assert not waited.cancelled_caught

    await _run(rig, body)
    assert store.trades[1].status == TradeStatus.CLOSED
