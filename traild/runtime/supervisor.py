"""Adopts trades, owns the actor nursery, restarts crashed actors, applies kill switches.

An actor that raises is restarted with back-off; after ``dynamic_failures_before_fixed``
crashes of a dynamic trade it is restarted on its fixed stages (``calculation_error``); past its
restart budget the trade is marked unmanaged and its last confirmed broker stop stays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime

import trio
from loguru import logger

from traild.core.calculator import (
    DYNAMIC,
    FIXED,
    CalculatedStages,
)
from traild.core.conditions import BarHistory
from traild.core.entry import EntryGate
from traild.core.errors import BrokerError, StoreError, TraildError
from traild.core.instruments import InstrumentTable
from traild.core.ladder import LadderPolicy
from traild.core.messages import (
    AmendState,
    OpenRefused,
    OpenRequest,
    Position,
    PositionAmended,
    PositionClosed,
    PositionOpened,
    StageRecalculation,
    TradeRecord,
    TradeStatus,
)
from traild.ports import Broker, BrokerEvent, TradeStore
from traild.runtime.gateway import Gateway
from traild.runtime.intake import Intake
from traild.runtime.recalc import recalculate_actors
from traild.runtime.router import Router
from traild.runtime.stages import (
    Policy,
    apply_switches,
    fixed_stages,
)
from traild.runtime.stops import StopKeeper
from traild.runtime.tasks import supervised
from traild.runtime.trade_actor import ActorPlan, QuoteCache, TradeActor


@dataclass(slots=True)
class _Slot:
    actor: TradeActor
    crashes: int = 0


class Supervisor(Intake):
    def __init__(
        self,
        policy: Policy,
        store: TradeStore,
        broker: Broker,
        gateway: Gateway,
        router: Router,
        instruments: InstrumentTable,
        histories: dict[str, BarHistory],
        now: Callable[[], datetime],
        catch_up: bool = False,
        actor_factory: Callable[..., TradeActor] = TradeActor,
    ) -> None:
        self.policy = policy
        self.catch_up = catch_up
        self.actor_factory = actor_factory
        self._dirty: dict[int, TradeActor] = {}
        self._quotes: dict[str, QuoteCache] = {}
        self._deals: dict[str, int] = {}  # deal id -> trade id of every running actor
        self._dirty_event = trio.Event()
        router.on_error = self.on_actor_error
        self.store = store
        self.broker = broker
        self.gateway = gateway
        self.router = router
        self.instruments = instruments
        self.histories = histories
        self.now = now
        self.slots: dict[int, _Slot] = {}
        self._filling: set[int] = set()
        self._filling_deals: dict[str, TradeRecord] = {}  # deal id -> trade awaiting its fill
        self._adding: set[str] = set()  # broker positions whose trade_log insert is queued
        self._known: set[int] = set()
        self._nursery: trio.Nursery | None = None
        self._init_intake()
        self.stops = StopKeeper(
            broker,
            gateway,
            self._actor_of_deal,
            lambda: self.policy.reconcile_stops_s,
            self._record_broker_stop,
        )
        self.counts = {"adopted": 0, "closed": 0, "crashed": 0, "abandoned": 0}

    # -- start-up -----------------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self.reconcile()
            await self.adopt_from_broker()
            await self.poll_store()
            nursery.start_soon(supervised, "progress", self._flush_loop)
            nursery.start_soon(supervised, "reconcile", self.stops.run)
            task_status.started()
            await trio.sleep_forever()

    async def reconcile(self) -> None:
        """Settle every non-final amendment against the broker; never re-send blindly."""
        for amendment in await self.store.unfinished_amendments():
            try:
                position = await self.broker.get_position(amendment.deal_id)
            except BrokerError as exc:
                logger.bind(event="stop.failed", deal_id=amendment.deal_id, error=str(exc)).warning(
                    "cannot reconcile amendment now"
                )
                continue
            applied = (
                position is not None
                and position.stop is not None
                and abs(position.stop - amendment.requested_level) < 1e-9
            )
            if applied and position is not None and position.stop is not None:
                await self._durable(
                    "reconciled confirmation",
                    self.store.confirm_amendment(
                        amendment.id, position.stop, self.now(), amendment.reason == "profit_lock"
                    ),
                )
                logger.bind(
                    event="stop.confirmed",
                    trade_id=amendment.trade_id,
                    deal_id=amendment.deal_id,
                    epic=position.epic,
                    stop=position.stop,
                    reason=amendment.reason,
                    reconciled=True,
                ).info("amendment reconciled")
            else:
                await self._durable(
                    "reconciled failure",
                    self.store.update_amendment(
                        amendment.id,
                        AmendState.FAILED,
                        self.now(),
                        error="not applied at the broker (recovery)",
                    ),
                )

    def _override(self, actor: TradeActor, override: str | None) -> None:
        """The per-trade kill switch: ``fixed`` stages, or ``off`` (no amendments at all)."""
        actor.trade = replace(actor.trade, trailing_override=override)
        stages = apply_switches(self.policy, actor.trade, actor.plan.stages)
        actor.log.bind(
            event="killswitch.engaged" if override else "killswitch.released",
            switch="trade",
            override=override,
        ).warning("per-trade override")
        if stages is not actor.plan.stages:
            actor.log.bind(
                event="stages.fallback",
                reason=stages.fallback_reason,
                stages=stages.stages.as_dict(),
            ).warning("trade moves to fixed stages")
            self._record_method_soon(actor.trade_id, FIXED, stages.fallback_reason)
            actor.replan(ActorPlan(stages, actor.plan.policy))
        if override == "off":
            self.gateway.forget(actor.trade_id)

    def _running(self, trade_id: int) -> TradeActor | None:
        slot = self.slots.get(trade_id)
        return None if slot is None else slot.actor

    def _record_broker_stop(self, trade_id: int, stop: float | None) -> None:
        """A drifted stop: the store says what the broker really has until the restore is
        confirmed (the same write lane as confirmations: never reordered with them)."""
        if self._nursery is not None:
            self._nursery.start_soon(self._durable_soon, trade_id, stop)

    async def _durable_soon(self, trade_id: int, stop: float | None) -> None:
        await self._durable("broker stop", self.store.adopt_trade(trade_id, sl_price=stop))

    def _actor_of_deal(self, deal_id: str) -> TradeActor | None:
        trade_id = self._deals.get(deal_id)
        return None if trade_id is None or trade_id in self._filling else self._running(trade_id)

    def _record_method_soon(self, trade_id: int, method: str, reason: str | None) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._record_method, trade_id, method, reason)

    # -- adoption (polling and batched adoption: runtime/intake.py) ---------------------------
    async def _fill(self, trade: TradeRecord) -> None:
        """Ask the (paper) broker to open the position; the fill arrives as PositionOpened.

        The order is registered before this returns, so a fill at "the first tick after
        adoption" is deterministic.
        """
        assert trade.id is not None
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
            self._filling.discard(trade.id)
            self._filling_deals.pop(trade.deal_id, None)
            await self._unmanage(trade, f"broker refused to open: {exc}")

    async def _adopt_fill(self, trade: TradeRecord, position: Position, ts: datetime) -> None:
        """The fill of a pending trade: record entry, stop, limit, then stages and the actor.

        The fill tick itself is not trailed (the ladder starts with the next tick), exactly as
        ``traild simulate`` does.
        """
        assert trade.id is not None
        self._filling.discard(trade.id)
        self._filling_deals.pop(trade.deal_id, None)
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
        await self._durable(
            "fill",
            self.store.adopt_trade(
                trade.id,
                entry_price=position.level,
                sl_price=position.stop,
                initial_sl_price=position.stop,
                limit_price=position.limit,
                opened_at=opened,
                status=TradeStatus.OPEN.value,
            ),
        )
        stages = await self._calculate_and_store(filled, await self._conditions(filled))
        self._launch(filled, stages, skip_current_tick=True)

    def _launch(
        self, trade: TradeRecord, stages: CalculatedStages, skip_current_tick: bool = False
    ) -> None:
        """Kill switches applied, the adoption logged, the actor started."""
        stages = apply_switches(self.policy, trade, stages)
        self.counts["adopted"] += 1
        logger.bind(
            event="trade.adopted",
            trade_id=trade.id,
            deal_id=trade.deal_id,
            epic=trade.epic,
            method=stages.method,
            direction=trade.direction.value,
            entry=trade.entry_price,
            stop=trade.sl_price,
            limit=trade.limit_price,
        ).info("trade adopted")
        plan = ActorPlan(stages, self._ladder_policy(trade.epic))
        self._start(trade, plan, skip_current_tick)

    def _ladder_policy(self, epic: str) -> LadderPolicy:
        distance = self.policy.min_distance(epic)
        return replace(self.policy.ladder, min_stop_distance_pips=distance)

    # -- actors -------------------------------------------------------------------------------
    def _start(self, trade: TradeRecord, plan: ActorPlan, skip_current_tick: bool = False) -> None:
        assert trade.id is not None
        floor = None
        if self.catch_up and not skip_current_tick and trade.initial_sl_price is not None:
            # A replay restarted from its beginning: re-trail from the initial stop so the
            # (restored) paper broker sees the same stops at the same ticks as before.
            floor = trade.sl_price
            trade = replace(trade, sl_price=trade.initial_sl_price, best_price=None)
        actor = self._make_actor(trade, plan, floor)
        if skip_current_tick:
            actor.gate.open_now()  # a fill: the router skips the fill tick, then every tick counts
        elif self.catch_up:  # restored into a replay from its start: as the paper book does
            actor.gate = EntryGate(trade.opened_at, skip_entry_tick=True)
        self.slots[actor.trade_id] = _Slot(actor)
        self._deals[trade.deal_id] = actor.trade_id
        self.router.subscribe(trade.epic, actor.trade_id, actor, skip_current_tick)

    def _make_actor(self, trade: TradeRecord, plan: ActorPlan, floor: float | None) -> TradeActor:
        quotes = self._quotes.get(trade.epic)
        if quotes is None:
            quotes = self._quotes[trade.epic] = QuoteCache(self.instruments.resolve(trade.epic))
        return self.actor_factory(
            trade,
            quotes.inst,
            plan,
            self.gateway,
            self._progress_due,
            floor,
            quotes,
        )

    def on_actor_error(self, trade_id: int, exc: Exception) -> None:
        """The router's report of an actor that raised (it is already unsubscribed)."""
        slot = self.slots.get(trade_id)
        if slot is None or self._nursery is None:
            return
        slot.crashes += 1
        self.counts["crashed"] += 1
        slot.actor.log.bind(
            event="actor.crashed", crashes=slot.crashes, error=f"{exc.__class__.__name__}: {exc}"
        ).error("actor crashed")
        self._nursery.start_soon(self._restart, slot)

    async def _restart(self, slot: _Slot) -> None:
        """Restart with back-off from the actor's last state; fixed stages after repeated
        failures of dynamic ones; past the budget the trade is abandoned."""
        old = slot.actor
        if slot.crashes > self.policy.restart_budget:
            await self._abandon(old)
            return
        await trio.sleep(
            min(
                self.policy.restart_backoff_max,
                self.policy.restart_backoff * 2 ** (slot.crashes - 1),
            )
        )
        if self.slots.get(old.trade_id) is not slot:
            return  # closed meanwhile
        plan = old.current_plan  # a recalculation not yet applied included
        if plan.stages.method == DYNAMIC and (
            slot.crashes >= self.policy.dynamic_failures_before_fixed
        ):
            fixed = fixed_stages(self.policy, old.trade, "calculation_error", plan.stages.atr_pips)
            plan = ActorPlan(fixed, plan.policy)
            old.log.bind(
                event="stages.fallback", reason="calculation_error", stages=fixed.stages.as_dict()
            ).warning("dynamic stages failed repeatedly; trailing on fixed stages")
            await self._record_method(old.trade_id, FIXED, "calculation_error")
        trade = replace(old.trade, best_price=old.best_price)
        new = self._make_actor(trade, plan, old.confirmed_floor)
        new.gate = old.gate
        old.successor = new  # answers still in flight for the old actor reach the new one
        slot.actor = new
        self.router.subscribe(trade.epic, new.trade_id, new)
        new.log.bind(event="actor.restarted", crashes=slot.crashes, method=plan.stages.method).info(
            "actor restarted"
        )

    # -- progress (best prices, written in the background) --------------------------------
    def _progress_due(self, actor: TradeActor) -> None:
        self._dirty[actor.trade_id] = actor
        self._dirty_event.set()

    async def _flush_loop(self) -> None:
        """Best prices that moved are written together, at most every ``persist_every_s``
        (trio time): a best price is never left unsaved because the market stopped making
        new ones, and a busy market costs one batched write per period."""
        while True:
            await self._dirty_event.wait()
            self._dirty_event = trio.Event()
            await self.flush_progress()
            await trio.sleep(self.policy.persist_every_s)

    async def flush_progress(self, everything: bool = False) -> None:
        """Write due best prices (all of them when ``everything``) in one batched write."""
        actors = (
            [s.actor for s in self.slots.values()] if everything else list(self._dirty.values())
        )
        self._dirty.clear()
        prices = [(a.trade_id, p) for a in actors if (p := a.take_progress()) is not None]
        if not prices:
            return
        try:
            await self.store.save_progress_many(prices)
        except StoreError as exc:  # queued in the store; the broker stop is the protection
            logger.bind(event="store.degraded", error=str(exc), trades=len(prices)).warning(
                "best prices queued"
            )

    async def _durable(self, what: str, write: Awaitable[None]) -> None:
        """Await a write; one that is not durable in time stays queued in the store and lands
        later (``store.degraded``): the daemon goes on from memory, the broker holds the stops."""
        try:
            await write
        except StoreError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning(
                "{} queued, not yet durable", what
            )

    async def _record_method(self, trade_id: int, method: str, reason: str | None) -> None:
        try:
            await self.store.set_method(trade_id, method, reason)
        except StoreError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning("method change queued")

    async def _abandon(self, actor: TradeActor) -> None:
        self.counts["abandoned"] += 1
        self.gateway.forget(actor.trade_id)
        self.slots.pop(actor.trade_id, None)
        actor.log.bind(event="actor.abandoned", stop=actor.trade.sl_price).error(
            "restart budget exhausted; trade unmanaged, its broker stop stays"
        )
        await self._unmanage(actor.trade, "restart budget exhausted")

    async def _unmanage(self, trade: TradeRecord, why: str) -> None:
        assert trade.id is not None
        logger.bind(
            event="actor.abandoned",
            trade_id=trade.id,
            deal_id=trade.deal_id,
            epic=trade.epic,
            error=why,
        ).error("trade not managed")
        try:
            await self.store.set_status(trade.id, TradeStatus.UNMANAGED.value, why)
        except StoreError as exc:
            logger.bind(event="store.degraded", error=str(exc)).warning("status change queued")

    # -- broker events ------------------------------------------------------------------------
    async def on_broker_event(self, event: BrokerEvent) -> None:
        """Handle one broker event; an unexpected error costs this event only (logged), never
        the stream that delivered it nor the daemon."""
        try:
            await self._on_broker_event(event)
        except Exception as exc:
            logger.bind(
                event="broker.event_failed",
                kind=type(event).__name__,
                deal_id=_deal_of(event),
                error=f"{exc.__class__.__name__}: {exc}",
            ).exception("a broker event could not be handled")

    async def _on_broker_event(self, event: BrokerEvent) -> None:
        if isinstance(event, PositionClosed):
            await self._closed(event)
            return
        if isinstance(event, PositionAmended):
            self.stops.on_amended(event)
            return
        if isinstance(event, OpenRefused):
            refused = self._filling_deals.pop(event.deal_id, None)
            if refused is not None and refused.id in self._filling:
                self._filling.discard(refused.id)
                await self._unmanage(refused, f"broker refused to open: {event.reason}")
            return
        position = event.position
        running = self._deals.get(position.deal_id)
        if running is not None and running not in self._filling:
            return  # ours, already trailed (e.g. a restored paper position)
        filling = self._filling_deals.get(position.deal_id)
        if filling is not None and filling.id in self._filling:
            await self._adopt_fill(filling, position, event.ts)
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
        running = self._deals.get(event.deal_id)
        slot = self.slots.get(running) if running is not None else None
        # From memory when traild trails it (no read on the event path during an outage).
        trade = slot.actor.trade if slot is not None else None
        if trade is None:
            trade = await self.store.get_trade_by_deal(event.deal_id)
        if trade is None or trade.id is None or trade.entry_price is None:
            return
        slot = self.slots.pop(trade.id, None)
        self._deals.pop(trade.deal_id, None)
        self.router.unsubscribe(trade.epic, trade.id)
        price = None
        if slot is not None:
            self._dirty.pop(trade.id, None)
            price = slot.actor.take_progress()
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
        logger.bind(
            event="trade.closed",
            trade_id=trade.id,
            deal_id=trade.deal_id,
            epic=trade.epic,
            exit_price=event.exit_price,
            exit_reason=event.reason,
            gap=event.gap,
            pnl_pips=pnl,
        ).info("trade closed")

    # -- real-time recalculation ------------------------------------------------------------
    def on_bar_closed(self, epic: str) -> None:
        """A bar of ``epic`` closed: recalculate its trades whose regime shifted (SPEC §3).
        Nothing while the global halt is on (the per-trade switches are checked per actor)."""
        history = self.histories.get(epic)
        if not self.policy.realtime_recalc or self.gateway.halted or history is None:
            return
        if self._nursery is None:
            return
        now = self.now()
        actors = [s.actor for s in self.slots.values() if s.actor.trade.epic == epic]
        if not actors:
            return
        own = history.conditions(epic, now)
        for rec in recalculate_actors(self.policy, actors, own, now):
            self.counts["recalculated"] = self.counts.get("recalculated", 0) + 1
            self._nursery.start_soon(self._record_recalculation, rec)

    async def _record_recalculation(self, rec: StageRecalculation) -> None:
        try:
            await self.store.record_recalculation(rec)
        except StoreError as exc:
            logger.bind(event="store.degraded", trade_id=rec.trade_id, error=str(exc)).warning(
                "recalculation record queued"
            )

    # -- reload -------------------------------------------------------------------------------
    def apply_policy(self, policy: Policy) -> None:
        """A reloaded configuration: every actor switches before its next tick."""
        self.policy = policy
        for slot in self.slots.values():
            actor = slot.actor
            stages = actor.plan.stages
            switched = apply_switches(self.policy, actor.trade, stages)
            if switched is not stages:
                actor.log.bind(
                    event="stages.fallback",
                    reason=switched.fallback_reason,
                    stages=switched.stages.as_dict(),
                ).warning("kill switch: trade moves to fixed stages")
                self._record_method_soon(actor.trade_id, FIXED, switched.fallback_reason)
            elif stages.method == FIXED:
                switched = replace(
                    stages, stages=policy.fixed_stages(actor.trade.epic, actor.trade.is_scalp_trade)
                )
            actor.replan(ActorPlan(switched, self._ladder_policy(actor.trade.epic)))


def _deal_of(event: BrokerEvent) -> str:
    return event.position.deal_id if isinstance(event, PositionOpened) else event.deal_id
