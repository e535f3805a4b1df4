"""Starting the trades' actors, and the restart policy for the ones that crash.

An actor that raises is restarted with back-off from its last state; after
``dynamic_failures_before_fixed`` crashes of a dynamic trade it is restarted on its fixed
stages (``calculation_error``); past its restart budget the trade is marked unmanaged and its
last confirmed broker stop stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import trio

from traild.core.calculator import DYNAMIC, FIXED, CalculatedStages
from traild.core.entry import EntryGate
from traild.core.instruments import InstrumentTable
from traild.core.ladder import LadderPolicy
from traild.core.messages import TradeRecord
from traild.runtime.gateway import Gateway
from traild.runtime.records import Records, trade_log
from traild.runtime.router import Router
from traild.runtime.slots import Slot, Slots
from traild.runtime.stages import Policy, apply_switches, fixed_stages
from traild.runtime.tasks import Background
from traild.runtime.trade_actor import ActorPlan, QuoteCache, TradeActor


def ladder_policy(policy: Policy, epic: str) -> LadderPolicy:
    """The account's ladder policy with the epic's minimum stop distance."""
    return replace(policy.ladder, min_stop_distance_pips=policy.min_distance(epic))


class Actors:
    """Starts actors into ``slots`` and the router; restarts or abandons crashed ones."""

    def __init__(
        self,
        slots: Slots,
        router: Router,
        gateway: Gateway,
        instruments: InstrumentTable,
        policy: Callable[[], Policy],
        background: Background,
        records: Records,
        on_progress: Callable[[TradeActor], None],
        counts: dict[str, int],
        catch_up: bool,
        factory: Callable[..., TradeActor],
    ) -> None:
        self.slots = slots
        self.router = router
        self.gateway = gateway
        self.instruments = instruments
        self.policy = policy
        self.background = background
        self.records = records
        self.on_progress = on_progress
        self.counts = counts
        self.catch_up = catch_up
        self.factory = factory
        self._quotes: dict[str, QuoteCache] = {}

    def launch(
        self, trade: TradeRecord, stages: CalculatedStages, skip_current_tick: bool = False
    ) -> None:
        """Kill switches applied, the adoption logged, the actor started."""
        policy = self.policy()
        stages = apply_switches(policy, trade, stages)
        self.counts["adopted"] += 1
        trade_log(trade.id, trade.deal_id, trade.epic).bind(
            event="trade.adopted",
            method=stages.method,
            direction=trade.direction.value,
            entry=trade.entry_price,
            stop=trade.sl_price,
            limit=trade.limit_price,
        ).info("trade adopted")
        plan = ActorPlan(stages, ladder_policy(policy, trade.epic))
        self._start(trade, plan, skip_current_tick)

    def _start(self, trade: TradeRecord, plan: ActorPlan, skip_current_tick: bool) -> None:
        assert trade.id is not None
        floor = None
        if self.catch_up and not skip_current_tick and trade.initial_sl_price is not None:
            # A replay restarted from its beginning: re-trail from the initial stop so the
            # (restored) paper broker sees the same stops at the same ticks as before.
            floor = trade.sl_price
            trade = replace(trade, sl_price=trade.initial_sl_price, best_price=None)
        actor = self._make(trade, plan, floor)
        if skip_current_tick:
            actor.gate.open_now()  # a fill: the router skips the fill tick, then every tick counts
        elif self.catch_up:  # restored into a replay from its start: as the paper book does
            actor.gate = EntryGate(trade.opened_at, skip_entry_tick=True)
        self.slots.add(actor)
        self.router.subscribe(trade.epic, actor.trade_id, actor, skip_current_tick)

    def _make(self, trade: TradeRecord, plan: ActorPlan, floor: float | None) -> TradeActor:
        quotes = self._quotes.get(trade.epic)
        if quotes is None:
            quotes = self._quotes[trade.epic] = QuoteCache(self.instruments.resolve(trade.epic))
        return self.factory(trade, quotes.inst, plan, self.gateway, self.on_progress, floor, quotes)

    def on_error(self, trade_id: int, exc: Exception) -> None:
        """The router's report of an actor that raised (it is already unsubscribed)."""
        slot = self.slots.get(trade_id)
        if slot is None or not self.background.open:
            return
        slot.crashes += 1
        self.counts["crashed"] += 1
        slot.actor.log.bind(
            event="actor.crashed", crashes=slot.crashes, error=f"{exc.__class__.__name__}: {exc}"
        ).error("actor crashed")
        self.background.soon(self._restart, slot)

    async def _restart(self, slot: Slot) -> None:
        """Restart with back-off from the actor's last state; fixed stages after repeated
        failures of dynamic ones; past the budget the trade is abandoned."""
        old = slot.actor
        policy = self.policy()
        if slot.crashes > policy.restart_budget:
            await self._abandon(old)
            return
        await trio.sleep(
            min(policy.restart_backoff_max, policy.restart_backoff * 2 ** (slot.crashes - 1))
        )
        if self.slots.get(old.trade_id) is not slot:
            return  # closed meanwhile
        policy = self.policy()  # a reload may have come during the back-off
        plan = old.current_plan  # a recalculation not yet applied included
        if plan.stages.method == DYNAMIC and (slot.crashes >= policy.dynamic_failures_before_fixed):
            fixed = fixed_stages(policy, old.trade, "calculation_error", plan.stages.atr_pips)
            plan = ActorPlan(fixed, plan.policy)
            old.log.bind(
                event="stages.fallback", reason="calculation_error", stages=fixed.stages.as_dict()
            ).warning("dynamic stages failed repeatedly; trailing on fixed stages")
            await self.records.method(old.trade_id, FIXED, "calculation_error")
        trade = replace(old.trade, best_price=old.best_price)
        new = self._make(trade, plan, old.confirmed_floor)
        new.gate = old.gate
        old.successor = new  # answers still in flight for the old actor reach the new one
        slot.actor = new
        self.router.subscribe(trade.epic, new.trade_id, new)
        new.log.bind(event="actor.restarted", crashes=slot.crashes, method=plan.stages.method).info(
            "actor restarted"
        )

    async def _abandon(self, actor: TradeActor) -> None:
        self.counts["abandoned"] += 1
        self.gateway.forget(actor.trade_id)
        self.slots.abandon(actor.trade_id)
        actor.log.bind(event="actor.abandoned", stop=actor.trade.sl_price).error(
            "restart budget exhausted; trade unmanaged, its broker stop stays"
        )
        await self.records.unmanage(actor.trade, "restart budget exhausted")
