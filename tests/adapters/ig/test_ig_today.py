"""IG as it runs today: TRADE stream events without polls, scale from /markets, stop types
that traild must not change, and allowances under a burst of amendments."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.adapters.ig.conftest import EURUSD, broker_for, ig_sim, wait_until
from traild.adapters.ig.options import IGEvents, IGLimits, IGStream, IGTakeOver
from traild.core.messages import PositionAmended, PositionClosed, PositionOpened
from traild.testing.ig_sim import SimMarket, SimPosition

CEEM = "CS.D.EURUSD.CEEM.IP"
SPREAD_BET_JPY = "CS.D.USDJPY.TODAY.IP"


async def test_opu_open_stop_change_and_close_reach_the_runtime_without_a_position_poll() -> None:
    events: list[Any] = []

    async def emit(event: Any) -> None:
        events.append(event)

    with trio.fail_after(10):
        market = SimMarket(EURUSD, 1.1000, 1.1001)
        async with (
            ig_sim(markets=[market]) as sim,
            broker_for(
                sim, events=IGEvents(reconcile_interval=3600.0, poll_interval=3600.0)
            ) as broker,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(broker.run, emit)
            await wait_until(lambda: broker.events.live)
            polls = len(sim.requests_to("GET", "positions"))  # the one start-up read
            deal = sim.add_position(SimPosition(EURUSD, "BUY", 1.0990, stop=1.0950, limit=1.1100))
            await wait_until(lambda: len(events) == 1)
            sim.move_stop(deal, 1.0960, 1.1120)  # the trader moves stop and limit on IG
            await wait_until(lambda: len(events) == 2)
            confirmation = await broker.amend_stop(deal, 1.0970, 1.1100)
            sim.set_price(EURUSD, 1.0969, 1.0970)  # stopped out at IG
            await wait_until(lambda: len(events) == 3)
            nursery.cancel_scope.cancel()
    assert isinstance(events[0], PositionOpened) and events[0].position.stop == 1.095
    assert events[1] == PositionAmended(deal, 1.096, 1.112, events[1].ts)
    # traild's own amendment (1.0970) is not reported back as a change at the broker
    assert isinstance(events[2], PositionClosed) and events[2].reason == "stop"
    assert confirmation.accepted and confirmation.level == 1.097
    assert sim.amendments[-1][1]["limitLevel"] == 1.112  # the limit IG has now, pushed
    assert len(sim.requests_to("GET", "positions")) == polls == 1
    assert sim.requests_to("GET", "confirms") == []  # the verdict came with CONFIRMS


@pytest.mark.parametrize(
    ("epic", "bid", "wire_bid", "pip"),
    [(CEEM, 1.17831, 11783.1, 0.0001), (SPREAD_BET_JPY, 150.123, 15012.3, 0.01)],
)
async def test_points_quoted_epics_are_scaled_from_markets_not_from_their_name(
    epic: str, bid: float, wire_bid: float, pip: float
) -> None:
    min_stop = 2.0
    new_stop = round(bid - 20 * pip, 5)
    with trio.fail_after(10):
        market = SimMarket(epic, bid, round(bid + 2 * pip, 5), min_stop_distance=min_stop)
        buy = SimPosition(epic, "BUY", bid, stop=round(bid - 50 * pip, 5))
        async with ig_sim(markets=[market], positions=[buy]) as sim, broker_for(sim) as broker:
            [position] = await broker.open_positions()
            confirmation = await broker.amend_stop(buy.deal_id, new_stop, None)
    assert market.wire(bid) == wire_bid
    assert position.level == bid
    assert broker.markets.instrument(epic).broker_scale == (10000 if epic == CEEM else 100)
    assert broker.min_stop_distance_pips(epic) == min_stop
    assert confirmation.accepted
    assert sim.amendments[-1][1]["stopLevel"] == market.wire(new_stop)


async def test_guaranteed_and_ig_trailing_stops_are_refused_not_amended(
    log_lines: list[str],
) -> None:
    with trio.fail_after(10):
        guaranteed = SimPosition(EURUSD, "BUY", 1.0990, stop=1.0950, guaranteed=True)
        trailing = SimPosition(EURUSD, "BUY", 1.0990, stop=1.0950, trailing_distance=20.0)
        plain = SimPosition(EURUSD, "BUY", 1.0990, stop=1.0950)
        markets = [SimMarket(EURUSD, 1.1000, 1.1001)]
        async with (
            ig_sim(markets=markets, positions=[guaranteed, trailing, plain]) as sim,
            broker_for(sim) as broker,
        ):
            adopted = await broker.open_positions()
            refused = await broker.amend_stop(guaranteed.deal_id, 1.0960, None)
            async with broker_for(sim, take_over=IGTakeOver(guaranteed=True)) as taker:
                taken = await taker.amend_stop(guaranteed.deal_id, 1.0960, None)
    assert [p.deal_id for p in adopted] == [plain.deal_id]
    assert not refused.accepted and refused.reason == "GUARANTEED_STOP_NOT_MANAGED"
    assert taken.accepted and sim.amendments[-1][1]["guaranteedStop"] is True
    assert sim.conversions == []  # nothing became a plain stop
    assert sum("broker.position_refused" in line for line in log_lines) == 2


async def test_a_burst_of_200_amendments_stays_within_every_allowance() -> None:
    with trio.fail_after(20):
        market = SimMarket(EURUSD, 1.1000, 1.1001)
        buy = SimPosition(EURUSD, "BUY", 1.0990, stop=1.0900)
        async with (
            ig_sim(
                markets=[market],
                positions=[buy],
                trading_allowance=40,
                account_allowance=40,
                application_allowance=60,
                allowance_window=0.1,
            ) as sim,
            broker_for(sim, limits=IGLimits(window=0.1)) as broker,
        ):
            await broker.open_positions()
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(broker.amend_stop, buy.deal_id, 1.0901 + i * 0.00001, None)
    allowances = sim.allowances
    assert len(sim.amendments) == 200
    assert all(a.refused == 0 for a in allowances.values())
    assert allowances["trading"].peak <= 40 and allowances["account"].peak <= 40
    assert broker.session.allowance.waited > 0  # the limiter did hold requests back


async def test_without_the_trade_stream_an_amendment_reads_the_limit_ig_has_now() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.0990, stop=1.0950, limit=1.1100)
        markets = [SimMarket(EURUSD, 1.1000, 1.1001)]
        async with ig_sim(markets=markets, positions=[buy]) as sim, broker_for(sim) as broker:
            await broker.open_positions()
            sim.positions[buy.deal_id].limit = 1.1150  # moved on IG's platform since the read
            confirmation = await broker.amend_stop(buy.deal_id, 1.0960, 1.1100)
    assert confirmation.accepted
    assert sim.amendments[-1][1]["limitLevel"] == 1.115
    assert sim.positions[buy.deal_id].limit == 1.115  # the trader's take-profit survives


async def test_positions_are_polled_while_the_trade_stream_is_down_and_not_once_it_is_back() -> (
    None
):
    events: list[Any] = []

    async def emit(event: Any) -> None:
        events.append(event)

    with trio.fail_after(10):
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1000, 1.1001)]) as sim,
            broker_for(
                sim,
                events=IGEvents(reconcile_interval=3600.0, poll_interval=0.02),
                stream=IGStream(backoff_initial=0.5),
            ) as broker,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(broker.run, emit)
            await wait_until(lambda: broker.events.live)
            sim.drop_streams()
            await wait_until(lambda: not broker.events.live)
            down = broker.events.counts["polls"]
            # opened while the stream is down: only a poll can tell
            sim.positions["DIOFFLINE1"] = SimPosition(EURUSD, "BUY", 1.0990, deal_id="DIOFFLINE1")
            await wait_until(lambda: len(events) == 1)
            await wait_until(lambda: broker.events.live)
            await wait_until(lambda: not broker.events.resync)
            back = broker.events.counts["polls"]
            await trio.sleep(0.2)  # ten poll intervals: no poll while the stream is live
            after = broker.events.counts["polls"]
            nursery.cancel_scope.cancel()
    assert isinstance(events[0], PositionOpened) and events[0].position.deal_id == "DIOFFLINE1"
    assert back > down
    assert after == back
