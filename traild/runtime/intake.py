"""The supervisor's intake: the incremental store poll and batched adoption (issue #13).

The poll reads only trade_log rows changed since the previous poll (a high-water mark on the
change sequence the database keeps), a page at a time; broker positions are matched to trades
in one read; stages of many trades are calculated with the loop let in every few dozen and
recorded in one batched write. A write the database does not take in time stays queued in the
store (``store.degraded``): adoption never waits for it and never fails on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import trio
from loguru import logger

from traild.core.calculator import CalculatedStages, MarketConditions
from traild.core.conditions import BarHistory
from traild.core.errors import BrokerError, StoreError, TraildError
from traild.core.instruments import InstrumentTable
from traild.core.messages import (
    AlertRecord,
    Position,
    PositionOpened,
    TradeRecord,
    TradeStatus,
)
from traild.ports import Broker, BrokerEvent, PositionBook, TradeStore
from traild.runtime.stages import Policy, calculate, merge_conditions, stored_stages

if TYPE_CHECKING:
    from traild.runtime.stops import StopKeeper
    from traild.runtime.trade_actor import TradeActor

BROKER_RETRY = (0.5, 30.0)  # back-off while the broker's positions cannot be read at start-up

POLL_PAGE = 500  # trade_log rows per read of a poll (the loop runs between pages)
YIELD_EVERY = 64  # adoptions between checkpoints, so a big adoption never stalls the loop
_OPEN = (TradeStatus.OPEN, TradeStatus.PENDING)


class Intake:
    """Mixed into ``Supervisor``: what it reads from the store and the broker to adopt."""

    store: TradeStore
    broker: Broker
    policy: Policy
    instruments: InstrumentTable
    histories: dict[str, BarHistory]
    now: Callable[[], datetime]
    _known: set[int]
    _filling: set[int]
    _filling_deals: dict[str, TradeRecord]
    _nursery: trio.Nursery | None
    stops: StopKeeper

    def _init_intake(self) -> None:
        self._seq = 0  # high-water mark of the trade_log changes read by the poll
        self._initial_load = True  # the first poll reads only open and pending trades
        self._broker_positions: dict[str, Position] = {}  # deal id -> as read at start-up

    if TYPE_CHECKING:  # provided by Supervisor

        def _running(self, trade_id: int) -> TradeActor | None: ...
        def _override(self, actor: TradeActor, override: str | None) -> None: ...
        async def _unmanage(self, trade: TradeRecord, why: str) -> None: ...
        async def _fill(self, trade: TradeRecord) -> None: ...
        async def on_broker_event(self, event: BrokerEvent) -> None: ...
        def _launch(
            self, trade: TradeRecord, stages: CalculatedStages, skip_current_tick: bool = False
        ) -> None: ...

    async def adopt_from_broker(self) -> None:
        """Positions at the broker that traild does not know yet become trades; the stops of
        known ones are remembered, so no actor trails from a database level the broker was
        not asked about. Retried with back-off until the broker answers (``daemon.ready``
        waits: nothing is sent before the broker's stops are known)."""
        positions = await self._broker_positions_now()
        known = await self.store.trades_by_deals([p.deal_id for p in positions])
        for position in positions:
            if position.deal_id in known:
                self._broker_positions[position.deal_id] = position
                continue
            await self.on_broker_event(PositionOpened(position, self.now()))

    async def _broker_positions_now(self) -> list[Position]:
        delay, attempt = BROKER_RETRY[0], 0
        while True:
            try:
                positions = await self.broker.open_positions()
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

    async def poll_store(self) -> None:
        """Adopt trades inserted (or re-opened) since the previous poll; apply per-trade
        overrides (``trailing_override``) changed in the database to the running ones.

        Only rows changed since the previous poll are read (a high-water mark on trade_log's
        change sequence), a page at a time; the first poll reads the open and pending trades.
        """
        while True:
            trades, top = await self.store.changed_trades(
                self._seq, POLL_PAGE, open_only=self._initial_load
            )
            await self._apply_changes(trades)
            self._seq = max(self._seq, top)
            if len(trades) < POLL_PAGE:
                self._initial_load = False
                return

    async def _apply_changes(self, trades: list[TradeRecord]) -> None:
        fresh: list[TradeRecord] = []
        for trade in trades:
            if trade.id is None or trade.status not in _OPEN:
                continue
            actor = self._running(trade.id)
            if actor is not None:
                if trade.trailing_override != actor.trade.trailing_override:
                    self._override(actor, trade.trailing_override)
            elif trade.id not in self._known:
                fresh.append(trade)
        await self._adopt_many(fresh)

    async def adopt(self, trade: TradeRecord) -> None:
        await self._adopt_many([trade])

    async def _adopt_many(self, trades: list[TradeRecord]) -> None:
        """Adopt open trades (stages calculated once, stored in one batched write) and send
        pending ones to be filled. A write not durable in time stays queued (store.degraded)."""
        ready: list[TradeRecord] = []
        for trade in trades:
            assert trade.id is not None and self._nursery is not None
            if trade.id in self._known:
                continue
            self._known.add(trade.id)
            try:
                self.instruments.resolve(trade.epic)
            except TraildError as exc:
                await self._unmanage(trade, f"unknown instrument: {exc}")
                continue
            if trade.entry_price is None:
                self._filling.add(trade.id)
                self._filling_deals[trade.deal_id] = trade
                await self._fill(trade)
                continue
            ready.append(trade)
        alerts = await self._alerts_of(ready)
        updates: list[tuple[int, dict[str, Any]]] = []
        for i, trade in enumerate(ready):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await trio.lowlevel.checkpoint()
            trade, fields = self._initial_stop(trade)
            self._book(trade)
            trade, floor = self._broker_floor(trade)
            fields.update(floor)
            assert trade.id is not None
            stages = stored_stages(self.policy, trade)
            if stages is None:
                alert = alerts.get(trade.alert_id) if trade.alert_id is not None else None
                stages, calculated = self._calculated(trade, self._conditions_from(trade, alert))
                fields.update(calculated)
            if fields:
                updates.append((trade.id, fields))
            self._launch(trade, stages)
            self._check_start_stop(trade)
        await self._store_adoptions(updates)

    def _broker_floor(self, trade: TradeRecord) -> tuple[TradeRecord, dict[str, Any]]:
        """A stop the broker already has that is tighter than the stored one (an amendment
        sent just before a crash, its confirmation not yet durable) is taken, never loosened."""
        position = self._broker_positions.get(trade.deal_id)
        stop = None if position is None else position.stop
        if stop is None or (
            trade.sl_price is not None and trade.direction.sign * (stop - trade.sl_price) <= 1e-12
        ):
            return trade, {}
        logger.bind(
            event="stop.reconciled",
            trade_id=trade.id,
            deal_id=trade.deal_id,
            epic=trade.epic,
            old=trade.sl_price,
            stop=stop,
        ).warning("the broker's stop is tighter than the stored one; taking it")
        return replace(trade, sl_price=stop), {"sl_price": stop}

    @staticmethod
    def _initial_stop(trade: TradeRecord) -> tuple[TradeRecord, dict[str, Any]]:
        """The stop a trade was handed over with is its initial stop, whatever path it came by
        (a restarted replay re-trails from it)."""
        if trade.initial_sl_price is not None or trade.sl_price is None:
            return trade, {}
        return replace(trade, initial_sl_price=trade.sl_price), {"initial_sl_price": trade.sl_price}

    def _book(self, trade: TradeRecord) -> None:
        """A broker whose book traild keeps (paper) learns a trade handed over as open."""
        book = self.broker
        if not isinstance(book, PositionBook) or book.knows(trade.deal_id):
            return
        # what traild last had confirmed (a new trade: its initial stop)
        book.add_position(trade.position(trade.sl_price))

    def _check_start_stop(self, trade: TradeRecord) -> None:
        """The broker's stop as read at start-up against the new actor's: a looser or missing
        one is restored before the first tick (``stop.drift``)."""
        position = self._broker_positions.pop(trade.deal_id, None)
        actor = None if trade.id is None else self._running(trade.id)
        if position is not None and actor is not None:
            self.stops.compare(actor, position.stop, "start")

    async def _alerts_of(self, trades: list[TradeRecord]) -> dict[int, AlertRecord]:
        wanted = [
            t.alert_id for t in trades if t.alert_id is not None and t.calculated_stages is None
        ]
        if not wanted:
            return {}
        try:
            return await self.store.get_alerts(wanted)
        except StoreError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning("alerts unreadable")
            return {}

    async def _store_adoptions(self, updates: list[tuple[int, dict[str, Any]]]) -> None:
        for start in range(0, len(updates), POLL_PAGE):
            try:
                await self.store.adopt_trades(updates[start : start + POLL_PAGE])
            except StoreError as exc:  # queued in the store; the trades are trailed meanwhile
                logger.bind(event="store.degraded", error=str(exc), trades=len(updates)).warning(
                    "adoption records queued, not yet durable"
                )

    async def _calculate_and_store(
        self, trade: TradeRecord, cond: MarketConditions | None
    ) -> CalculatedStages:
        """Stages are calculated once, at adoption, and stored with the trade (seed phase 2)."""
        assert trade.id is not None
        stages, fields = self._calculated(trade, cond)
        await self._store_adoptions([(trade.id, fields)])
        return stages

    def _calculated(
        self, trade: TradeRecord, cond: MarketConditions | None
    ) -> tuple[CalculatedStages, dict[str, Any]]:
        """The stages and the trade_log fields that record them."""
        stages = calculate(self.policy, trade, cond)
        pip = float(self.instruments.resolve(trade.epic).pip_size)
        return stages, {
            "calculated_stages": stages.to_json(),
            "trailing_calculation_method": stages.method,
            "fallback_reason": stages.fallback_reason,
            "atr_at_entry": None if stages.atr_pips is None else stages.atr_pips * pip,
            "volatility_regime": cond.volatility_regime if cond else None,
            "session_at_entry": cond.session if cond else None,
            "market_regime_at_entry": cond.market_regime if cond else None,
        }

    async def _conditions(self, trade: TradeRecord) -> MarketConditions | None:
        """The alert's conditions, completed from traild's own price history."""
        alert = None
        if trade.alert_id is not None:
            try:
                alert = await self.store.get_alert(trade.alert_id)
            except StoreError as exc:
                logger.bind(event="store.degraded", error=str(exc)).warning("alert unreadable")
        return self._conditions_from(trade, alert)

    def _conditions_from(
        self, trade: TradeRecord, alert: AlertRecord | None
    ) -> MarketConditions | None:
        history = self.histories.get(trade.epic)
        own = None
        if history is not None and history.atr is not None:
            own = history.conditions(trade.epic, self.now())
        pip = float(self.instruments.resolve(trade.epic).pip_size)
        return merge_conditions(trade.epic, alert, own, pip)
