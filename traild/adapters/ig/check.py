"""``traild ig check``: what a real (demo) IG account tells traild.

Logs in, reads the allowances, ``/markets`` for every epic, streams PRICE and TRADE on one
Lightstreamer session (the account's only one, as the daemon) for a few seconds and lists the
open positions traild would adopt (and why any would be refused). With ``amend_deal`` it also
re-sends one position's current stop and limit unchanged (a no-op amendment, ``check_amend``)
while the TRADE stream is live, to prove the amendment path end to end. Nothing else is
changed. Failures that stop the check raise a BrokerError with one clear sentence; an epic
without a single tick is reported in ``failures`` (with its market status).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

from traild.adapters.ig.check_amend import AmendReport, ConfirmWatch, noop_amend
from traild.adapters.ig.rest import IGBroker
from traild.adapters.ig.stream import IGStreamFeed
from traild.adapters.ig.tlcp import TRADE_FIELDS, ItemUpdate, Subscription
from traild.adapters.ig.wire import MarketInfo, parse_json_field, position_flags
from traild.core.errors import BrokerError, BrokerRejected
from traild.core.messages import Tick


@dataclass
class EpicSeen:
    ticks: int = 0
    bid: float | None = None
    ask: float | None = None
    latency_ms: list[float] = field(default_factory=list)
    states: list[str] = field(default_factory=list)  # DLG_FLAG values, as first seen
    scale: str = "-"  # what stream prices were divided by (from /markets)
    bad_timestamp: str | None = None  # a TIMESTAMP that was not epoch milliseconds


@dataclass
class CheckReport:
    account_id: str
    allowances: dict[str, int | None]
    markets: list[MarketInfo]
    seen: dict[str, EpicSeen]
    trade_updates: int
    adopt: list[str]
    refused: list[tuple[str, str]]
    sessions: int = 1
    keepalive_ms: int | None = None
    amend: AmendReport | None = None
    failures: list[str] = field(default_factory=list)


async def run_check(
    broker: IGBroker, epics: Sequence[str], seconds: float, amend_deal: str | None = None
) -> CheckReport:
    """Everything but the login (the caller enters ``broker``)."""
    markets = []
    for epic in epics:
        try:
            markets.append(await broker.markets.market(epic, fresh=True))
        except BrokerRejected as exc:
            raise BrokerRejected(f"epic {epic} is not available on this account ({exc})") from exc
    run = _StreamRun(broker, epics)
    amend = await run.stream(seconds, amend_deal)
    adopt, refused = await _positions(broker)
    report = CheckReport(
        broker.account_id,
        broker.session.allowance.limits(),
        markets,
        run.seen,
        run.trade_updates,
        adopt,
        refused,
        broker.stream.counts["connects"],
        broker.stream.assigned_keepalive_ms,
        amend,
    )
    for market in markets:
        if run.seen[market.epic].ticks == 0:
            states = ", ".join(run.seen[market.epic].states) or "none"
            report.failures.append(
                f"no PRICE tick for {market.epic} in {seconds:g}s (market status "
                f"{market.status}, dealing states seen: {states})"
            )
    return report


class _StreamRun:
    """PRICE and TRADE on the broker's one session for the check's window."""

    def __init__(self, broker: IGBroker, epics: Sequence[str]) -> None:
        self.broker = broker
        self.seen = {epic: EpicSeen() for epic in epics}
        self.trade_updates = 0
        self.confirms = ConfirmWatch()
        self.trade_live = trio.Event()
        self.feed = IGStreamFeed(
            epics, broker.stream, account_id=broker.account_id, scale=broker.stream_scale
        )
        item = f"TRADE:{broker.account_id}"
        sub = Subscription("TRADE", item, TRADE_FIELDS, "DISTINCT")
        broker.stream.add(sub, self._on_trade, self._on_trade_state)

    async def stream(self, seconds: float, amend_deal: str | None) -> AmendReport | None:
        amend: AmendReport | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.feed.run, self._on_tick)
            start = trio.current_time()
            if amend_deal is not None:
                with trio.move_on_after(seconds):
                    await self.trade_live.wait()
                amend = await noop_amend(self.broker, amend_deal, self.confirms)
            await trio.sleep_until(start + seconds)
            nursery.cancel_scope.cancel()
        client = self.broker.stream
        if client.rejected:
            raise BrokerRejected(f"IG stream refused {', '.join(client.rejected)}")
        if client.counts["connects"] == 0:
            raise BrokerError(f"IG stream did not connect within {seconds:g}s")
        for epic, entry in self.seen.items():
            entry.states = self.feed.states_seen(epic)
            entry.bad_timestamp = self.feed.bad_timestamp(epic)
            scale = self.feed.scale(epic)
            if scale is not None:
                entry.scale = f"/{scale.scale}"
        return amend

    async def _on_tick(self, tick: Tick) -> None:
        entry = self.seen[tick.epic]
        entry.ticks += 1
        entry.bid, entry.ask = tick.bid, tick.ask
        entry.latency_ms.append((datetime.now(UTC) - tick.ts).total_seconds() * 1000)

    async def _on_trade(self, update: ItemUpdate) -> None:
        self.trade_updates += 1
        confirm = update.values.get("CONFIRMS")
        data = parse_json_field(confirm) if confirm else None
        if data is not None:
            self.confirms.arrived(data)

    def _on_trade_state(self, live: bool) -> None:
        if live:
            self.trade_live.set()


async def _positions(broker: IGBroker) -> tuple[list[str], list[tuple[str, str]]]:
    response = await broker.session.request("GET", "positions", version=2)
    assert response is not None
    items = response.json().get("positions", [])
    await broker.markets.load_markets({str((i.get("market") or {}).get("epic")) for i in items})
    adopt, refused = [], []
    for item in items:
        deal = str((item.get("position") or {}).get("dealId", "?"))
        epic = str((item.get("market") or {}).get("epic", "?"))
        position = broker.positions.adopt_item(item)
        if position is not None:
            adopt.append(f"{deal} {epic} {position.direction.value} stop {position.stop}")
            continue
        why = broker.positions.refusal(position_flags(item)) or "unreadable or market unknown"
        refused.append((f"{deal} {epic}", why))
    return adopt, refused
