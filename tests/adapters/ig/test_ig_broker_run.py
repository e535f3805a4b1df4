"""IGBroker.run: opened and closed positions from polling, and what must never close a trade."""

from __future__ import annotations

from typing import Any

import trio

from tests.adapters.ig.conftest import EURUSD, T0, broker_for, ig_sim, wait_until
from traild.adapters.ig.rest import IGBroker
from traild.core.messages import PositionClosed, PositionOpened
from traild.testing.ig_sim import IGSim, SimMarket, SimPosition


class Events:
    """Collects what run() emits."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    async def __call__(self, event: Any) -> None:
        self.items.append(event)

    def opened(self) -> list[str]:
        return [e.position.deal_id for e in self.items if isinstance(e, PositionOpened)]

    def closed(self) -> list[PositionClosed]:
        return [e for e in self.items if isinstance(e, PositionClosed)]


def _market() -> SimMarket:
    return SimMarket(EURUSD, 1.10000, 1.10010)


async def _polls(sim: IGSim, count: int) -> None:
    """Wait until ``count`` more position lists were served."""
    target = len(sim.requests_to("GET", "positions")) + count
    await wait_until(lambda: len(sim.requests_to("GET", "positions")) >= target)


async def _run(broker: IGBroker, events: Events, nursery: trio.Nursery) -> None:
    nursery.start_soon(broker.run, events)


async def test_each_position_is_reported_opened_once() -> None:
    with trio.fail_after(10):
        first = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with ig_sim(markets=[_market()], positions=[first]) as sim, broker_for(sim) as broker:
            events = Events()
            async with trio.open_nursery() as nursery:
                await _run(broker, events, nursery)
                await wait_until(lambda: events.opened() == [first.deal_id])
                second = sim.add_position(SimPosition(EURUSD, "SELL", 1.10500, stop=1.11000))
                await wait_until(lambda: len(events.opened()) == 2)
                await _polls(sim, 3)
                nursery.cancel_scope.cancel()
    assert events.opened() == [first.deal_id, second]
    assert events.closed() == []
    opened = events.items[0]
    assert opened.position.stop == 1.09 and opened.ts == T0


async def test_position_stopped_out_is_reported_closed_with_the_exit_from_history() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09800, limit=1.12000)
        other = SimPosition(EURUSD, "BUY", 1.09000, stop=1.08000)
        async with (
            ig_sim(markets=[_market()], positions=[buy, other]) as sim,
            broker_for(sim) as broker,
        ):
            events = Events()
            async with trio.open_nursery() as nursery:
                await _run(broker, events, nursery)
                await wait_until(lambda: len(events.opened()) == 2)
                sim.set_price(EURUSD, 1.09790, 1.09800)  # gaps through 1.09800
                await wait_until(lambda: len(events.closed()) == 1)
                await _polls(sim, 3)
                nursery.cancel_scope.cancel()
    [closed] = events.closed()
    assert closed.deal_id == buy.deal_id
    assert (closed.exit_price, closed.reason, closed.gap) == (1.0979, "stop", True)
    assert closed.ts == T0
    assert other.deal_id in sim.positions


async def test_limit_exit_is_reported_as_limit() -> None:
    with trio.fail_after(10):
        sell = SimPosition(EURUSD, "SELL", 1.10500, stop=1.11000, limit=1.09500)
        async with ig_sim(markets=[_market()], positions=[sell]) as sim, broker_for(sim) as broker:
            events = Events()
            async with trio.open_nursery() as nursery:
                await _run(broker, events, nursery)
                await wait_until(lambda: len(events.opened()) == 1)
                sim.set_price(EURUSD, 1.09480, 1.09490)
                await wait_until(lambda: len(events.closed()) == 1)
                nursery.cancel_scope.cancel()
    assert (events.closed()[0].exit_price, events.closed()[0].reason) == (1.095, "limit")


async def test_a_deal_missing_from_one_list_is_checked_alone_and_kept() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        sell = SimPosition(EURUSD, "SELL", 1.10500, stop=1.11000)
        async with (
            ig_sim(markets=[_market()], positions=[buy, sell]) as sim,
            broker_for(sim) as broker,
        ):
            events = Events()
            async with trio.open_nursery() as nursery:
                await _run(broker, events, nursery)
                await wait_until(lambda: len(events.opened()) == 2)
                sim.hide_in_list(buy.deal_id, polls=2)
                sim.fail_next("GET", f"positions/{buy.deal_id}", 500, "system.error")
                await wait_until(lambda: sim.hidden[buy.deal_id] == 0)
                await _polls(sim, 2)
                nursery.cancel_scope.cancel()
    assert events.closed() == []
    assert len(sim.requests_to("GET", f"positions/{buy.deal_id}")) == 2  # failed, then found
    assert sim.requests_to("GET", f"positions/{sell.deal_id}") == []


async def test_not_found_for_one_deal_closes_only_that_deal() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        sell = SimPosition(EURUSD, "SELL", 1.10500, stop=1.11000)
        async with (
            ig_sim(markets=[_market()], positions=[buy, sell]) as sim,
            broker_for(sim) as broker,
        ):
            events = Events()
            async with trio.open_nursery() as nursery:
                await _run(broker, events, nursery)
                await wait_until(lambda: len(events.opened()) == 2)
                sim.close_position(buy.deal_id, 1.09700)
                await wait_until(lambda: len(events.closed()) == 1)
                await _polls(sim, 3)
                nursery.cancel_scope.cancel()
    assert [c.deal_id for c in events.closed()] == [buy.deal_id]
    assert events.closed()[0].reason == "manual"


async def test_failed_polls_never_close_anything() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with ig_sim(markets=[_market()], positions=[buy]) as sim, broker_for(sim) as broker:
            events = Events()
            async with trio.open_nursery() as nursery:
                await _run(broker, events, nursery)
                await wait_until(lambda: len(events.opened()) == 1)
                sim.fail_next("GET", "positions", 502, "system.error", times=3)
                sim.fail_next(
                    "GET", "positions", 403, "error.public-api.exceeded-account-allowance"
                )
                await _polls(sim, 4)  # then run() waits for the next allowance minute
                nursery.cancel_scope.cancel()
    assert events.closed() == []
    assert events.opened() == [buy.deal_id]


async def test_exit_is_estimated_from_the_nearest_level_when_history_is_unavailable() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09800, limit=1.12000)
        async with ig_sim(markets=[_market()], positions=[buy]) as sim, broker_for(sim) as broker:
            events = Events()
            async with trio.open_nursery() as nursery:
                await _run(broker, events, nursery)
                await wait_until(lambda: len(events.opened()) == 1)
                sim.fail_next("GET", "history/activity", 500, "system.error")
                sim.set_price(EURUSD, 1.09750, 1.09760)
                await wait_until(lambda: len(events.closed()) == 1)
                nursery.cancel_scope.cancel()
    closed = events.closed()[0]
    assert (closed.exit_price, closed.reason, closed.gap) == (1.098, "stop", False)
