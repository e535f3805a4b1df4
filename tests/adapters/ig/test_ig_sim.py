"""The loopback IG itself: where it listens, when it stops, how its market behaves."""

from __future__ import annotations

import pytest
import trio

from tests.adapters.ig.conftest import CEEM, EURUSD, broker_for, ig_sim
from traild.core.errors import BrokerUnavailable
from traild.testing.ig_sim import SimMarket, SimPosition, SimTick


async def test_sim_listens_on_a_loopback_ephemeral_port_and_stops_with_its_nursery() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            assert sim.port > 0
            assert sim.base_url == f"http://127.0.0.1:{sim.port}/gateway/deal"
            stream = await trio.open_tcp_stream("127.0.0.1", sim.port)
            await stream.aclose()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", sim.port)
        with pytest.raises(BrokerUnavailable):
            async with broker_for(sim):
                pass


async def test_played_ticks_close_positions_on_the_exit_side() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.1000, stop=1.0990, limit=1.1020)
        sell = SimPosition(EURUSD, "SELL", 1.1000, stop=1.1010, limit=1.0980)
        async with ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)], positions=[buy, sell]) as sim:
            await sim.play(
                [
                    SimTick(EURUSD, 1.1005, 1.1009),  # nothing
                    SimTick(EURUSD, 1.1008, 1.1010),  # SELL stopped at the offer
                    SimTick(EURUSD, 1.1021, 1.1023),  # BUY reaches its limit on the bid
                ]
            )
    assert sim.closed == [(sell.deal_id, 1.101, "stop"), (buy.deal_id, 1.102, "limit")]
    assert sim.positions == {}


async def test_unchanged_limit_inside_the_minimum_distance_is_still_accepted() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.0950, stop=1.0900, limit=1.1100)
        market = SimMarket(EURUSD, 1.1000, 1.1001, min_stop_distance=5)
        async with ig_sim(markets=[market], positions=[buy]) as sim, broker_for(sim) as broker:
            await broker.open_positions()
            sim.positions[buy.deal_id].limit = 1.1002  # as if the trader moved the TP at IG...
            await broker.get_position(buy.deal_id)  # ...and traild read it
            confirmation = await broker.amend_stop(buy.deal_id, 1.0950, None)
    # Re-sending an unchanged limit is accepted even inside the distance: only changes count.
    assert confirmation.accepted
    assert sim.amendments[-1][1]["limitLevel"] == 1.1002


async def test_ceem_market_details_are_scaled_on_the_wire() -> None:
    with trio.fail_after(10):
        market = SimMarket(CEEM, 1.17831, 1.17841, min_stop_distance=2)
        position = SimPosition(CEEM, "BUY", 1.178)
        async with (
            ig_sim(markets=[market], positions=[position]) as sim,
            broker_for(sim) as broker,
        ):
            await broker.open_positions()
            response = await broker.session.request("GET", f"markets/{CEEM}", version=3)
    assert response is not None
    snapshot = response.json()["snapshot"]
    assert (snapshot["bid"], snapshot["offer"]) == (11783.1, 11784.1)
    assert broker.min_stop_distance_pips(CEEM) == 2.0
