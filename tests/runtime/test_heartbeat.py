"""The heartbeat's rates (issue 24: the first one reported ``ticks_per_s: 0.0``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import trio
from loguru import logger

from traild.config.settings import Settings
from traild.daemon.app import Daemon


async def test_the_first_heartbeat_rates_the_ticks_since_the_loop_started(
    autojump_clock: trio.abc.Clock, tmp_path: Any
) -> None:
    settings = Settings(daemon={"state_dir": str(tmp_path), "heartbeat_s": 10.0})
    daemon = Daemon(settings)
    confirmed = {"n": 0}
    daemon.health.gateway = SimpleNamespace(  # type: ignore[assignment]
        statistics=lambda: SimpleNamespace(
            sent=0, confirmed=confirmed["n"], rejected=0, failed=0, rate_limited=0, queued=0
        )
    )
    daemon.pipeline.supervisor = SimpleNamespace(slots={}, counts={})  # type: ignore[assignment]
    beats: list[dict[str, Any]] = []
    handler = logger.add(
        lambda m: (
            beats.append(m.record["extra"])
            if m.record["extra"].get("event") == "heartbeat"
            else None
        )
    )
    try:
        with trio.fail_after(100):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.health.run, object())
                await trio.sleep(1)
                daemon.stats.ticks, confirmed["n"] = 199_744, 30  # a flood before the first beat
                while not beats:  # noqa: ASYNC110 - the loop offers no event
                    await trio.sleep(1)
                daemon.stats.ticks += 1_000
                while len(beats) < 2:  # noqa: ASYNC110
                    await trio.sleep(1)
                nursery.cancel_scope.cancel()
    finally:
        logger.remove(handler)
    first, second = beats[:2]
    assert first["ticks"] == 199_744
    assert first["ticks_per_s"] == 19_974.4  # over the 10 s since the loop started
    assert first["amend_confirmed_per_min"] == 180.0
    assert second["ticks_per_s"] == 100.0
