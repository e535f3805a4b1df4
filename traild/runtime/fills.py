"""Pending trades: a (paper) broker is asked to open them, and their fill adopts them.

A trade handed over without an entry price is pending: traild submits the order, and the fill
arrives as a ``PositionOpened`` of its deal (or an ``OpenRefused``, which leaves the trade
unmanaged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from traild.core.calculator import CalculatedStages
from traild.core.errors import BrokerError
from traild.core.messages import OpenRefused, OpenRequest, Position, TradeRecord, TradeStatus
from traild.ports import Broker, TradeStore
from traild.runtime.adoption import Stager
from traild.runtime.records import Records, durable

Launch = Callable[[TradeRecord, CalculatedStages, bool], None]


class Fills:
    """The pending trades by deal id, until their fill or refusal."""

    def __init__(
        self, broker: Broker, store: TradeStore, stager: Stager, launch: Launch, records: Records
    ) -> None:
        self.broker = broker
        self.store = store
        self.stager = stager
        self.launch = launch
        self.records = records
        self._pending: dict[str, TradeRecord] = {}  # deal id -> trade awaiting its fill

    async def open(self, trade: TradeRecord) -> None:
        """Ask the (paper) broker to open the position; the fill arrives as PositionOpened.

        The order is registered before this returns, so a fill at "the first tick after
        adoption" is deterministic.
        """
        assert trade.id is not None
        self._pending[trade.deal_id] = trade
        request = OpenRequest(
            trade.epic,
            trade.direction,
            trade.size,
            trade.stop_pips,
            trade.sl_price,
            trade.limit_pips,
            trade.limit_price,
            trade.deal_id,
        )
        try:
            self.broker.submit_open(request)
        except BrokerError as exc:
            self._pending.pop(trade.deal_id, None)
            await self.records.unmanage(trade, f"broker refused to open: {exc}")

    def pending(self, deal_id: str) -> TradeRecord | None:
        return self._pending.get(deal_id)

    async def refused(self, event: OpenRefused) -> None:
        refused = self._pending.pop(event.deal_id, None)
        if refused is not None:
            await self.records.unmanage(refused, f"broker refused to open: {event.reason}")

    async def filled(self, trade: TradeRecord, position: Position, ts: datetime) -> None:
        """The fill of a pending trade: record entry, stop, limit, then stages and the actor.

        The fill tick itself is not trailed (the ladder starts with the next tick), exactly as
        ``traild simulate`` does.
        """
        assert trade.id is not None
        self._pending.pop(trade.deal_id, None)
        opened = position.opened_at or ts
        filled = replace(
            trade,
            entry_price=position.level,
            sl_price=position.stop,
            initial_sl_price=position.stop,
            limit_price=position.limit,
            opened_at=opened,
            status=TradeStatus.OPEN,
        )
        await durable(
            self.store.adopt_trade(
                trade.id,
                entry_price=position.level,
                sl_price=position.stop,
                initial_sl_price=position.stop,
                limit_price=position.limit,
                opened_at=opened,
                status=TradeStatus.OPEN.value,
            ),
            "fill queued, not yet durable",
        )
        stages = await self.stager.calculate_and_store(filled)
        self.launch(filled, stages, True)
