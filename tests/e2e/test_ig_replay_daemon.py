"""The daemon with broker and feed both IG, against the loopback IG replaying real ticks over
PRICE: it ends with the same stop as ``traild simulate`` on the same ticks, and learns of the
position through the TRADE stream rather than by polling."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest
import trio

from tests.adapters.ig.conftest import API_KEY, EURUSD, IDENTIFIER, PASSWORD, ig_sim, wait_until
from tests.e2e.daemon_helpers import slice_ticks
from traild.adapters.store import open_store
from traild.backtest.simulate import SimulationRequest, simulate
from traild.config.settings import Settings
from traild.core.messages import Direction
from traild.daemon.app import Daemon
from traild.runtime.gateway import Gateway
from traild.testing.ig_sim import IGSim, SimMarket, SimPosition

START, ROWS = 38375, 400  # 2014-05-02 12:29 UTC: EUR/USD falls ~27 pips, rises at most ~10
STOP_PIPS = 15


@pytest.fixture
def ticks(tmp_path: Path, shared_data_dir: Path) -> Path:
    src = shared_data_dir / "ticks" / "EURUSD_oanda_ticks_2014-05-01_2014-05-15.csv.gz"
    return slice_ticks(src, tmp_path / "eurusd.csv", ROWS, start=START)


def _rows(path: Path) -> list[tuple[datetime, float, float]]:
    with path.open() as fh:
        return [
            (datetime.fromisoformat(r["ts_utc"]), float(r["bid"]), float(r["ask"]))
            for r in csv.DictReader(fh)
        ]


async def _settled(daemon: Daemon, gateway: Gateway, ticks: int) -> None:
    """Until the daemon has taken ``ticks`` ticks and no amendment is in flight."""
    # a tick the guard refuses is counted too, so a refusal fails the stop check, never hangs
    await wait_until(lambda: daemon.stats.ticks + daemon.stats.rejected >= ticks, step=0.0005)
    await wait_until(lambda: gateway.statistics().in_flight == 0, step=0.0005)


def _settings(sim: IGSim, tmp: Path) -> Settings:
    return Settings(
        broker={
            "kind": "ig",
            "retry_base_s": 0.05,
            "ig": {
                "api_url": sim.base_url,
                "identifier": IDENTIFIER,
                "password": PASSWORD,
                "api_key": API_KEY,
                "request_timeout_s": 2.0,
                "keepalive_ms": 200,
                "reconnect_initial_s": 0.05,
                "reconcile_s": 3600.0,
            },
        },
        feed={"kind": "ig", "epics": [EURUSD], "stale_after_s": 30.0},
        database={"url": f"sqlite+aiosqlite:///{tmp / 'traild.db'}", "poll_interval_s": 0.05},
        daemon={"state_dir": str(tmp), "heartbeat_s": 5.0},
    )


async def test_ig_daemon_on_real_ticks_ends_with_the_stop_simulate_computes(
    tmp_path: Path, ticks: Path
) -> None:
    rows = _rows(ticks)
    ts0, bid0, _ = rows[0]
    entry, stop = bid0, round(bid0 + STOP_PIPS * 0.0001, 5)
    expected = simulate(
        Settings(),
        SimulationRequest(str(ticks), EURUSD, Direction.SELL, stop=stop, entry=entry),
    )
    with trio.fail_after(180):  # generous: a loaded 2-core CI machine
        # Quoted at the first row, dated like it: the stream's snapshot may reach the daemon
        # before the first set_price, and an undated quote would be dated by today's clock.
        market = SimMarket(EURUSD, bid0, rows[0][2], timestamp_ms=int(ts0.timestamp() * 1000))
        sell = SimPosition(EURUSD, "SELL", entry, stop=stop, created=ts0)
        async with ig_sim(markets=[market], positions=[sell], clock=lambda: ts0) as sim:
            settings = _settings(sim, tmp_path)
            async with open_store(settings.database_url(), migrate=True):
                pass
            daemon = Daemon(settings)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.run)
                await wait_until(
                    lambda: daemon.supervisor is not None and len(daemon.supervisor.slots) == 1
                )
                gateway = daemon.gateway
                assert gateway is not None
                # The PRICE subscription's snapshot is the first row (the sim streams no update
                # for a price that did not change): the daemon takes it, then the rest follow.
                await wait_until(lambda: daemon.stats.ticks + daemon.stats.rejected >= 1)
                seen = daemon.stats.ticks + daemon.stats.rejected
                await wait_until(lambda: len(sim.requests_to("GET", "positions")) >= 2)
                reads = len(sim.requests_to("GET", "positions"))  # supervisor + TRADE start-up
                for ts, bid, ask in rows[1:]:
                    sim.set_price(EURUSD, bid, ask, ts=ts)
                    if sell.deal_id not in sim.positions:
                        break
                    seen += 1
                    await _settled(daemon, gateway, seen)
                nursery.cancel_scope.cancel()
    assert set(daemon.stats.by_reason) <= {"duplicate"}, daemon.stats.by_reason
    amendments = [a["to"] for a in expected["amendments"]]
    assert amendments and amendments[-1] < entry  # the slice locks in profit
    final = sim.positions[sell.deal_id].stop if sell.deal_id in sim.positions else None
    assert final == amendments[-1]
    stops = [body["stopLevel"] for _, body in sim.amendments]
    assert stops == sorted(stops, reverse=True)  # a SELL's stop only ever moves down
    assert len(sim.requests_to("GET", "positions")) == reads  # no poll while streaming
