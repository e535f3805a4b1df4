"""The account's one Lightstreamer session: shared by PRICE and TRADE, within IG's 40
subscriptions, on the keep-alive the server assigns, logging in again at every token expiry.

IG streaming API guide: one connection per account, up to 40 subscriptions on it. TLCP 2.4.0:
CONOK carries the keep-alive the server assigns; END 35 and CONERR <= 0 are per-user limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from tests.adapters.ig.conftest import (
    EURUSD,
    GBPUSD,
    STREAMING,
    broker_for,
    fixed_clock,
    ig_sim,
    wait_until,
)
from traild.adapters.ig.lightstreamer import LightstreamerClient, SubscriptionLimit
from traild.adapters.ig.options import IGEvents, IGStream
from traild.adapters.ig.rest import IGBroker
from traild.adapters.ig.stream import IGStreamFeed
from traild.core.messages import Tick
from traild.testing.ig_sim import IGSim, SimMarket

QUIET = IGEvents(reconcile_interval=3600.0, poll_interval=3600.0)  # the stream, nothing else


def _markets() -> list[SimMarket]:
    return [SimMarket(EURUSD, 1.1, 1.1001), SimMarket(GBPUSD, 1.25, 1.2501)]


async def _ignore(event: Any) -> None:
    return None


@asynccontextmanager
async def daemon_streams(
    sim: IGSim, **options: Any
) -> AsyncIterator[tuple[IGBroker, IGStreamFeed, trio.MemoryReceiveChannel[Tick]]]:
    """What the daemon runs: the broker's events (TRADE) and the PRICE feed, side by side."""
    options.setdefault("stream", IGStream(backoff_initial=0.5, backoff_max=30.0))
    async with broker_for(sim, events=QUIET, **options) as b:
        feed = IGStreamFeed([EURUSD], b.stream, account_id=b.account_id, clock=fixed_clock)
        send, receive = trio.open_memory_channel[Tick](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.run, _ignore)
            nursery.start_soon(feed.run, send.send)
            yield b, feed, receive
            nursery.cancel_scope.cancel()


def _events(lines: list[str], event: str) -> list[str]:
    return [line for line in lines if f"'event': '{event}'" in line]


async def test_price_feed_and_trade_events_share_one_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with ig_sim(markets=_markets()) as sim, daemon_streams(sim) as (broker, _, ticks):
            await ticks.receive()
            await wait_until(lambda: broker.events.live)
            [session] = sim.stream.sessions.values()
            items = sorted(i for sub in session.subscriptions.values() for i in sub.items)
    assert items == [f"PRICE:SIMACC1:{EURUSD}", "TRADE:SIMACC1"]
    assert sim.stream.created == 1 and sim.stream.peak_sessions == {"SIMACC1": 1}


async def test_a_second_session_refused_by_ig_is_logged_and_retried_at_the_longest_backoff(
    autojump_clock: trio.testing.MockClock, log_lines: list[str]
) -> None:
    with trio.fail_after(600):
        async with (
            ig_sim(markets=_markets(), stream_sessions_per_account=1) as sim,
            broker_for(sim) as other,
            trio.open_nursery() as nursery,
        ):
            rogue = LightstreamerClient(other.stream_auth)  # another program, same account
            elsewhere = trio.CancelScope()

            async def stream_elsewhere() -> None:
                with elsewhere:
                    await rogue.run()

            nursery.start_soon(stream_elsewhere)
            await wait_until(lambda: sim.stream.created == 1)
            async with daemon_streams(sim) as (_, _, ticks):
                await wait_until(lambda: sim.stream.refused_sessions == 1)
                refused_at = trio.current_time()
                elsewhere.cancel()  # the other program stops
                await ticks.receive()
                waited = trio.current_time() - refused_at
    assert waited == pytest.approx(30.0, abs=1.0)  # the longest backoff, not 0.5 s
    [refusal] = _events(log_lines, "feed.refused")
    assert "CONERR -1 (Too many sessions for this account)" in refusal
    assert sim.stream.peak_sessions == {"SIMACC1": 1}


async def test_a_session_displaced_by_another_for_the_account_says_so(
    autojump_clock: trio.testing.MockClock, log_lines: list[str]
) -> None:
    with trio.fail_after(600):
        async with (
            ig_sim(
                markets=_markets(), stream_sessions_per_account=1, stream_session_policy="displace"
            ) as sim,
            daemon_streams(sim) as (_, feed, ticks),
        ):
            await ticks.receive()
            async with broker_for(sim) as other:
                rogue = LightstreamerClient(other.stream_auth)
                async with trio.open_nursery() as elsewhere:
                    elsewhere.start_soon(rogue.run)
                    await wait_until(lambda: bool(_events(log_lines, "feed.displaced")))
                    elsewhere.cancel_scope.cancel()
            await ticks.receive()  # back after the longest backoff, the other one gone
    [displaced] = _events(log_lines, "feed.displaced")
    assert "END 35" in displaced and "IG allows one per account" in displaced
    assert feed.statistics().disconnects == 1


async def test_more_subscriptions_than_ig_allows_are_refused_clearly(log_lines: list[str]) -> None:
    epics = [f"CS.D.X{i:02d}USD.MINI.IP" for i in range(40)]
    with trio.fail_after(10):
        async with ig_sim() as sim, broker_for(sim, events=STREAMING) as broker:
            with pytest.raises(SubscriptionLimit, match="IG allows 40 subscriptions"):
                IGStreamFeed(epics, broker.stream, account_id=broker.account_id)
        async with ig_sim() as sim, broker_for(sim) as broker:
            feed = IGStreamFeed(epics[:39], broker.stream, account_id=broker.account_id)
            feed.add_epics([epics[39], "CS.D.ONEMORE.MINI.IP"])  # a trade's epic: logged
    assert len(feed.epics()) == 40
    [limit] = _events(log_lines, "feed.subscription_limit")
    assert "CS.D.ONEMORE.MINI.IP" in limit


async def test_the_keepalive_assigned_in_conok_is_used_not_three_times_the_requested_one(
    autojump_clock: trio.testing.MockClock, log_lines: list[str]
) -> None:
    with trio.fail_after(600):
        async with (
            ig_sim(markets=_markets(), keepalive_min_ms=20_000) as sim,
            daemon_streams(sim) as (broker, feed, ticks),
        ):
            await ticks.receive()
            await trio.sleep(300)  # nothing but PROBEs every 20 s for five minutes
    assert sim.stream.keepalives == [("5000", 20_000)]
    assert sim.stream.created == 1 and feed.statistics().disconnects == 0
    assert broker.stream.assigned_keepalive_ms == 20_000
    assert "'assigned_ms': 20000" in _events(log_lines, "feed.keepalive")[0]


async def test_every_token_expiry_logs_in_again_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with ig_sim(markets=_markets()) as sim, daemon_streams(sim) as (broker, _, ticks):
            await ticks.receive()
            for maintenance in (1, 2, 3):  # IG Labs FAQ: every token dies at the weekend
                sim.weekend_maintenance()
                await wait_until(lambda n=maintenance: sim.stream.created == n + 1)  # type: ignore[misc]
                await ticks.receive()
                await wait_until(lambda: broker.events.live)
    assert sim.logins == 4  # the first login and exactly one per expiry
    assert broker.stream.counts["logins"] == 3


async def test_a_rest_401_and_two_refused_streams_together_log_in_once() -> None:
    with trio.fail_after(10):
        async with ig_sim(markets=_markets()) as sim, broker_for(sim) as broker:
            stale = await broker.stream_auth()
            sim.expire_tokens()
            fresh: list[object] = []

            async def refused_stream() -> None:
                fresh.append(await broker.stream_auth(refused=stale))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(refused_stream)
                nursery.start_soon(refused_stream)
                nursery.start_soon(broker.open_positions)
    assert sim.logins == 2
    assert fresh[0] == fresh[1] != stale
