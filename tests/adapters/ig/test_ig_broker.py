"""IGBroker against the loopback IG: positions, amendments, confirms, errors, dealing rules."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import httpx
import pytest
import trio

from tests.adapters.ig.conftest import (
    API_KEY,
    CEEM,
    EURUSD,
    GBPUSD,
    IDENTIFIER,
    PASSWORD,
    TEST_EVENTS,
    TEST_RETRY,
    USDJPY,
    broker_for,
    ig_sim,
)
from traild.adapters.ig.allowance import TradingPacer
from traild.adapters.ig.options import IGLimits, IGTimeouts
from traild.core.errors import BrokerRejected, BrokerTimeout, BrokerUnavailable, RateLimited
from traild.core.messages import Direction, OpenRequest
from traild.testing.ig_sim import IGSim, SimMarket, SimPosition


def _eurusd(min_stop: float = 0.0) -> SimMarket:
    return SimMarket(EURUSD, 1.10000, 1.10010, min_stop_distance=min_stop)


async def test_positions_are_parsed_with_the_epic_of_their_market() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000, limit=1.12000, size=2.5)
        async with ig_sim(markets=[_eurusd()], positions=[buy]) as sim, broker_for(sim) as broker:
            [position] = await broker.open_positions()
    assert position.deal_id == buy.deal_id
    assert position.epic == EURUSD
    assert position.direction is Direction.BUY
    assert (position.size, position.level, position.stop, position.limit) == (
        2.5,
        1.095,
        1.09,
        1.12,
    )
    assert position.opened_at is not None and position.opened_at.tzinfo is not None


async def test_ceem_levels_are_divided_by_the_broker_scale_on_the_way_in() -> None:
    with trio.fail_after(10):
        sell = SimPosition(CEEM, "SELL", 1.17831, stop=1.18500, limit=1.16000)
        async with ig_sim(positions=[sell]) as sim, broker_for(sim) as broker:
            raw = (await _raw_positions(sim))[0]["position"]
            [position] = await broker.open_positions()
    assert raw["level"] == 11783.1 and raw["stopLevel"] == 11850.0
    assert (position.level, position.stop, position.limit) == (1.17831, 1.185, 1.16)


async def _raw_positions(sim: IGSim) -> list[dict[str, Any]]:
    """GET /positions as IG sends it (to see the wire levels)."""
    headers = {"X-IG-API-KEY": API_KEY}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client:
        login = await client.post(
            "session",
            json={"identifier": IDENTIFIER, "password": PASSWORD},
            headers={"VERSION": "2"},
        )
        tokens = {
            "CST": login.headers["CST"],
            "X-SECURITY-TOKEN": login.headers["X-SECURITY-TOKEN"],
        }
        listed = await client.get("positions", headers={"VERSION": "2", **tokens})
    positions: list[dict[str, Any]] = listed.json()["positions"]
    return positions


async def test_get_position_of_an_unknown_deal_is_none() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim) as broker:
            assert await broker.get_position("DIAAAANOPE") is None


async def test_accepted_amendment_sends_an_absolute_stop_and_returns_igs_level() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000, limit=1.12000)
        async with ig_sim(markets=[_eurusd()], positions=[buy]) as sim, broker_for(sim) as broker:
            confirmation = await broker.amend_stop(buy.deal_id, 1.09610, 1.12000)
            [put] = sim.requests_to("PUT", "positions/otc")
    assert confirmation.accepted and confirmation.level == 1.0961
    assert confirmation.reference and confirmation.reason == "SUCCESS"
    assert put.path.endswith(f"/positions/otc/{buy.deal_id}")
    assert put.headers["version"] == "2"
    assert put.json() == {
        "stopLevel": 1.0961,
        "limitLevel": 1.12,
        "guaranteedStop": False,
        "trailingStop": False,
    }
    assert sim.positions[buy.deal_id].stop == pytest.approx(1.0961)
    [confirm] = sim.requests_to("GET", "confirms/")
    assert confirm.path.endswith(confirmation.reference)


async def test_ceem_amendment_is_scaled_and_rounded_to_the_wire_precision() -> None:
    with trio.fail_after(10):
        sell = SimPosition(CEEM, "SELL", 1.17900, stop=1.18500)
        async with ig_sim(positions=[sell]) as sim, broker_for(sim) as broker:
            sim.set_price(CEEM, 1.17831, 1.17841)
            confirmation = await broker.amend_stop(sell.deal_id, 1.18012, None)
    assert sim.amendments[-1][1]["stopLevel"] == 11801.2
    assert confirmation.accepted and confirmation.level == 1.18012
    assert sim.positions[sell.deal_id].stop == pytest.approx(1.18012)


async def test_stop_closer_than_the_dealing_rule_is_rejected_with_igs_reason() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000, limit=1.12000)
        async with (
            ig_sim(markets=[_eurusd(min_stop=5)], positions=[buy]) as sim,
            broker_for(sim) as broker,
        ):
            confirmation = await broker.amend_stop(buy.deal_id, 1.09980, 1.12)
    assert not confirmation.accepted
    assert confirmation.reason == "ATTACHED_ORDER_LEVEL_ERROR"
    assert confirmation.level is None and confirmation.reference
    assert sim.positions[buy.deal_id].stop == 1.09


async def test_stop_on_the_wrong_side_of_the_market_is_rejected() -> None:
    with trio.fail_after(10):
        sell = SimPosition(EURUSD, "SELL", 1.10500, stop=1.11000)
        async with ig_sim(markets=[_eurusd()], positions=[sell]) as sim, broker_for(sim) as broker:
            confirmation = await broker.amend_stop(sell.deal_id, 1.10005, None)
    assert (confirmation.accepted, confirmation.reason) == (False, "WRONG_SIDE_OF_MARKET")


async def test_the_existing_limit_is_resent_with_every_amendment() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000, limit=1.12000)
        async with ig_sim(markets=[_eurusd()], positions=[buy]) as sim, broker_for(sim) as broker:
            await broker.open_positions()
            for stop in (1.0955, 1.0960, 1.0970):
                assert (await broker.amend_stop(buy.deal_id, stop, 1.12)).accepted
            # traild's copy lacks the limit: IG's take-profit is still re-sent, never dropped.
            assert (await broker.amend_stop(buy.deal_id, 1.0975, None)).accepted
    assert [body["limitLevel"] for _, body in sim.amendments] == [1.12] * 4
    assert sim.positions[buy.deal_id].limit == 1.12


async def test_position_without_a_limit_is_amended_with_a_null_limit() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with ig_sim(markets=[_eurusd()], positions=[buy]) as sim, broker_for(sim) as broker:
            assert (await broker.amend_stop(buy.deal_id, 1.0950, None)).accepted
    assert "limitLevel" in sim.amendments[0][1] and sim.amendments[0][1]["limitLevel"] is None


async def test_amendment_targets_its_deal_id_when_two_positions_share_an_epic() -> None:
    with trio.fail_after(10):
        first = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000, limit=1.12000)
        second = SimPosition(EURUSD, "BUY", 1.09700, stop=1.09200, limit=1.13000)
        async with (
            ig_sim(markets=[_eurusd()], positions=[first, second]) as sim,
            broker_for(sim) as broker,
        ):
            await broker.open_positions()
            assert (await broker.amend_stop(second.deal_id, 1.0980, 1.13)).accepted
    assert sim.amendments == [
        (
            second.deal_id,
            {
                "stopLevel": 1.098,
                "limitLevel": 1.13,
                "guaranteedStop": False,
                "trailingStop": False,
            },
        )
    ]
    assert sim.positions[first.deal_id].stop == 1.09
    assert sim.positions[second.deal_id].stop == pytest.approx(1.098)


async def test_confirmation_is_polled_until_ig_has_it() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with (
            ig_sim(markets=[_eurusd()], positions=[buy], confirm_delay_polls=3) as sim,
            broker_for(sim) as broker,
        ):
            confirmation = await broker.amend_stop(buy.deal_id, 1.0950, None)
    assert confirmation.accepted
    assert len(sim.requests_to("GET", "confirms/")) == 4


async def test_confirmation_that_never_appears_is_an_unknown_outcome() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with (
            ig_sim(markets=[_eurusd()], positions=[buy], confirm_delay_polls=99) as sim,
            broker_for(sim, retry=replace(TEST_RETRY, confirm_attempts=3)) as broker,
        ):
            with pytest.raises(BrokerTimeout, match="no confirmation"):
                await broker.amend_stop(buy.deal_id, 1.0950, None)
    assert len(sim.requests_to("GET", "confirms/")) == 3


async def test_allowance_burst_raises_rate_limited_with_a_retry_after() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with (
            ig_sim(markets=[_eurusd()], positions=[buy]) as sim,
            broker_for(sim) as broker,
        ):
            await broker.amend_stop(buy.deal_id, 1.0950, None)
            await broker.amend_stop(buy.deal_id, 1.0955, None)
            # IG counts requests traild cannot see (another app on the same account)
            sim.fail_next(
                "PUT", "positions/otc", 403, "error.public-api.exceeded-account-trading-allowance"
            )
            with pytest.raises(RateLimited, match="exceeded-account-trading-allowance") as info:
                await broker.amend_stop(buy.deal_id, 1.0960, None)
    # The fixed test clock sits on a minute boundary: the next window is 60 s away (+1 s).
    assert info.value.retry_after == 61.0
    assert sim.positions[buy.deal_id].stop == pytest.approx(1.0955)


@pytest.mark.parametrize(
    "code",
    ["error.public-api.exceeded-account-allowance", "error.public-api.exceeded-api-key-allowance"],
)
async def test_non_trading_allowance_errors_are_rate_limited_too(code: str) -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim) as broker:
            sim.fail_next("GET", "positions", 403, code)
            with pytest.raises(RateLimited, match=code):
                await broker.open_positions()


async def test_unanswered_amendment_raises_broker_timeout() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with (
            ig_sim(markets=[_eurusd()], positions=[buy]) as sim,
            broker_for(sim, timeouts=IGTimeouts(request=0.5)) as broker,
        ):
            await broker.open_positions()
            sim.delay("PUT", "positions/otc", math.inf)
            with pytest.raises(BrokerTimeout, match=r"no answer within 0\.5s"):
                await broker.amend_stop(buy.deal_id, 1.0950, None)


async def test_server_errors_are_transient() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim) as broker:
            sim.fail_next("GET", "positions", 503, "system.error")
            with pytest.raises(BrokerUnavailable, match="503"):
                await broker.open_positions()
            assert await broker.open_positions() == []


async def test_unreachable_ig_is_unavailable() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            broker = broker_for(sim)
        with pytest.raises(BrokerUnavailable, match="cannot connect"):
            async with broker:
                pass


async def test_other_client_errors_are_definitive_rejections() -> None:
    with trio.fail_after(10):
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with ig_sim(markets=[_eurusd()], positions=[buy]) as sim, broker_for(sim) as broker:
            sim.fail_next("PUT", "positions/otc", 400, "validation.target-value-conditional")
            with pytest.raises(BrokerRejected, match=r"400 .*validation\.target-value-conditional"):
                await broker.amend_stop(buy.deal_id, 1.0950, None)


async def test_min_stop_distance_comes_from_dealing_rules_after_the_first_poll() -> None:
    with trio.fail_after(10):
        markets = [
            _eurusd(min_stop=4),
            SimMarket(USDJPY, 150.000, 150.010, min_stop_distance=8),
            SimMarket(GBPUSD, 1.25, 1.2502, min_stop_distance=0.05, unit="PERCENTAGE"),
        ]
        positions = [SimPosition(m.epic, "BUY", m.bid, stop=m.bid * 0.99) for m in markets]
        async with ig_sim(markets=markets, positions=positions) as sim, broker_for(sim) as broker:
            assert broker.min_stop_distance_pips(EURUSD) == 0.0
            await broker.open_positions()
            await broker.open_positions()
            rules_requests = sim.requests_to("GET", "markets/")
    assert broker.min_stop_distance_pips(EURUSD) == 4.0
    assert broker.min_stop_distance_pips(USDJPY) == 8.0
    assert broker.min_stop_distance_pips(GBPUSD) == 6.26  # 0.05 % of 1.2501, rounded up
    assert {r.headers["version"] for r in rules_requests} == {"3"}
    assert len(rules_requests) == 3  # cached: one fetch per epic


async def test_allowance_per_minute_leaves_room_for_polls_and_confirms() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(trading_allowance=100, account_allowance=30) as sim,
            broker_for(sim, events=replace(TEST_EVENTS, poll_interval=5.0)) as broker,
        ):
            assert broker.allowance_per_minute() == 98  # 2 kept for session refreshes
            async with broker_for(sim, limits=IGLimits(trading=40)) as broker:
                assert broker.allowance_per_minute() == 38
    assert len(sim.requests_to("GET", "operations/application")) == 2  # account/app unknown


async def test_the_trading_window_paces_amendments_once_the_allowance_is_known() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim:
            async with broker_for(sim) as broker:
                assert isinstance(broker.pacer(), TradingPacer)
            sim.fail_next("GET", "operations/application", 500, "system.error")
            async with broker_for(sim) as broker:
                assert broker.allowance_per_minute() is None
                assert broker.pacer() is None  # the gateway's own bucket paces then


async def test_open_position_is_refused() -> None:
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim) as broker:
            with pytest.raises(BrokerRejected, match="does not open positions"):
                await broker.open_position(OpenRequest(EURUSD, Direction.BUY, 1.0))
    assert sim.requests_to("POST", "positions") == []


async def test_position_of_an_unknown_instrument_is_skipped_not_fatal() -> None:
    with trio.fail_after(10):
        index = SimPosition("IX.D.FTSE.DAILY.IP", "BUY", 7500.0)
        buy = SimPosition(EURUSD, "BUY", 1.09500, stop=1.09000)
        async with (
            ig_sim(markets=[_eurusd()], positions=[index, buy]) as sim,
            broker_for(sim) as broker,
        ):
            positions = await broker.open_positions()
    assert [p.deal_id for p in positions] == [buy.deal_id]
