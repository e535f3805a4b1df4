"""The daemon against the loopback IG server: REST amendments with confirms, the streaming
feed, a too-close stop rejected then retried, a 401 mid-run, an allowance burst and a dropped
stream — with no loosened stop and no lost amendment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from tests.adapters.ig.conftest import API_KEY, EURUSD, IDENTIFIER, PASSWORD, ig_sim, wait_until
from traild.adapters.store import open_store
from traild.config.settings import Settings
from traild.daemon.app import Daemon
from traild.testing.ig_sim import IGSim
from traild.testing.ig_sim.server import SimMarket, SimPosition


async def _until(what: str, predicate: Any, seconds: float = 15.0) -> None:
    """Wait for ``predicate``; fail naming ``what``."""
    with trio.move_on_after(seconds) as scope:
        await wait_until(predicate)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out waiting for {what}")


def _settings(sim: IGSim, tmp: Path) -> Settings:
    return Settings(
        broker={
            "kind": "ig",
            "retry_base_s": 0.05,
            "retry_max_s": 0.3,
            "ig": {
                "api_url": sim.base_url,
                "identifier": IDENTIFIER,
                "password": PASSWORD,
                "api_key": API_KEY,
                "positions_poll_s": 0.05,
                "request_timeout_s": 2.0,
                "confirm_interval_s": 0.005,
                "keepalive_ms": 200,
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.2,
                "reconcile_s": 0.5,
                "trading_allowance": 1000,
                "account_allowance": 100_000,
                "application_allowance": 100_000,
            },
        },
        feed={"kind": "ig", "epics": [EURUSD], "stale_after_s": 5.0},
        database={"url": f"sqlite+aiosqlite:///{tmp / 'traild.db'}", "poll_interval_s": 0.05},
        daemon={"state_dir": str(tmp), "heartbeat_s": 0.5},
    )


def _stops(sim: IGSim, deal: str) -> list[float]:
    return [body["stopLevel"] for d, body in sim.amendments if d == deal]


async def _walk(sim: IGSim, bids: list[float], spread: float = 0.0001) -> None:
    for bid in bids:
        sim.set_price(EURUSD, round(bid, 5), round(bid + spread, 5))
        await trio.sleep(0.03)


async def test_daemon_trails_ig_positions_through_faults(tmp_path: Path) -> None:
    market = SimMarket(EURUSD, 1.09995, 1.10005, min_stop_distance=2)
    buy = SimPosition(EURUSD, "BUY", 1.10000, stop=1.09800, limit=1.10600)
    sell = SimPosition(EURUSD, "SELL", 1.10000, stop=1.10200, limit=1.09400)
    with trio.fail_after(60):
        async with ig_sim(markets=[market], positions=[buy, sell], clock=_now) as sim:
            settings = _settings(sim, tmp_path)
            async with open_store(settings.database_url(), migrate=True):
                pass
            daemon = Daemon(settings)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.run)
                await _until(
                    "adoption",
                    lambda: daemon.supervisor is not None and len(daemon.supervisor.slots) == 2,
                )
                buy_id, sell_id = buy.deal_id, sell.deal_id
                # +10 pips for the BUY: the profit lock, with a 401 on the way
                sim.expire_tokens()
                await _walk(sim, [1.10050, 1.10080, 1.10100])
                await _until("the profit lock", lambda: 1.10010 in _stops(sim, buy_id))
                # the stream drops; prices keep coming after the reconnect
                sim.drop_streams()
                # an allowance burst: two refusals, then the amendment lands
                sim.fail_next(
                    "PUT",
                    "positions/otc",
                    403,
                    "error.public-api.exceeded-account-trading-allowance",
                    times=2,
                )
                # a too-close stop: IG's rule widened behind traild's back, then restored
                market.min_stop_distance = 50
                await _walk(sim, [1.10150, 1.10160])
                await _until(
                    "a rejection",
                    lambda: (
                        daemon.gateway is not None and daemon.gateway.statistics().rejected >= 1
                    ),
                )
                market.min_stop_distance = 2
                await _walk(sim, [1.10170, 1.10200, 1.10210])
                await _until("stage 1", lambda: 1.10080 in _stops(sim, buy_id))
                # the SELL goes the other way and is stopped out at the broker
                await _walk(sim, [1.10250])
                await _until("the SELL stop-out", lambda: any(c[0] == sell_id for c in sim.closed))
                await _until(
                    "the SELL closed in traild",
                    lambda: (
                        sell_id
                        not in {s.actor.trade.deal_id for s in daemon.supervisor.slots.values()}
                    ),
                )
                nursery.cancel_scope.cancel()
    stops = _stops(sim, buy_id)
    assert stops == sorted(stops), "a stop loosened"
    assert stops[0] == 1.10010 and stops[-1] == 1.10080
    for _, body in sim.amendments:
        assert body["limitLevel"] in (1.106, 1.094)  # the take-profit is re-sent every time
    assert sim.logins >= 2  # the 401 was answered by a fresh login
    assert sim.stream.created + sim.stream.binds >= 2  # the dropped stream was reconnected
    assert sim.stream.peak_sessions == {"SIMACC1": 1}  # PRICE and TRADE on one session
    async with open_store(settings.database_url()) as store:
        rows = {t.deal_id: t for t in await store.trades_since(None)}
        assert rows[buy_id].sl_price == 1.10080
        assert rows[sell_id].status.value == "closed"
        unfinished = await store.unfinished_amendments()
        assert unfinished == []


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
