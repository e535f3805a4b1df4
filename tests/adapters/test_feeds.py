"""Replay and synthetic feeds: order, pacing, back-pressure, determinism, realism."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from itertools import chain, pairwise
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing

from traild.adapters.feeds import (
    BACKLOG_HIGH,
    BACKLOG_LOW,
    BACKLOG_WAIT_S,
    CHECKPOINT_EVERY,
    ReplayFeed,
    SyntheticFeed,
)
from traild.adapters.tickfiles import TickColumns, iter_ticks, load_ticks
from traild.core.conditions import session_of
from traild.core.errors import ConfigError, DataError
from traild.core.instruments import InstrumentTable
from traild.core.messages import Tick
from traild.ports import PriceFeed

START = datetime(2024, 1, 8, 0, 0, tzinfo=UTC)  # a Monday, Asian session


def columns(ms: list[int], bid: float = 1.1) -> TickColumns:
    n = len(ms)
    return TickColumns(
        np.array(ms, dtype="datetime64[ms]"),
        np.full(n, bid, np.float64),
        np.full(n, bid + 0.0001, np.float64),
    )


async def collect(feed: PriceFeed, limit: int | None = None) -> list[Tick]:
    out: list[Tick] = []
    with trio.CancelScope() as scope:

        async def emit(tick: Tick) -> None:
            out.append(tick)
            if limit is not None and len(out) >= limit:
                scope.cancel()

        await feed.run(emit)
    return out


# -- replay -----------------------------------------------------------------------------------


async def test_replay_emits_every_tick_of_a_file_in_order(synthetic_usdjpy: Path) -> None:
    path = synthetic_usdjpy
    feed = ReplayFeed([path], ["CS.D.USDJPY.MINI.IP"])
    with trio.fail_after(10):
        ticks = await collect(feed)
    assert ticks == list(iter_ticks(load_ticks(path), "CS.D.USDJPY.MINI.IP"))
    assert feed.epics() == ["CS.D.USDJPY.MINI.IP"]
    stats = feed.statistics()
    assert (stats.emitted, stats.total, stats.last_ts) == (10_000, 10_000, ticks[-1].ts)


async def test_replay_merges_files_by_time_keeping_each_files_order(
    synthetic_eurusd: Path, synthetic_usdjpy: Path
) -> None:
    eur, jpy = synthetic_eurusd, synthetic_usdjpy
    feed = ReplayFeed([eur, jpy], ["EURUSD", "USDJPY"])
    with trio.fail_after(20):
        ticks = await collect(feed)
    assert len(ticks) == 20_000
    assert all(a.ts <= b.ts for a, b in pairwise(ticks))
    for epic, path in (("EURUSD", eur), ("USDJPY", jpy)):
        assert [t for t in ticks if t.epic == epic] == list(iter_ticks(load_ticks(path), epic))


async def test_replay_breaks_time_ties_by_file_order_and_keeps_out_of_order_ticks() -> None:
    a = columns([1000, 2000, 1500, 3000], bid=1.1)  # 1500 goes back in time
    b = columns([2000, 2500], bid=1.2)
    feed = ReplayFeed([a, b], ["EURUSD", "GBPUSD"])
    with trio.fail_after(5):
        ticks = await collect(feed)
    order = [(t.epic, int(t.ts.timestamp() * 1000)) for t in ticks]
    assert order == [
        ("EURUSD", 1000),
        ("EURUSD", 2000),
        ("EURUSD", 1500),  # stays behind its predecessor: the tick guard must see it
        ("GBPUSD", 2000),
        ("GBPUSD", 2500),
        ("EURUSD", 3000),
    ]


async def test_replay_at_speed_k_sleeps_tick_gaps_divided_by_k(
    autojump_clock: trio.testing.MockClock,
) -> None:
    feed = ReplayFeed([columns([0, 10_000, 10_000, 70_000])], ["EURUSD"], speed=10)
    seen: list[float] = []

    async def emit(tick: Tick) -> None:
        seen.append(trio.current_time() - start)

    with trio.fail_after(60):
        start = trio.current_time()
        await feed.run(emit)
    assert seen == pytest.approx([0.0, 1.0, 1.0, 7.0])


async def test_replay_waits_for_a_slow_consumer(autojump_clock: trio.testing.MockClock) -> None:
    feed = ReplayFeed([columns(list(range(0, 50_000, 1000)))], ["EURUSD"])
    emitted: list[float] = []

    async def slow_emit(tick: Tick) -> None:
        emitted.append(trio.current_time())
        await trio.sleep(1.0)  # a busy actor: the feed must not run ahead

    with trio.fail_after(600):
        start = trio.current_time()
        await feed.run(slow_emit)
    assert len(emitted) == 50
    assert emitted[-1] - start == pytest.approx(49.0)


async def test_replay_at_full_speed_can_be_cancelled_from_the_consumer() -> None:
    feed = ReplayFeed([columns(list(range(100_000)))], ["EURUSD"])
    with trio.fail_after(10):
        ticks = await collect(feed, limit=1000)
    assert 1000 <= len(ticks) < 1000 + 256 + 1


async def test_an_unpaced_replay_waits_while_the_store_backlog_is_high(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Past BACKLOG_HIGH queued writes the replay stops at its next checkpoint and goes on
    once the backlog is down to BACKLOG_LOW; nothing is skipped."""
    feed = ReplayFeed([columns(list(range(1000)))], ["EURUSD"])
    backlog = [BACKLOG_HIGH + 1]
    feed.hold_while(lambda: backlog[0])
    seen: list[tuple[float, int]] = []

    async def emit(tick: Tick) -> None:
        seen.append((trio.current_time(), backlog[0]))

    async def drain() -> None:  # the store commits 200 writes every 0.1 s
        while backlog[0] > 0:
            await trio.sleep(0.1)
            backlog[0] = max(0, backlog[0] - 200)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        with trio.fail_after(60):
            await feed.run(emit)
    assert len(seen) == 1000
    assert all(b <= BACKLOG_LOW for _, b in seen)  # not one tick while the backlog was high
    assert seen[0][0] - start == pytest.approx(0.8, abs=0.01)  # 2,001 -> 401 in 8 steps
    assert feed.held_s == pytest.approx(seen[0][0] - start, abs=0.01)


async def test_a_backlog_that_never_drains_slows_an_unpaced_replay_but_never_stops_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A database outage: the replay waits BACKLOG_WAIT_S per checkpoint, then moves on."""
    feed = ReplayFeed([columns(list(range(4 * CHECKPOINT_EVERY)))], ["EURUSD"])
    feed.hold_while(lambda: 10 * BACKLOG_HIGH)
    with trio.fail_after(60):
        start = trio.current_time()
        ticks = await collect(feed)
    assert len(ticks) == 4 * CHECKPOINT_EVERY
    assert trio.current_time() - start == pytest.approx(4 * BACKLOG_WAIT_S, rel=0.02)


async def test_a_paced_replay_ignores_the_backlog(autojump_clock: trio.testing.MockClock) -> None:
    feed = ReplayFeed([columns(list(range(0, 200_000, 1000)))], ["EURUSD"], speed=1.0)
    feed.hold_while(lambda: 10 * BACKLOG_HIGH)
    with trio.fail_after(600):
        start = trio.current_time()
        ticks = await collect(feed)
    assert len(ticks) == 200
    assert trio.current_time() - start == pytest.approx(199.0, abs=0.05)
    assert feed.held_s == 0.0


def test_replay_configuration_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        ReplayFeed(["a.csv"], [], speed=-1)
    assert len(info.value.problems) == 2
    with pytest.raises(ConfigError, match="at least one tick file"):
        ReplayFeed([], [])


def test_replay_load_fails_early_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "EURUSD.csv"
    bad.write_text("ts_utc,bid,ask\n2014-05-01T00:00:00Z,1.1\n")
    feed = ReplayFeed([bad], ["EURUSD"])
    with pytest.raises(DataError, match=r"EURUSD\.csv:2"):
        feed.load()


# -- synthetic --------------------------------------------------------------------------------

EPICS = ["CS.D.EURUSD.MINI.IP", "CS.D.USDJPY.MINI.IP", "CS.D.GBPUSD.MINI.IP"]


def synthetic(seed: int = 1, n: int = 3000, **kwargs: object) -> list[Tick]:
    feed = SyntheticFeed(EPICS, seed, start=START, ticks_per_second=None, max_ticks=n, **kwargs)  # type: ignore[arg-type]
    return list(feed.ticks())


def test_synthetic_feed_is_deterministic_for_a_seed() -> None:
    assert synthetic(5) == synthetic(5)
    assert synthetic(5) != synthetic(6)


def test_synthetic_ticks_are_on_the_tick_grid_ordered_and_never_crossed() -> None:
    table = InstrumentTable()
    ticks = synthetic(2, 20_000)
    assert {t.epic for t in ticks} == set(EPICS)
    assert ticks[0].ts >= START
    assert all(a.ts <= b.ts for a, b in pairwise(ticks))
    for t in ticks:
        inst = table.resolve(t.epic)
        assert inst.to_price(inst.to_ticks(t.bid)) == t.bid
        assert inst.to_price(inst.to_ticks(t.ask)) == t.ask
        assert 0 < t.bid < t.ask


def test_synthetic_timestamps_advance_by_whole_random_milliseconds() -> None:
    ticks = [t for t in synthetic(3, 2000) if t.epic == EPICS[0]]
    gaps = {(b.ts - a.ts) // timedelta(milliseconds=1) for a, b in pairwise(ticks)}
    assert all(g >= 1 for g in gaps) and len(gaps) > 100
    assert all(t.ts.microsecond % 1000 == 0 for t in ticks)


def test_synthetic_spreads_are_wider_in_asia_and_spike_around_news() -> None:
    ticks = synthetic(4, 90_000, mean_interval_ms=3000, news_per_day=8)
    eur = [t for t in ticks if t.epic == EPICS[0]]
    assert eur[-1].ts - eur[0].ts > timedelta(hours=24)
    spreads: dict[str, list[float]] = {}
    for t in eur:
        spreads.setdefault(session_of(t.ts), []).append((t.ask - t.bid) * 1e4)
    medians = {k: statistics.median(v) for k, v in spreads.items()}
    assert medians["asian"] > 1.3 * medians["london"]
    assert max(max(v) for v in spreads.values()) > 4 * statistics.median(
        chain.from_iterable(spreads.values())
    )


def test_synthetic_volatility_follows_the_session() -> None:
    ticks = synthetic(8, 90_000, mean_interval_ms=3000, news_per_day=0)
    eur = [t for t in ticks if t.epic == EPICS[0]]
    moves: dict[str, list[float]] = {}
    for a, b in pairwise(eur):
        seconds = (b.ts - a.ts).total_seconds()
        moves.setdefault(session_of(b.ts), []).append(abs(b.bid - a.bid) / seconds**0.5)
    assert statistics.mean(moves["overlap"]) > 1.5 * statistics.mean(moves["asian"])


async def test_synthetic_feed_paces_ticks_per_second_of_wall_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    feed = SyntheticFeed(EPICS, 1, start=START, ticks_per_second=5, max_ticks=10)
    seen: list[float] = []

    async def emit(tick: Tick) -> None:
        seen.append(trio.current_time() - start)

    with trio.fail_after(60):
        start = trio.current_time()
        await feed.run(emit)
    assert seen == pytest.approx([n / 5 for n in range(10)])
    assert feed.statistics().emitted == 10


async def test_unpaced_endless_synthetic_feed_stops_when_cancelled() -> None:
    feed = SyntheticFeed(EPICS[:1], 1, start=START, ticks_per_second=None)
    with trio.fail_after(10):
        ticks = await collect(feed, limit=5000)
    assert len(ticks) >= 5000
    assert feed.epics() == EPICS[:1]


def test_synthetic_feed_needs_an_epic_and_an_aware_start() -> None:
    with pytest.raises(ConfigError):
        SyntheticFeed([], 1)
    with pytest.raises(ValueError, match="timezone"):
        SyntheticFeed(EPICS, 1, start=datetime(2024, 1, 1))


async def test_one_far_future_tick_does_not_hold_back_the_rest_of_its_file() -> None:
    day = 86_400_000
    a = columns([1000, 40 * day, 2000, 3000], bid=1.1)  # a tick 40 days ahead (issue #11)
    b = columns([1500, 2500], bid=1.2)
    with trio.fail_after(5):
        ticks = await collect(ReplayFeed([a, b], ["EURUSD", "GBPUSD"]))
    order = [(t.epic, int(t.ts.timestamp() * 1000)) for t in ticks]
    assert order == [
        ("EURUSD", 1000),
        ("EURUSD", 40 * day),  # emitted in place: the daemon's guard rejects it
        ("GBPUSD", 1500),
        ("EURUSD", 2000),
        ("GBPUSD", 2500),
        ("EURUSD", 3000),
    ]
