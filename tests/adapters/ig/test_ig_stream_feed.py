"""IGStreamFeed against the loopback Lightstreamer: ticks, states, drops, rebinds, staleness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import trio

from tests.adapters.ig.conftest import (
    API_KEY,
    CEEM,
    EURUSD,
    IDENTIFIER,
    PASSWORD,
    fixed_clock,
    ig_sim,
    wait_until,
)
from traild.adapters.ig.session import IGSession
from traild.adapters.ig.stream import IGStreamFeed
from traild.core.messages import Tick
from traild.testing.ig_sim import IGSim, SimMarket

NZDUSD = "CS.D.NZDUSD.MINI.IP"
USDJPY = "CS.D.USDJPY.MINI.IP"


def _at(hms: str) -> datetime:
    return datetime.fromisoformat(f"2024-05-02T{hms}+00:00").astimezone(UTC)


@asynccontextmanager
async def running_feed(
    sim: IGSim, epics: list[str], **options: Any
) -> AsyncIterator[tuple[IGStreamFeed, trio.MemoryReceiveChannel[Tick]]]:
    options.setdefault("backoff_initial", 0.01)
    async with IGSession(sim.base_url, API_KEY, IDENTIFIER, PASSWORD, timeout=2.0) as session:
        feed = IGStreamFeed(
            epics, session.stream_auth, update_time_zone="UTC", clock=fixed_clock, **options
        )
        send, receive = trio.open_memory_channel[Tick](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.run, send.send)
            yield feed, receive
            nursery.cancel_scope.cancel()


def _eurusd() -> SimMarket:
    return SimMarket(EURUSD, 1.10000, 1.10010, update_time="10:00:00")


async def test_stream_delivers_ticks_dated_by_update_time() -> None:
    with trio.fail_after(10):
        async with ig_sim(markets=[_eurusd()]) as sim, running_feed(sim, [EURUSD]) as (feed, ticks):
            snapshot = await ticks.receive()
            sim.set_price(EURUSD, 1.10020, 1.10030, update_time="10:00:01")
            moved = await ticks.receive()
            sim.set_price(EURUSD, 1.10020, 1.10040, update_time="10:00:01")
            ask_only = await ticks.receive()
    assert snapshot == Tick(EURUSD, _at("10:00:00"), 1.1, 1.1001)
    assert moved == Tick(EURUSD, _at("10:00:01"), 1.1002, 1.1003)
    assert ask_only == Tick(EURUSD, _at("10:00:01"), 1.1002, 1.1004)
    assert feed.epics() == [EURUSD]
    assert feed.statistics().ticks == 3


async def test_market_state_is_tracked_and_closed_markets_are_not_amendable() -> None:
    with trio.fail_after(10):
        async with ig_sim(markets=[_eurusd()]) as sim, running_feed(sim, [EURUSD]) as (feed, ticks):
            assert feed.market_open(EURUSD)  # unknown yet: not blocking
            await ticks.receive()
            assert feed.market_state(EURUSD) == "TRADEABLE"
            sim.set_market_state(EURUSD, "CLOSED")
            await wait_until(lambda: not feed.market_open(EURUSD))
            sim.set_market_state(EURUSD, "EDIT")
            await wait_until(lambda: feed.market_state(EURUSD) == "EDIT")
            assert feed.market_open(EURUSD)
            sim.set_price(EURUSD, 1.1001, 1.1002, update_time="10:00:02")
            tick = await ticks.receive()
    assert tick.bid == 1.1001  # a state change alone produced no tick
    assert feed.statistics().updates == 4


async def test_ceem_prices_on_the_stream_are_not_scaled() -> None:
    with trio.fail_after(10):
        market = SimMarket(CEEM, 1.17831, 1.17841, update_time="10:00:00")
        async with ig_sim(markets=[market]) as sim, running_feed(sim, [CEEM]) as (_, ticks):
            tick = await ticks.receive()
    assert (tick.bid, tick.ask) == (1.17831, 1.17841)


async def test_feed_reconnects_after_the_stream_is_dropped() -> None:
    with trio.fail_after(10):
        async with ig_sim(markets=[_eurusd()]) as sim, running_feed(sim, [EURUSD]) as (feed, ticks):
            await ticks.receive()
            sim.drop_streams()
            await wait_until(lambda: sim.stream.created == 2 and len(sim.stream.sessions) == 1)
            snapshot_again = await ticks.receive()
            sim.set_price(EURUSD, 1.1005, 1.1006, update_time="10:00:09")
            after = await ticks.receive()
    assert snapshot_again.bid == 1.1
    assert after.bid == 1.1005
    assert feed.statistics().disconnects == 1
    assert len(sim.requests_to("POST", "lightstreamer/control.txt")) == 2  # resubscribed


async def test_feed_rebinds_the_same_session_on_loop() -> None:
    with trio.fail_after(10):
        async with ig_sim(markets=[_eurusd()]) as sim, running_feed(sim, [EURUSD]) as (_, ticks):
            await ticks.receive()
            sim.loop_streams()
            await wait_until(lambda: sim.stream.binds == 1)
            sim.set_price(EURUSD, 1.1007, 1.1008, update_time="10:00:10")
            tick = await ticks.receive()
    assert tick.bid == 1.1007
    assert sim.stream.created == 1
    assert len(sim.requests_to("POST", "lightstreamer/control.txt")) == 1


async def test_epic_added_while_streaming_is_subscribed_on_the_same_session() -> None:
    with trio.fail_after(10):
        markets = [_eurusd(), SimMarket(USDJPY, 150.1, 150.11, update_time="10:00:00")]
        async with ig_sim(markets=markets) as sim, running_feed(sim, [EURUSD]) as (feed, ticks):
            await ticks.receive()
            feed.add_epics([USDJPY, EURUSD])
            tick = await ticks.receive()  # USDJPY's snapshot, after the next PROBE
    assert (tick.epic, tick.bid) == (USDJPY, 150.1)
    assert feed.epics() == [EURUSD, USDJPY]
    assert sim.stream.created == 1
    assert len(sim.requests_to("POST", "lightstreamer/control.txt")) == 2


async def test_silent_stream_times_out_and_reconnects() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[_eurusd()], keepalive_ms=60_000) as sim,
            running_feed(sim, [EURUSD], read_timeout=0.2) as (_, ticks),
        ):
            await ticks.receive()
            await wait_until(lambda: sim.stream.created >= 2)


async def test_quiet_epic_is_logged_stale_once_and_resumed(log_lines: list[str]) -> None:
    def count(event: str) -> int:
        return sum(f"'event': '{event}'" in line for line in log_lines)

    with trio.fail_after(10):
        async with (
            ig_sim(markets=[_eurusd()]) as sim,
            running_feed(sim, [EURUSD], stale_after=0.05) as (feed, ticks),
        ):
            await ticks.receive()
            # (a slow start may already have logged one stale/resumed pair)
            stale, resumed = count("feed.stale"), count("feed.resumed")
            await wait_until(lambda: count("feed.stale") == stale + 1)
            assert feed.statistics().stale_epics == {EURUSD}
            sim.set_price(EURUSD, 1.1003, 1.1004, update_time="10:00:03")
            await ticks.receive()
            await wait_until(lambda: count("feed.resumed") == resumed + 1)
            assert feed.statistics().stale_epics == frozenset()
    assert EURUSD in [line for line in log_lines if "'event': 'feed.stale'" in line][-1]


async def test_refused_stream_credentials_are_renewed_by_a_fresh_login() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[_eurusd()]) as sim,
            IGSession(sim.base_url, API_KEY, IDENTIFIER, PASSWORD) as session,
        ):
            sim.expire_tokens()
            feed = IGStreamFeed([EURUSD], session.stream_auth, backoff_initial=0.01)
            send, ticks = trio.open_memory_channel[Tick](10)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed.run, send.send)
                tick = await ticks.receive()
                nursery.cancel_scope.cancel()
    assert tick.bid == 1.1
    assert sim.logins == 2
    assert sim.stream.created == 1


async def test_refused_subscription_is_logged_and_the_other_epics_stream(
    log_lines: list[str],
) -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[_eurusd()]) as sim,
            running_feed(sim, [NZDUSD, EURUSD]) as (_, ticks),
        ):
            tick = await ticks.receive()
    assert tick.epic == EURUSD
    assert any("feed.subscription_rejected" in ln and NZDUSD in ln for ln in log_lines)
