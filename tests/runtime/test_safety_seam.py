"""Where the ladder meets the gateway and a broker that takes time to answer (issue #19).

A broker that answers at once hides every race: here answers take hundreds of milliseconds
(trio's MockClock), refusals arrive while newer targets are queued, and ticks pile up in the
router's mailbox. The broker's stop must never move against the trade.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.fakes import MemoryStore, ScriptedBroker, one_buy, one_buy_target
from traild.config.settings import Settings
from traild.core.messages import (
    Direction,
    Position,
    PositionAmended,
    Tick,
    TradeRecord,
)
from traild.daemon.app import make_policy
from traild.runtime.gateway import AmendTarget, Gateway
from traild.runtime.router import Router
from traild.runtime.supervisor import Supervisor

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2024, 1, 2, 10, 0, tzinfo=UTC)


class _StepCounter(trio.abc.Instrument):
    """Counts task steps; cancels ``scope`` past ``limit`` (a spinning task never blocks, so
    MockClock never advances and nothing else would stop it)."""

    def __init__(self, limit: int) -> None:
        self.steps = 0
        self.limit = limit
        self.scope: trio.CancelScope | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1
        if self.steps > self.limit and self.scope is not None:
            self.scope.cancel()


class LiveRig:
    """Supervisor, gateway and a non-lockstep router (its mailbox coalesces ticks)."""

    def __init__(self, broker: ScriptedBroker, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.store = MemoryStore()
        self.broker = broker
        self.now = T0
        self.gateway = Gateway(self.broker, self.store, lambda: self.now, retry_base=0.1)
        self.router = Router()
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

    async def add(self, deal: str, direction: Direction, entry: float, stop: float) -> None:
        await self.store.add_trade(
            TradeRecord(
                deal,
                EPIC,
                direction,
                entry_price=entry,
                sl_price=stop,
                initial_sl_price=stop,
                opened_at=T0,
            )
        )
        self.broker.positions[deal] = Position(deal, EPIC, direction, 1.0, entry, stop, None)

    async def tick(self, bid: float, wait: float = 0.0) -> None:
        self.now += timedelta(milliseconds=100)
        await self.router.publish(Tick(EPIC, self.now, bid, round(bid + 0.00010, 5)))
        if wait:
            await trio.sleep(wait)

    async def run(self, body: Any) -> None:
        counter = _StepCounter(limit=200_000)  # a spinning task would hang MockClock
        trio.lowlevel.add_instrument(counter)
        try:
            with trio.fail_after(120), trio.CancelScope() as scope:
                counter.scope = scope
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.gateway.run)
                    await nursery.start(self.router.run)
                    await nursery.start(self.sup.run)
                    await body()
                    nursery.cancel_scope.cancel()
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert not scope.cancelled_caught, "a task spun"


def _monotone(levels: list[float], sign: int) -> bool:
    return all(sign * (b - a) >= 0 for a, b in itertools.pairwise(levels))


async def test_a_refusal_never_lets_a_looser_stop_replace_a_confirmed_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The issue's reproduction: 300 ms answers, the first one a refusal; stage 2 is queued
    behind stage 1, the market falls back; nothing looser than 1.10150 may follow it."""
    rig = LiveRig(ScriptedBroker(["reject"], latency=0.3))
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        await rig.tick(1.10205, 0.1)  # stage 1 (1.10080) sent
        await rig.tick(1.10310, 0.25)  # stage 2 (1.10150) queued; the refusal comes back
        await rig.tick(1.10140, 0.1)  # 1.10150 is sent after the back-off
        await rig.tick(1.10146, 3.0)

    await rig.run(body)
    applied = [level for _, level in rig.broker.applied]
    assert applied and _monotone(applied, +1), applied
    final = rig.broker.positions["D1"].stop
    assert final == max(applied) == 1.10150
    actor = rig.sup.slots[1].actor
    assert actor.trade.sl_price == final
    assert rig.store.trades[1].sl_price == final


async def test_the_gateway_refuses_a_target_that_does_not_beat_what_it_holds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The gateway is the one authority for the best level: in flight and confirmed count."""
    broker = ScriptedBroker(latency=1.0)
    store = await one_buy(broker)
    gw = Gateway(broker, store, lambda: T0)
    confirmed: list[float] = []

    def target(level: float) -> AmendTarget:
        return one_buy_target(level, confirmed)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(gw.run)
            assert gw.submit(target(1.1010))
            await trio.sleep(0.5)  # in flight now
            assert not gw.submit(target(1.1005))  # looser than the one in flight
            assert gw.best(1) == 1.1010
            await gw.wait_idle()
            assert not gw.submit(target(1.1008))  # looser than the confirmed one
            assert gw.submit(target(1.1012))
            await gw.wait_idle()
            nursery.cancel_scope.cancel()
    assert confirmed == [1.1010, 1.1012]
    assert gw.statistics().superseded == 2


async def test_workers_sleep_while_a_trade_is_in_flight_with_a_newer_target_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An old back-off of a trade in flight must not make the idle workers spin."""
    broker = ScriptedBroker(["error"], latency=0.5)
    store = await one_buy(broker)
    gw = Gateway(broker, store, lambda: T0, retry_base=0.1)

    target = one_buy_target

    counter = _StepCounter(limit=100_000)
    trio.lowlevel.add_instrument(counter)
    try:
        with trio.fail_after(30), trio.CancelScope() as scope:
            counter.scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(gw.run)
                gw.submit(target(1.1010))
                await trio.sleep(0.7)  # refused with a 503, backed off, re-sent: in flight
                gw.submit(target(1.1020))  # queued behind it
                start = counter.steps
                await trio.sleep(0.2)
                spent = counter.steps - start
                nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert not scope.cancelled_caught, "the gateway's workers spun"
    assert spent < 50, spent


async def test_coalesced_ticks_never_put_the_stop_beyond_the_latest_market(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ticks that pile up count towards the best price, but the stop is capped on the latest
    tick: a BUY stop is never sent above the latest bid."""
    rig = LiveRig(ScriptedBroker())
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        await rig.tick(1.10100, 1.0)  # profit lock confirmed
        await rig.tick(1.10450)  # the peak, skipped by the busy dispatcher ...
        await rig.tick(1.10200, 1.0)  # ... which sees it with the latest tick only
        await rig.tick(1.10200, 1.0)

    await rig.run(body)
    sent = [level for _, level, _ in rig.broker.calls]
    assert sent[0] == 1.10010
    assert all(level < 1.10200 for level in sent), sent
    # the peak still counts: the best price is 1.10450 and the floor (stage 3 at +45: 1.10350)
    # stays owed, sent as close to the market as the latest tick allows
    actor = rig.sup.slots[1].actor
    assert actor.best_price == 1.10450
    assert rig.broker.positions["D1"].stop == 1.10199


async def test_a_restart_while_the_broker_is_briefly_unavailable_never_loosens_its_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The database lags the broker (records land after the answer): start-up waits until the
    broker's stops are known instead of trailing from the database's level."""
    broker = ScriptedBroker()
    broker.fail_reads = 1
    rig = LiveRig(broker)
    await rig.add("D1", Direction.BUY, 1.10000, 1.10080)  # the database's (stale) stop
    rig.store.trades[1] = dataclasses.replace(rig.store.trades[1], best_price=1.10250)
    broker.positions["D1"] = dataclasses.replace(broker.positions["D1"], stop=1.10200)

    async def body() -> None:
        await rig.tick(1.10320, 1.0)  # stage 2 (1.10150) is looser than the broker's stop
        await rig.tick(1.10330, 1.0)

    await rig.run(body)
    assert broker.positions["D1"].stop == 1.10200
    assert all(level >= 1.10200 for _, level in broker.applied), broker.applied
    assert rig.sup.slots[1].actor.confirmed_stop == 1.10200


@pytest.mark.parametrize("moved_to", [None, 1.10050])
async def test_a_stop_removed_or_loosened_at_the_broker_is_put_back(
    autojump_clock: trio.testing.MockClock, moved_to: float | None
) -> None:
    """Pushed by the broker (IG's OPU) or found by the periodic check: restored (stop.drift)."""
    broker = ScriptedBroker()
    rig = LiveRig(broker, Settings(daemon={"reconcile_stops_s": 5.0}))
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)
    await rig.add("D2", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        await rig.tick(1.10210, 1.0)  # stage 1: both at 1.10080
        for deal in ("D1", "D2"):
            assert broker.positions[deal].stop == 1.10080
            broker.positions[deal] = dataclasses.replace(broker.positions[deal], stop=moved_to)
        # D1's change is pushed; D2's is silent and found by the periodic check
        await rig.sup.on_broker_event(PositionAmended("D1", moved_to, None, rig.now))
        await trio.sleep(1.0)
        assert broker.positions["D1"].stop == 1.10080
        assert broker.positions["D2"].stop == moved_to
        await trio.sleep(6.0)

    await rig.run(body)
    assert broker.positions["D1"].stop == broker.positions["D2"].stop == 1.10080
    restores = [a for a in rig.store.amendments.values() if a.reason == "restore"]
    assert len(restores) == 2
    assert rig.sup.stops.counts["drifts"] == 2


async def test_a_tighter_stop_set_at_the_broker_becomes_the_floor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    broker = ScriptedBroker()
    rig = LiveRig(broker)
    await rig.add("D1", Direction.BUY, 1.10000, 1.09800)

    async def body() -> None:
        await rig.tick(1.10210, 1.0)  # stage 1 at 1.10080
        broker.positions["D1"] = dataclasses.replace(broker.positions["D1"], stop=1.10120)
        await rig.sup.on_broker_event(PositionAmended("D1", 1.10120, None, rig.now))
        await rig.tick(1.10310, 1.0)  # stage 2 (1.10150) beats it: sent

    await rig.run(body)
    assert [level for _, level in broker.applied] == [1.10080, 1.10150]
    assert rig.sup.slots[1].actor.confirmed_stop == 1.10150
