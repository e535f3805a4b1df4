"""``traild ig check``: what a real (demo) IG account tells traild, read-only.

Logs in, reads the allowances, ``/markets`` for every epic, streams PRICE and TRADE for a few
seconds and lists the open positions traild would adopt (and why any would be refused). It
never amends anything. Any failure raises a BrokerError with one clear sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

from traild.adapters.ig.lightstreamer import LightstreamerClient
from traild.adapters.ig.rest import IGBroker
from traild.adapters.ig.stream import IGStreamFeed
from traild.adapters.ig.tlcp import TRADE_FIELDS, ItemUpdate, Subscription
from traild.adapters.ig.wire import MarketInfo, position_flags
from traild.core.errors import BrokerError, BrokerRejected
from traild.core.messages import Tick


@dataclass
class EpicSeen:
    ticks: int = 0
    bid: float | None = None
    ask: float | None = None
    latency_ms: list[float] = field(default_factory=list)


@dataclass
class CheckReport:
    account_id: str
    allowances: dict[str, int | None]
    markets: list[MarketInfo]
    seen: dict[str, EpicSeen]
    trade_updates: int
    adopt: list[str]
    refused: list[tuple[str, str]]


async def run_check(broker: IGBroker, epics: Sequence[str], seconds: float) -> CheckReport:
    """Everything but the login (the caller enters ``broker``)."""
    markets = []
    for epic in epics:
        try:
            markets.append(await broker.market(epic, fresh=True))
        except BrokerRejected as exc:
            raise BrokerRejected(f"epic {epic} is not available on this account ({exc})") from exc
    seen, trades = await _stream(broker, epics, seconds)
    adopt, refused = await _positions(broker)
    return CheckReport(
        broker.account_id,
        broker.session.allowance.limits(),
        markets,
        seen,
        trades,
        adopt,
        refused,
    )


async def _stream(
    broker: IGBroker, epics: Sequence[str], seconds: float
) -> tuple[dict[str, EpicSeen], int]:
    seen = {epic: EpicSeen() for epic in epics}
    trade_updates = 0

    async def on_tick(tick: Tick) -> None:
        entry = seen[tick.epic]
        entry.ticks += 1
        entry.bid, entry.ask = tick.bid, tick.ask
        entry.latency_ms.append((datetime.now(UTC) - tick.ts).total_seconds() * 1000)

    async def on_trade(update: ItemUpdate) -> None:
        nonlocal trade_updates
        trade_updates += 1

    options = broker.events.stream_options
    feed = IGStreamFeed(
        epics,
        broker.stream_auth,
        account_id=broker.account_id,
        scale=broker.stream_scale,
        **options,
    )
    trade = LightstreamerClient(broker.stream_auth, name="trade stream", **options)
    item = f"TRADE:{broker.account_id}"
    trade.add(Subscription("TRADE", item, TRADE_FIELDS, "DISTINCT"), on_trade)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run, on_tick)
        nursery.start_soon(trade.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    for client in (feed.client, trade):
        if client.rejected:
            raise BrokerRejected(f"IG stream refused {', '.join(client.rejected)}")
        if client.counts["connects"] == 0:
            raise BrokerError(f"IG {client.name} did not connect within {seconds:g}s")
    return seen, trade_updates


async def _positions(broker: IGBroker) -> tuple[list[str], list[tuple[str, str]]]:
    response = await broker.session.request("GET", "positions", version=2)
    assert response is not None
    items = response.json().get("positions", [])
    await broker.load_markets({str((i.get("market") or {}).get("epic")) for i in items})
    adopt, refused = [], []
    for item in items:
        deal = str((item.get("position") or {}).get("dealId", "?"))
        epic = str((item.get("market") or {}).get("epic", "?"))
        position = broker.adopt_item(item)
        if position is not None:
            adopt.append(f"{deal} {epic} {position.direction.value} stop {position.stop}")
            continue
        why = broker.refusal(position_flags(item)) or "unreadable or market unknown"
        refused.append((f"{deal} {epic}", why))
    return adopt, refused
