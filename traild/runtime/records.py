"""The runtime's store writes: the audit records of the gateway's amendments, the supervisor's
own (a trade's status and method, a recalculation, the broker's real stop), and the one way
they all treat a write the database does not take in time.

None of them holds up an amendment. A write that is not durable in time stays queued in the
store and lands later (``store.degraded`` logged): the daemon goes on from memory, the broker
holds the stops. ``durable`` is that policy, used by every writer of the runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from loguru import logger

from traild.core.errors import StoreError, WriteQueued
from traild.core.messages import AmendState, Reason, StageRecalculation, TradeRecord, TradeStatus
from traild.ports import TradeStore
from traild.runtime.stop_book import AmendTarget
from traild.runtime.tasks import Background

if TYPE_CHECKING:
    from loguru import Logger


def trade_log(trade_id: int | None, deal_id: str, epic: str) -> Logger:
    """The log bound to one trade (every trade record carries the same three keys)."""
    return logger.bind(trade_id=trade_id, deal_id=deal_id, epic=epic)


async def durable(write: Awaitable[object], message: str, **fields: object) -> bool:
    """Await ``write``; one not durable in time is logged (``store.degraded`` with ``message``
    and ``fields``) and left queued in the store. False then."""
    try:
        await write
    except StoreError as exc:
        logger.bind(event="store.degraded", error=str(exc), **fields).warning(message)
        return False
    return True


class Records:
    """Writes of the supervisor's objects, some started from synchronous callbacks."""

    def __init__(self, store: TradeStore, background: Background) -> None:
        self.store = store
        self.background = background

    async def unmanage(self, trade: TradeRecord, why: str) -> None:
        """The trade is left to its broker stop: marked unmanaged, with the reason."""
        assert trade.id is not None
        trade_log(trade.id, trade.deal_id, trade.epic).bind(
            event="actor.abandoned", error=why
        ).error("trade not managed")
        await durable(
            self.store.set_status(trade.id, TradeStatus.UNMANAGED.value, why),
            "status change queued",
        )

    async def method(self, trade_id: int, method: str, reason: str | None) -> None:
        await durable(self.store.set_method(trade_id, method, reason), "method change queued")

    def method_soon(self, trade_id: int, method: str, reason: str | None) -> None:
        self.background.soon(self.method, trade_id, method, reason)

    def broker_stop_soon(self, trade_id: int, stop: float | None) -> None:
        """A drifted stop: the store says what the broker really has until the restore is
        confirmed (the same write lane as confirmations: never reordered with them)."""
        self.background.soon(self._broker_stop, trade_id, stop)

    async def _broker_stop(self, trade_id: int, stop: float | None) -> None:
        await durable(
            self.store.adopt_trade(trade_id, sl_price=stop), "broker stop queued, not yet durable"
        )

    def recalculation_soon(self, rec: StageRecalculation) -> None:
        self.background.soon(self._recalculation, rec)

    async def _recalculation(self, rec: StageRecalculation) -> None:
        await durable(
            self.store.record_recalculation(rec),
            "recalculation record queued",
            trade_id=rec.trade_id,
        )


class AmendmentRecords:
    """An amendment's audit trail: written ahead (``pending``) in the store's urgent lane before
    it is sent, then its state; queued, never waited for (protection first)."""

    def __init__(self, store: TradeStore, now: Callable[[], datetime]) -> None:
        self.store = store
        self.now = now

    async def write_ahead(self, t: AmendTarget, log: Logger) -> int | None:
        """The amendment's id (None when the store could not even allocate one)."""
        try:
            return await self.store.write_amendment(
                t.trade_id,
                t.deal_id,
                t.level,
                t.previous,
                t.reason.value,
                self.now(),
                durable=False,
            )
        except StoreError as exc:
            # Protection first: the amendment is sent anyway.
            log.bind(event="store.degraded", error=str(exc)).warning(
                "write-ahead record not queued; sending the amendment anyway"
            )
            return exc.amendment_id if isinstance(exc, WriteQueued) else None

    async def state(
        self,
        amend_id: int | None,
        state: AmendState,
        error: str | None = None,
        ref: str | None = None,
    ) -> None:
        if amend_id is not None:
            await durable(
                self.store.update_amendment(
                    amend_id, state, self.now(), broker_ref=ref, error=error, durable=False
                ),
                "amendment state queued, not yet durable",
            )

    async def confirmed(self, amend_id: int | None, t: AmendTarget, level: float) -> None:
        if amend_id is not None:
            lock = t.reason is Reason.PROFIT_LOCK
            await durable(
                self.store.confirm_amendment(amend_id, level, self.now(), lock, durable=False),
                "confirmation queued, not yet durable",
                trade_id=t.trade_id,
                deal_id=t.deal_id,
                epic=t.epic,
            )
