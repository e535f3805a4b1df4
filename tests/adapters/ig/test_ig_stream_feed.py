"""IGStreamFeed against the loopback Lightstreamer: ticks, states, drops, rebinds, staleness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.testing

from tests.adapters.ig.conftest import (
    CEEM,
    EURUSD,
    broker_for,
    fixed_clock,
    ig_sim,
    wait_until,
)
from traild.adapters.ig.lightstreamer import LightstreamerClient
from traild.adapters.ig.options import IGStream
from traild.adapters.ig.stream import IGStreamFeed
from traild.adapters.ig.tlcp import ItemUpdate, Subscription, TLCPUnsupported
from traild.core.messages import Tick
from traild.testing.ig_sim import IGSim, SimMarket

NZDUSD = "CS.D.NZDUSD.MINI.IP"
USDJPY = "CS.D.USDJPY.MINI.IP"


def _at(hms: str) -> datetime:
    return datetime.fromisoformat(f"2024-05-02T{hms}+00:00").astimezone(UTC)


@asynccontextmanager
async def running_feed(
    sim: IGSim, epics: list[str], *, stale_after: float = 30.0, **stream: Any
) -> AsyncIterator[tuple[IGStreamFeed, trio.MemoryReceiveChannel[Tick]]]:
    """A feed on the broker's stream (``stream``: IGStream fields)."""
    stream.setdefault("backoff_initial", 0.01)
    async with broker_for(sim, stream=IGStream(**stream)) as broker:
        feed = IGStreamFeed(
            epics,
            broker.stream,
            account_id=broker.account_id,
            scale=broker.stream_scale,
            stale_after=stale_after,
            clock=fixed_clock,
        )
        send, receive = trio.open_memory_channel[Tick](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed.run, send.send)
            yield feed, receive
            nursery.cancel_scope.cancel()


def _eurusd() -> SimMarket:
    return SimMarket(EURUSD, 1.10000, 1.10010, timestamp_ms=int(_at("10:00:00").timestamp() * 1000))


def _one_second_later() -> datetime:
    return _at("10:00:01")


async def test_stream_delivers_price_ticks_dated_by_their_timestamp() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[_eurusd()], clock=_one_second_later) as sim,
            running_feed(sim, [EURUSD]) as (feed, ticks),
        ):
            snapshot = await ticks.receive()
            sim.set_price(EURUSD, 1.10020, 1.10030)
            moved = await ticks.receive()
            sim.set_price(EURUSD, 1.10020, 1.10040)
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
            assert feed.market_state(EURUSD) == "DEAL"
            sim.set_market_state(EURUSD, "CLOSED")
            await wait_until(lambda: not feed.market_open(EURUSD))
            sim.set_market_state(EURUSD, "EDIT")
            await wait_until(lambda: feed.market_state(EURUSD) == "EDIT")
            assert feed.market_open(EURUSD)
            sim.set_market_state(EURUSD, "AUCTION")
            await wait_until(lambda: not feed.market_open(EURUSD))
            sim.set_price(EURUSD, 1.1001, 1.1002, update_time="10:00:02")
            tick = await ticks.receive()
    assert tick.bid == 1.1001  # a state change alone produced no tick
    assert feed.statistics().updates == 5


async def test_ceem_prices_on_the_stream_are_scaled_by_what_markets_says() -> None:
    with trio.fail_after(10):
        market = SimMarket(CEEM, 1.17831, 1.17841, update_time="10:00:00")
        async with ig_sim(markets=[market]) as sim, running_feed(sim, [CEEM]) as (_, ticks):
            tick = await ticks.receive()
    assert market.wire(1.17831) == 11783.1  # IG quotes CEEM in points
    assert (tick.bid, tick.ask) == (1.17831, 1.17841)
    assert len(sim.requests_to("GET", f"markets/{CEEM}")) == 1


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


async def test_stream_silent_past_the_keepalive_and_margin_reconnects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with (
            ig_sim(markets=[_eurusd()], keepalive_ms=2000) as sim,
            running_feed(sim, [EURUSD], stall_margin=1.0) as (feed, ticks),
        ):
            await ticks.receive()
            sim.stream.stall_all()  # no data, no PROBE: a dead connection that stays open
            stalled = trio.current_time()
            await wait_until(lambda: sim.stream.created == 2)
            waited = trio.current_time() - stalled
    assert 3.0 <= waited < 3.5  # the server's 2 s keep-alive + the 1 s margin (+ backoff)
    assert feed.statistics().disconnects == 1


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


async def test_auth_conerr_logs_in_again_at_most_once_until_a_session_is_accepted() -> None:
    with trio.fail_after(10):
        async with ig_sim(markets=[_eurusd()]) as sim, broker_for(sim) as broker:
            sim.stream.refuse_auth = 5  # CONERR 1 five times: the fresh tokens do not help
            client = LightstreamerClient(broker.stream_auth, backoff_initial=0.01, backoff_max=0.02)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.run)
                await wait_until(lambda: sim.stream.refuse_auth == 0 and sim.stream.created == 1)
                nursery.cancel_scope.cancel()
    assert sim.logins == 2  # the broker's own login plus exactly one for the refusals
    assert client.counts["logins"] == 1


async def test_conerr_65_ends_the_stream_with_a_clear_error_and_no_login() -> None:
    with trio.fail_after(10):
        async with (
            ig_sim(markets=[_eurusd()]) as sim,
            broker_for(sim, stream=IGStream(tlcp_version="2.5.0")) as broker,
        ):
            feed = IGStreamFeed([EURUSD], broker.stream, account_id=broker.account_id)
            send, _ = trio.open_memory_channel[Tick](10)
            with pytest.raises(TLCPUnsupported, match=r"CONERR 65 \(Unsupported protocol") as info:
                await feed.run(send.send)
    assert "TLCP version TLCP-2.5.0 is the usual cause" in str(info.value)
    assert sim.stream.protocols == ["TLCP-2.5.0"]  # tried once, not every 30 s forever
    assert sim.logins == 1
    assert "set broker.ig.tlcp_version" in str(info.value)


async def test_a_market_item_subscription_fails_loudly(log_lines: list[str]) -> None:
    with trio.fail_after(10):
        async with ig_sim(markets=[_eurusd()]) as sim, broker_for(sim) as broker:
            client = LightstreamerClient(broker.stream_auth)
            fields = ("BID", "OFFER", "UPDATE_TIME", "MARKET_STATE")
            updates: list[ItemUpdate] = []

            async def keep(update: ItemUpdate) -> None:
                updates.append(update)

            client.add(Subscription("old", f"MARKET:{EURUSD}", fields), keep)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.run)
                await wait_until(lambda: bool(sim.stream.refused_items))
                sim.set_price(EURUSD, 1.2, 1.2001)
                await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
    assert updates == []
    assert sim.stream.refused_items == [f"MARKET:{EURUSD}"]
    assert any("feed.subscription_rejected" in ln and "PRICE" in ln for ln in log_lines)


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
