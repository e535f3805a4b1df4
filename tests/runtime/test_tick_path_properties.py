"""The daemon's tick path over random streams with injected bad ticks (hypothesis): bad
timestamps (far ahead, in the past), NaN/inf/zero prices, spikes and duplicates are dropped and
everything else reaches the actors exactly as in the clean stream."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from traild.config.settings import Settings
from traild.core.instruments import InstrumentTable
from traild.core.ladder import Ladder, LadderPlan
from traild.core.messages import Direction, Tick
from traild.core.replay import run_trade
from traild.daemon.app import Daemon

EPIC = "CS.D.EURUSD.MINI.IP"
PIP = 0.0001
T0 = datetime(2019, 1, 2, 8, tzinfo=UTC)
SETTINGS = Settings()
BAD_KINDS = ("future", "past", "non_finite", "non_positive", "spike", "duplicate")


class _Actors:
    """Stands in for the router: what the daemon publishes to the actors."""

    def __init__(self) -> None:
        self.ticks: list[Tick] = []

    async def publish(self, tick: Tick) -> None:
        self.ticks.append(tick)


def _through_daemon(stream: list[Tick]) -> tuple[list[Tick], dict[str, int]]:
    daemon = Daemon(SETTINGS)
    actors = _Actors()
    daemon.pipeline.router = actors  # type: ignore[assignment]

    async def feed() -> None:
        for tick in stream:
            await daemon.on_tick(tick)

    trio.run(feed)
    return actors.ticks, daemon.stats.by_reason


@st.composite
def clean_streams(draw: Any) -> list[Tick]:
    n = draw(st.integers(20, 120))
    steps = draw(st.lists(st.integers(-30, 30), min_size=n, max_size=n))  # tenths of a pip
    gaps = draw(st.lists(st.integers(1, 5000), min_size=n, max_size=n))  # ms
    spreads = draw(st.lists(st.integers(1, 20), min_size=n, max_size=n))
    out, ts, bid = [], T0, 1.1
    for step, gap, spread in zip(steps, gaps, spreads, strict=True):
        ts += timedelta(milliseconds=gap)
        bid = round(bid + step * PIP / 10, 5)
        out.append(Tick(EPIC, ts, bid, round(bid + spread * PIP / 10, 5)))
    return out


def _bad(kind: str, last: Tick, size: float) -> Tick:
    """A bad tick after ``last`` (the latest clean tick); ``size`` in [0, 1): its magnitude."""
    if kind == "future":
        return Tick(EPIC, last.ts + timedelta(hours=97 + size * 10_000), last.bid, last.ask)
    if kind == "past":
        return Tick(EPIC, last.ts - timedelta(milliseconds=1 + size * 10**9), last.bid, last.ask)
    if kind == "non_finite":
        return Tick(EPIC, last.ts, math.nan if size < 0.5 else last.bid, math.inf)
    if kind == "non_positive":
        return Tick(EPIC, last.ts, 0.0 if size < 0.5 else -last.bid, last.ask)
    if kind == "spike":
        jump = (600 + size * 3000) * PIP * (1 if size < 0.5 else -1)
        return Tick(EPIC, last.ts, round(last.bid + jump, 5), round(last.ask + jump, 5))
    return last  # duplicate: the same time and prices again


@st.composite
def poisoned_streams(draw: Any) -> tuple[list[Tick], list[Tick]]:
    clean = draw(clean_streams())
    poisoned: list[Tick] = [clean[0]]  # the guard needs one real tick to anchor on
    for last, tick in pairwise(clean):
        for _ in range(draw(st.integers(0, 3))):  # runs of at most three bad ticks
            kind = draw(st.sampled_from(BAD_KINDS))
            poisoned.append(_bad(kind, last, draw(st.floats(0, 0.999))))
        poisoned.append(tick)
    return clean, poisoned


def _outcome(ticks: list[Tick], direction: Direction) -> Any:
    s = SETTINGS
    inst = InstrumentTable().resolve(EPIC)
    plan = LadderPlan.compile(s.stage_config(EPIC, False), inst, s.ladder_policy(), None)
    entry = inst.to_ticks(ticks[0].ask if direction is Direction.BUY else ticks[0].bid)
    stop = entry - direction.sign * 30
    ladder = Ladder(plan, direction, entry, stop, None)
    stream = ((t.ts, inst.to_ticks(t.bid), inst.to_ticks(t.ask)) for t in ticks[1:])
    return run_trade(ladder, stream)


@settings(max_examples=50, deadline=None)
@given(poisoned_streams())
def test_bad_ticks_are_dropped_and_the_rest_reaches_the_actors_unchanged(
    streams: tuple[list[Tick], list[Tick]],
) -> None:
    clean, poisoned = streams
    want, want_rejected = _through_daemon(clean)
    got, rejected = _through_daemon(poisoned)
    assert want == clean and want_rejected == {}
    assert got == want
    assert sum(rejected.values()) == len(poisoned) - len(clean)
    for direction in (Direction.BUY, Direction.SELL):
        assert _outcome(got, direction) == _outcome(want, direction)


async def test_a_reload_retunes_the_guards_and_keeps_their_anchor(tmp_path: Path) -> None:
    config = tmp_path / "traild.toml"
    config.write_text("[conditions]\nspike_floor_pips = 40\n")
    daemon = Daemon(Settings(), str(config))
    daemon.pipeline.router = _Actors()  # type: ignore[assignment]
    await daemon.on_tick(Tick(EPIC, T0, 1.1, 1.1001))
    await daemon.on_tick(Tick(EPIC, T0 + timedelta(seconds=1), 1.106, 1.1061))  # 60 pips
    assert daemon.stats.by_reason == {"spike": 1}
    config.write_text("[conditions]\nspike_floor_pips = 80\n")
    await daemon.reload()
    await daemon.on_tick(Tick(EPIC, T0 + timedelta(seconds=2), 1.106, 1.1061))
    assert daemon.stats.by_reason == {"spike": 1}  # accepted under the new floor
    assert daemon.pipeline.guards[EPIC].last_mid == pytest.approx(1.10605)
