"""What the broker says: positions opened (a fill, or one traild did not know), amended (its
stop compared with the confirmed one), closed (the trade ends) or refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from loguru import logger

from traild.core.errors import StoreError, TraildError
from traild.core.instruments import InstrumentTable
from traild.core.messages import (
    OpenRefused,
    Position,
    PositionAmended,
    PositionClosed,
    PositionOpened,
    TradeRecord,
    TradeStatus,
)
from traild.ports import BrokerEvent, TradeStore
from traild.runtime.fills import Fills
from traild.runtime.gateway import Gateway
from traild.runtime.progress import Progress
from traild.runtime.records import trade_log
from traild.runtime.router import Router
from traild.runtime.slots import Slots
from traild.runtime.stops import StopKeeper


class BrokerEvents:
    """Handles the broker's events, one at a time, for the supervisor."""

    def __init__(
        self,
        store: TradeStore,
        instruments: InstrumentTable,
        slots: Slots,
        router: Router,
        gateway: Gateway,
        stops: StopKeeper,
        fills: Fills,
        progress: Progress,
        adopt: Callable[[TradeRecord], Awaitable[None]],
        counts: dict[str, int],
    ) -> None:
        self.store = store
        self.instruments = instruments
        self.slots = slots
        self.router = router
        self.gateway = gateway
        self.stops = stops
        self.fills = fills
        self.progress = progress
        self.adopt = adopt
        self.counts = counts
        self._adding: set[str] = set()  # broker positions whose trade_log insert is queued

    async def on_event(self, event: BrokerEvent) -> None:
        """Handle one broker event; an unexpected error costs this event only (logged), never
        the stream that delivered it nor the daemon."""
        try:
            await self._handle(event)
        except Exception as exc:
            logger.bind(
                event="broker.event_failed",
                kind=type(event).__name__,
                deal_id=_deal_of(event),
                error=f"{exc.__class__.__name__}: {exc}",
            ).exception("a broker event could not be handled")

    async def _handle(self, event: BrokerEvent) -> None:
        if isinstance(event, PositionClosed):
            await self._closed(event)
            return
        if isinstance(event, PositionAmended):
            self.stops.on_amended(event)
            return
        if isinstance(event, OpenRefused):
            await self.fills.refused(event)
            return
        position = event.position
        if self.slots.trade_of_deal(position.deal_id) is not None:
            return  # ours, already trailed (e.g. a restored paper position)
        pending = self.fills.pending(position.deal_id)
        if pending is not None:
            await self.fills.filled(pending, position, event.ts)
            return
        if position.deal_id in self._adding:
            return  # its trade_log row is queued; the store poll adopts it once it lands
        if await self.store.get_trade_by_deal(position.deal_id) is not None:
            return  # ours already
        await self._adopt_position(position, event.ts)

    async def _adopt_position(self, position: Position, ts: datetime) -> None:
        """A broker position traild did not know: recorded as a trade, then adopted."""
        try:
            self.instruments.resolve(position.epic)
        except TraildError as exc:
            logger.bind(
                event="trade.ignored", deal_id=position.deal_id, epic=position.epic, error=str(exc)
            ).warning("broker position on an unknown instrument")
            return
        self._adding.add(position.deal_id)
        record = TradeRecord(
            deal_id=position.deal_id,
            epic=position.epic,
            direction=position.direction,
            size=position.size,
            entry_price=position.level,
            sl_price=position.stop,
            initial_sl_price=position.stop,
            limit_price=position.limit,
            status=TradeStatus.OPEN,
            opened_at=position.opened_at or ts,
        )
        try:
            trade = await self.store.add_trade(record)
        except StoreError as exc:  # the row lands later; the store poll adopts it then
            logger.bind(event="store.degraded", deal_id=position.deal_id, error=str(exc)).warning(
                "broker position recorded later; adopted once the row lands"
            )
            return
        self._adding.discard(position.deal_id)
        await self.adopt(trade)

    async def _closed(self, event: PositionClosed) -> None:
        """A running trade closes from memory, its records queued without waiting for them
        (a close never holds up the tick that caused it, nor the other trades' amendments)."""
        actor = self.slots.actor_of_deal(event.deal_id)
        # From memory when traild trails it (no read on the event path during an outage).
        trade = actor.trade if actor is not None else None
        if trade is None:
            trade = await self.store.get_trade_by_deal(event.deal_id)
        if trade is None or trade.id is None or trade.entry_price is None:
            return
        slot = self.slots.close(trade.id, trade.deal_id)
        self.router.unsubscribe(trade.epic, trade.id)
        price = None if slot is None else self.progress.take(slot.actor)
        self.gateway.forget(trade.id)
        inst = self.instruments.resolve(trade.epic)
        pnl = round(
            inst.pips(
                trade.direction.sign
                * (inst.to_ticks(event.exit_price) - inst.to_ticks(trade.entry_price))
            ),
            2,
        )
        try:
            if price is not None:
                await self.store.save_progress(trade.id, price, durable=False)
            await self.store.close_trade(
                trade.id, event.exit_price, event.reason, pnl, event.ts, durable=False
            )
        except StoreError as exc:
            logger.bind(event="store.degraded", trade_id=trade.id, error=str(exc)).warning(
                "close not recorded"
            )
        self.counts["closed"] += 1
        trade_log(trade.id, trade.deal_id, trade.epic).bind(
            event="trade.closed",
            exit_price=event.exit_price,
            exit_reason=event.reason,
            gap=event.gap,
            pnl_pips=pnl,
        ).info("trade closed")


def _deal_of(event: BrokerEvent) -> str:
    return event.position.deal_id if isinstance(event, PositionOpened) else event.deal_id
