"""Start-up against the broker: amendments left unfinished by the previous run are settled
by reading the position (never re-sent blindly), and the broker's positions are read, retried
with back-off until the broker answers (nothing is sent before its stops are known)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import trio
from loguru import logger

from traild.core.errors import BrokerError
from traild.core.messages import AmendState, Position
from traild.ports import Broker, TradeStore
from traild.runtime.records import durable, trade_log

BROKER_RETRY = (0.5, 30.0)  # back-off while the broker's positions cannot be read at start-up


async def reconcile_amendments(
    store: TradeStore, broker: Broker, now: Callable[[], datetime]
) -> None:
    """Settle every non-final amendment against the broker; never re-send blindly."""
    for amendment in await store.unfinished_amendments():
        try:
            position = await broker.get_position(amendment.deal_id)
        except BrokerError as exc:
            logger.bind(event="stop.failed", deal_id=amendment.deal_id, error=str(exc)).warning(
                "cannot reconcile amendment now"
            )
            continue
        stop = None if position is None else position.stop
        if (
            position is not None
            and stop is not None
            and abs(stop - amendment.requested_level) < 1e-9
        ):
            profit_lock = amendment.reason == "profit_lock"
            await durable(
                store.confirm_amendment(amendment.id, stop, now(), profit_lock),
                "reconciled confirmation queued, not yet durable",
            )
            trade_log(amendment.trade_id, amendment.deal_id, position.epic).bind(
                event="stop.confirmed", stop=stop, reason=amendment.reason, reconciled=True
            ).info("amendment reconciled")
        else:
            await durable(
                store.update_amendment(
                    amendment.id,
                    AmendState.FAILED,
                    now(),
                    error="not applied at the broker (recovery)",
                ),
                "reconciled failure queued, not yet durable",
            )


async def broker_positions(broker: Broker) -> list[Position]:
    """The broker's open positions, asked again with back-off until it answers."""
    delay, attempt = BROKER_RETRY[0], 0
    while True:
        try:
            positions = await broker.open_positions()
        except BrokerError as exc:
            attempt += 1
            logger.bind(
                event="broker.unavailable", error=str(exc), attempt=attempt, retry_in=delay
            ).warning("cannot list the broker's positions; start-up waits for them")
            await trio.sleep(delay)
            delay = min(delay * 2, BROKER_RETRY[1])
            continue
        if attempt:
            logger.bind(event="broker.recovered", attempts=attempt).info(
                "the broker's positions are known"
            )
        return positions
