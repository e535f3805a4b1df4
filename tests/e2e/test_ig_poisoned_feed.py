"""A poisoned live feed (the loopback IG stream): a clock slip and bad prints cost only
themselves — no amendment from a price that never traded, real ticks after them trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from tests.adapters.ig.conftest import EURUSD, ig_sim
from tests.e2e.test_ig_daemon import _now, _settings, _stops, _until, _walk
from traild.adapters.store import open_store
from traild.daemon.app import Daemon
from traild.testing.ig_sim import IGSim
from traild.testing.ig_sim.server import SimMarket, SimPosition


def _bad_print(sim: IGSim, bid: float, ts: datetime | None = None) -> None:
    """A quote on the stream only: the broker's own market (and its stops) never saw it."""
    market = sim.markets[EURUSD]
    saved = (market.bid, market.offer, market.timestamp_ms, market.update_time)
    when = ts or datetime.now(UTC)
    market.bid, market.offer = bid, round(bid + 0.0001, 5)
    market.timestamp_ms = int(when.timestamp() * 1000)
    market.update_time = when.strftime("%H:%M:%S")
    sim.stream.publish(market)
    market.bid, market.offer, market.timestamp_ms, market.update_time = saved


async def test_a_poisoned_live_feed_moves_no_stop_and_keeps_trailing(tmp_path: Path) -> None:
    market = SimMarket(EURUSD, 1.09995, 1.10005, min_stop_distance=2)
    buy = SimPosition(EURUSD, "BUY", 1.10000, stop=1.09800, limit=1.10600)
    with trio.fail_after(60):
        async with ig_sim(markets=[market], positions=[buy], clock=_now) as sim:
            settings = _settings(sim, tmp_path)
            async with open_store(settings.database_url(), migrate=True):
                pass
            daemon = Daemon(settings)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.run)
                await _until(
                    "adoption",
                    lambda: daemon.supervisor is not None and len(daemon.supervisor.slots) == 1,
                )
                await _walk(sim, [1.10000, 1.10010, 1.10020])
                # a time-zone slip: an hour ahead of the wall clock, 20 pips up (a profit lock)
                _bad_print(sim, 1.10220, datetime.now(UTC) + timedelta(hours=1))
                for i in range(3):  # three 600-pip prints in a row (a stream sends changes)
                    _bad_print(sim, 1.16020 + i / 10000)
                _bad_print(sim, 1.11520)  # one 150-pip print: stage 3 if it were real
                await trio.sleep(0.2)
                assert _stops(sim, buy.deal_id) == []  # nothing the bad prints asked for
                # real prices after the poison are accepted and trail as usual
                await _walk(sim, [1.10050, 1.10080, 1.10120])
                await _until("the profit lock", lambda: 1.10010 in _stops(sim, buy.deal_id))
                nursery.cancel_scope.cancel()
    by_reason = {k: v for k, v in daemon.stats.by_reason.items() if k != "duplicate"}
    assert by_reason == {"future_timestamp": 1, "spike": 4}
    assert _stops(sim, buy.deal_id)[0] == 1.10010  # the first amendment: the real lock
