"""Rejected ticks are logged at a bounded rate: at most ``burst`` WARNINGs per reason per
window of the trio clock; the rest are counted, carried by the next record of that reason
(``unlogged``) and totalled in the heartbeat."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from loguru import logger

from traild.config.settings import Settings
from traild.core.instruments import InstrumentTable
from traild.core.messages import Tick
from traild.runtime.health import Health, HealthTimes
from traild.runtime.pipeline import RejectLog, TickPipeline

EPIC = "CS.D.EURUSD.MINI.IP"
T0 = datetime(2019, 1, 2, 8, tzinfo=UTC)


@pytest.fixture
def records() -> Iterator[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    handler = logger.add(
        lambda m: out.append({**m.record["extra"], "level": m.record["level"].name}),
        level="DEBUG",
    )
    yield out
    logger.remove(handler)


def _rejected(records: list[dict[str, Any]], level: str = "WARNING") -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == "tick.rejected" and r["level"] == level]


async def test_a_flood_of_one_reason_is_logged_a_burst_per_window_and_the_rest_counted(
    mock_clock: trio.testing.MockClock, records: list[dict[str, Any]]
) -> None:
    log = RejectLog(burst=3, window_s=60.0)
    tick = Tick(EPIC, T0, 1.1, 1.1001)
    for _ in range(10):
        log.log(tick, "spike")
    log.log(tick, "future_timestamp")  # another reason has its own budget
    assert [r["reason"] for r in _rejected(records)] == ["spike"] * 3 + ["future_timestamp"]
    assert log.unlogged == 7
    mock_clock.jump(59.9)
    log.log(tick, "spike")  # still the same window
    assert len(_rejected(records)) == 4 and log.unlogged == 8
    mock_clock.jump(0.1)
    log.log(tick, "spike")  # a new window: the held records are reported with the next one
    last = _rejected(records)[-1]
    assert last["reason"] == "spike" and last["unlogged"] == 8
    log.log(tick, "spike")
    assert "unlogged" not in _rejected(records)[-1]  # reported once
    assert log.unlogged == 8  # the total since start, for the heartbeat


async def test_duplicates_stay_at_debug_and_are_not_limited(
    mock_clock: trio.testing.MockClock, records: list[dict[str, Any]]
) -> None:
    log = RejectLog(burst=1, window_s=60.0)
    for _ in range(5):
        log.log(Tick(EPIC, T0, 1.1, 1.1001), "duplicate")
    assert len(_rejected(records, "DEBUG")) == 5 and not _rejected(records)
    assert log.unlogged == 0


async def test_the_pipeline_counts_every_rejected_tick_and_the_heartbeat_reports_the_unlogged(
    mock_clock: trio.testing.MockClock, records: list[dict[str, Any]]
) -> None:
    settings = Settings()
    pipeline = TickPipeline(InstrumentTable(), settings.guard_params, settings.condition_params)
    published: list[Tick] = []
    pipeline.router = SimpleNamespace(publish=_append(published))  # type: ignore[assignment]
    await pipeline.on_tick(Tick(EPIC, T0, 1.1, 1.1001))
    flood = 500
    for i in range(flood):
        await pipeline.on_tick(Tick(EPIC, T0 + timedelta(milliseconds=i + 1), math.nan, 1.1))
    assert len(published) == 1
    assert pipeline.stats.rejected == flood and pipeline.stats.by_reason == {"non_finite": flood}
    logged = len(_rejected(records))
    assert logged == pipeline.rejects.burst
    assert pipeline.rejects.unlogged == flood - logged
    health = Health(
        pipeline,
        lambda: HealthTimes(10.0, 1.0, 30.0),
        lambda: False,
        lambda: None,
        SimpleNamespace(status=lambda text: True),  # type: ignore[arg-type]
    )
    health.gateway = SimpleNamespace(  # type: ignore[assignment]
        statistics=lambda: SimpleNamespace(
            sent=0, confirmed=0, rejected=0, failed=0, rate_limited=0, queued=0
        )
    )
    pipeline.supervisor = SimpleNamespace(slots={}, counts={})  # type: ignore[assignment]
    pipeline.router = None
    health.heartbeat(object())  # type: ignore[arg-type]
    beat = next(r for r in records if r.get("event") == "heartbeat")
    assert beat["ticks_rejected"] == flood
    assert beat["ticks_rejected_unlogged"] == flood - logged


def _append(out: list[Tick]) -> Any:
    async def publish(tick: Tick) -> None:
        out.append(tick)

    return publish
