"""The intake: the incremental store poll and batched adoption of trades (issue #13).

The poll reads only trade_log rows changed since the previous poll (a high-water mark on the
change sequence the database keeps), a page at a time; broker positions are matched to trades
in one read; stages of many trades are calculated with the loop let in every few dozen and
recorded in one batched write. A write the database does not take in time stays queued in the
store (``store.degraded``): adoption never waits for it and never fails on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import trio

from traild.core.calculator import CalculatedStages
from traild.core.errors import StageError, TraildError
from traild.core.instruments import InstrumentTable
from traild.core.messages import Position, TradeRecord, TradeStatus
from traild.ports import Broker, PositionBook, RecalculationHistory, TradeStore
from traild.runtime.actors import Actors
from traild.runtime.adoption import PAGE, Stager
from traild.runtime.fills import Fills
from traild.runtime.records import Records, trade_log
from traild.runtime.slots import Slots
from traild.runtime.stages import Policy, stored_stages
from traild.runtime.stops import StopKeeper
from traild.runtime.trade_actor import TradeActor

POLL_PAGE = PAGE  # trade_log rows per read of a poll (the loop runs between pages)
YIELD_EVERY = 64  # adoptions between checkpoints, so a big adoption never stalls the loop
_OPEN = (TradeStatus.OPEN, TradeStatus.PENDING)

Override = Callable[[TradeActor, str | None], None]  # a per-trade kill switch changed


class Intake:
    """What the supervisor reads from the store to adopt, and how it adopts it."""

    def __init__(
        self,
        store: TradeStore,
        broker: Broker,
        instruments: InstrumentTable,
        policy: Callable[[], Policy],
        slots: Slots,
        stager: Stager,
        actors: Actors,
        fills: Fills,
        stops: StopKeeper,
        records: Records,
        override: Override,
    ) -> None:
        self.store = store
        self.broker = broker
        self._book_of: object = None  # the broker last asked whether it keeps a PositionBook
        self._keeps_book = False  # (a protocol check is slow: once per broker, not per trade)
        self.instruments = instruments
        self.policy = policy
        self.slots = slots
        self.stager = stager
        self.actors = actors
        self.fills = fills
        self.stops = stops
        self.records = records
        self.override = override
        self._known: set[int] = set()
        self._seq = 0  # high-water mark of the trade_log changes read by the poll
        self._initial_load = True  # the first poll reads only open and pending trades
        self._broker_positions: dict[str, Position] = {}  # deal id -> as read at start-up

    def remember(self, position: Position) -> None:
        """A broker position of a known trade, as read at start-up: its stop is checked
        against the actor's when the trade is adopted."""
        self._broker_positions[position.deal_id] = position

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
            actor = self.slots.running(trade.id)
            if actor is not None:
                if trade.trailing_override != actor.trade.trailing_override:
                    self.override(actor, trade.trailing_override)
            elif trade.id not in self._known:
                fresh.append(trade)
        await self.adopt_many(fresh)

    async def adopt(self, trade: TradeRecord) -> None:
        await self.adopt_many([trade])

    async def adopt_many(self, trades: list[TradeRecord]) -> None:
        """Adopt open trades (stages calculated once, stored in one batched write) and send
        pending ones to be filled. A write not durable in time stays queued (store.degraded)."""
        ready: list[TradeRecord] = []
        for trade in trades:
            assert trade.id is not None
            if trade.id in self._known:
                continue
            self._known.add(trade.id)
            try:
                self.instruments.resolve(trade.epic)
            except TraildError as exc:
                await self.records.unmanage(trade, f"unknown instrument: {exc}")
                continue
            if trade.entry_price is None:
                await self.fills.open(trade)
                continue
            ready.append(trade)
        alerts = await self.stager.alerts_of(ready)
        first = await self._first_stages(ready)
        updates: list[tuple[int, dict[str, Any]]] = []
        for i, trade in enumerate(ready):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await trio.lowlevel.checkpoint()
            trade, fields = _initial_stop(trade)
            self._book(trade)
            trade, floor = self._broker_floor(trade)
            fields.update(floor)
            assert trade.id is not None
            stages = first.get(trade.id) or stored_stages(self.policy(), trade)
            if stages is None:
                alert = alerts.get(trade.alert_id) if trade.alert_id is not None else None
                stages, calculated = self.stager.calculated(
                    trade, self.stager.conditions(trade, alert)
                )
                fields.update(calculated)
            if fields:
                updates.append((trade.id, fields))
            self.actors.launch(trade, stages)
            self._check_start_stop(trade)
        await self.stager.store_adoptions(updates)

    async def _first_stages(self, trades: list[TradeRecord]) -> dict[int, CalculatedStages]:
        """A replay restarted from its beginning (``catch_up``) re-trails each trade from its
        initial stop, so a trade recalculated before the restart starts again from the stages
        it had before its first recalculation: the recalculations come again at their bars
        (their rows are not doubled: the natural key of migration 0007)."""
        if not (self.actors.catch_up and trades and isinstance(self.store, RecalculationHistory)):
            return {}
        wanted = {t.id for t in trades}
        first: dict[int, CalculatedStages] = {}
        for rec in await self.store.recalculations_since(None):  # oldest first
            if rec.trade_id in wanted and rec.trade_id not in first:
                try:
                    first[rec.trade_id] = CalculatedStages.from_json(rec.old_stages)
                except StageError:
                    continue  # unreadable history: the stored stages, as before
        return first

    def _broker_floor(self, trade: TradeRecord) -> tuple[TradeRecord, dict[str, Any]]:
        """A stop the broker already has that is tighter than the stored one (an amendment
        sent just before a crash, its confirmation not yet durable) is taken, never loosened."""
        position = self._broker_positions.get(trade.deal_id)
        stop = None if position is None else position.stop
        if stop is None or (
            trade.sl_price is not None and trade.direction.sign * (stop - trade.sl_price) <= 1e-12
        ):
            return trade, {}
        trade_log(trade.id, trade.deal_id, trade.epic).bind(
            event="stop.reconciled", old=trade.sl_price, stop=stop
        ).warning("the broker's stop is tighter than the stored one; taking it")
        return replace(trade, sl_price=stop), {"sl_price": stop}

    def _book(self, trade: TradeRecord) -> None:
        """A broker whose book traild keeps (paper) learns a trade handed over as open."""
        broker = self.broker
        if broker is not self._book_of:
            self._book_of, self._keeps_book = broker, isinstance(broker, PositionBook)
        if not self._keeps_book:
            return
        book = cast(PositionBook, broker)
        if book.knows(trade.deal_id):
            return
        # what traild last had confirmed (a new trade: its initial stop)
        book.add_position(trade.position(trade.sl_price))

    def _check_start_stop(self, trade: TradeRecord) -> None:
        """The broker's stop as read at start-up against the new actor's: a looser or missing
        one is restored before the first tick (``stop.drift``)."""
        position = self._broker_positions.pop(trade.deal_id, None)
        actor = None if trade.id is None else self.slots.running(trade.id)
        if position is not None and actor is not None:
            self.stops.compare(actor, position.stop, "start")


def _initial_stop(trade: TradeRecord) -> tuple[TradeRecord, dict[str, Any]]:
    """The stop a trade was handed over with is its initial stop, whatever path it came by
    (a restarted replay re-trails from it)."""
    if trade.initial_sl_price is not None or trade.sl_price is None:
        return trade, {}
    return replace(trade, initial_sl_price=trade.sl_price), {"initial_sl_price": trade.sl_price}
