"""Stream readers never wait on I/O: a slow /markets, a slow tick pipeline or a position stuck
on its way to the store hold up neither other epics' prices nor confirmations nor closes."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from tests.adapters.ig.conftest import EURUSD, USDJPY, broker_for, fixed_clock, ig_sim, wait_until
from tests.adapters.ig.test_ig_stream_feed import running_feed
from traild.adapters.ig.lanes import KeyedLanes
from traild.adapters.ig.options import IGEvents, IGStream
from traild.core.messages import PositionClosed, PositionOpened, Tick
from traild.testing.ig_sim import SimMarket, SimPosition


async def test_a_slow_markets_read_for_a_new_epic_holds_up_no_other_epic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    markets = [SimMarket(EURUSD, 1.1, 1.1001), SimMarket(USDJPY, 150.1, 150.11)]
    with trio.fail_after(600):
        async with ig_sim(markets=markets) as sim, running_feed(sim, [EURUSD]) as (feed, ticks):
            await ticks.receive()
            sim.delay("GET", f"markets/{USDJPY}", 1.5)  # slow, inside the 2 s timeout
            feed.add_epics([USDJPY])
            await wait_until(lambda: bool(sim.requests_to("GET", f"markets/{USDJPY}")))
            asked = trio.current_time()
            sim.set_price(EURUSD, 1.1002, 1.1003)
            eurusd = await ticks.receive()
            eurusd_after = trio.current_time() - asked
            jpy = await ticks.receive()
            jpy_after = trio.current_time() - asked
    assert (eurusd.epic, eurusd.bid) == (EURUSD, 1.1002)
    assert eurusd_after < 0.1  # not behind USDJPY's 1.5 s read
    assert (jpy.epic, jpy.bid) == (USDJPY, 150.1) and jpy_after > 1.0


async def test_a_slow_tick_pipeline_gets_the_latest_tick_and_the_coalescing_is_logged(
    log_lines: list[str],
) -> None:
    release = trio.Event()
    got: list[Tick] = []

    async def slow_emit(tick: Tick) -> None:
        got.append(tick)
        await release.wait()

    with trio.fail_after(10):
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)]) as sim,
            broker_for(sim, stream=IGStream(backoff_initial=0.01)) as broker,
        ):
            from traild.adapters.ig.stream import IGStreamFeed

            feed = IGStreamFeed([EURUSD], broker.stream, account_id="SIMACC1", clock=fixed_clock)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(feed.run, slow_emit)
                await wait_until(lambda: len(got) == 1)  # the snapshot, stuck in the pipeline
                for step in range(1, 5):
                    sim.set_price(EURUSD, 1.1 + step / 10000, 1.1001 + step / 10000)
                await wait_until(lambda: feed.statistics().updates == 5)  # the reader went on
                release.set()
                await wait_until(lambda: len(got) == 2)
                nursery.cancel_scope.cancel()
    assert [t.bid for t in got] == [1.1, 1.1004]
    assert feed.statistics().coalesced == 3
    assert any("'event': 'feed.backpressure'" in line for line in log_lines)


async def test_a_position_stuck_on_its_way_to_the_store_holds_up_no_confirm_or_other_close(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[Any] = []
    outage = trio.Event()  # the database, for the new position only

    async def emit(event: Any) -> None:
        events.append(event)
        if isinstance(event, PositionOpened) and event.position.deal_id == "DINEW":
            await outage.wait()

    held = SimPosition(EURUSD, "BUY", 1.0950, stop=1.0900, deal_id="DIHELD")
    with trio.fail_after(600):
        async with (
            ig_sim(markets=[SimMarket(EURUSD, 1.1, 1.1001)], positions=[held]) as sim,
            broker_for(
                sim, events=IGEvents(reconcile_interval=3600.0, poll_interval=3600.0)
            ) as broker,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(broker.run, emit)
            await wait_until(lambda: broker.events.live and len(events) == 1)
            sim.add_position(SimPosition(EURUSD, "SELL", 1.1050, stop=1.11, deal_id="DINEW"))
            await wait_until(lambda: len(events) == 2)  # DINEW's emit is now stuck
            confirmation = await broker.amend_stop("DIHELD", 1.0960, None)
            sim.set_price(EURUSD, 1.0955, 1.0956)  # DIHELD stopped out at IG
            await wait_until(lambda: len(events) == 3)
            nursery.cancel_scope.cancel()
    assert confirmation.accepted
    assert sim.requests_to("GET", "confirms") == []  # the pushed CONFIRMS was read
    assert isinstance(events[2], PositionClosed) and events[2].deal_id == "DIHELD"


async def test_lanes_keep_a_deals_order_and_refuse_beyond_their_bounds() -> None:
    done: list[str] = []
    gate = trio.Event()

    def job(name: str, wait: bool = False) -> Any:
        async def run() -> None:
            if wait:
                await gate.wait()
            done.append(name)

        return run

    lanes = KeyedLanes(max_lanes=2, per_lane=3)
    with trio.fail_after(10):
        assert not lanes.submit_nowait("A", job("early"))  # not running yet
        async with trio.open_nursery() as nursery:
            await nursery.start(lanes.run)
            assert lanes.submit_nowait("A", job("a1", wait=True))
            assert lanes.submit_nowait("A", job("a2"))
            assert lanes.submit_nowait("B", job("b1"))
            assert not lanes.submit_nowait("C", job("c1"))  # two lanes busy already
            await wait_until(lambda: done == ["b1"])  # B does not wait for A
            assert lanes.submit_nowait("A", job("a3"))
            assert not lanes.submit_nowait("A", job("a4"))  # A's backlog is full
            gate.set()
            await wait_until(lambda: len(done) == 4)
            nursery.cancel_scope.cancel()
    assert done == ["b1", "a1", "a2", "a3"]
    assert lanes.statistics().refused == 3
