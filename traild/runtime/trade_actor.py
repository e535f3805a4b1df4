"""One task per open trade: ticks in, core decision, amendment targets out.

The actor is a thin shell around ``core.ladder.Ladder``; its whole state is the ladder's
(best price, confirmed stop, pending amendment), persisted so a restart resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import trio
from loguru import logger

from traild.core.calculator import CalculatedStages
from traild.core.errors import StoreError
from traild.core.instruments import Instrument
from traild.core.ladder import Exit, Ladder, LadderPlan, LadderPolicy
from traild.core.messages import Direction, MoveStop, Tick, TradeRecord
from traild.ports import TradeStore
from traild.runtime.gateway import AmendTarget, Gateway
from traild.runtime.router import Mailbox


@dataclass(frozen=True, slots=True)
class ActorPlan:
    """What the actor trails with: stages (dynamic or fixed) and the account policy."""

    stages: CalculatedStages
    policy: LadderPolicy


class TradeActor:
    """Trails one trade. ``plan_source`` is asked for a fresh plan after every reload."""

    def __init__(
        self,
        trade: TradeRecord,
        instrument: Instrument,
        plan: ActorPlan,
        mailbox: Mailbox,
        gateway: Gateway,
        store: TradeStore,
        persist_every_s: float = 1.0,
        confirmed_floor: float | None = None,
    ) -> None:
        assert trade.id is not None and trade.entry_price is not None
        self.trade = trade
        self.trade_id = trade.id
        self.inst = instrument
        self.plan = plan
        self.mailbox = mailbox
        self.gateway = gateway
        self.store = store
        self.persist_every_s = persist_every_s
        # Replay catch-up: levels up to this one were confirmed before a restart.
        self.confirmed_floor = confirmed_floor
        self.direction = trade.direction
        to = instrument.to_ticks
        self.ladder = Ladder(
            self._compile(plan),
            trade.direction,
            to(trade.entry_price),
            None if trade.sl_price is None else to(trade.sl_price),
            None if trade.limit_price is None else to(trade.limit_price),
            None if trade.best_price is None else to(trade.best_price),
        )
        self.log = logger.bind(trade_id=trade.id, deal_id=trade.deal_id, epic=trade.epic)
        self.exited: Exit | None = None
        self.ticks = 0
        self._new_plan: ActorPlan | None = None
        self._saved_best: int | None = self.ladder.best
        self._saved_at: datetime | None = None
        self.last_ts: datetime | None = None
        self._persist_wakeup = trio.Event()

    def _compile(self, plan: ActorPlan) -> LadderPlan:
        return LadderPlan.compile(plan.stages.stages, self.inst, plan.policy, plan.stages.atr_pips)

    # -- control (called by the supervisor, applied before the next tick) ---------------------
    def replan(self, plan: ActorPlan) -> None:
        self._new_plan = plan

    def _apply_replan(self) -> None:
        plan, self._new_plan = self._new_plan, None
        assert plan is not None
        self.plan = plan
        self.ladder.plan = self._compile(plan)
        self.ladder.touch()

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._persister)
            task_status.started()
            while True:
                ticks = await self.mailbox.get()
                try:
                    for tick in ticks:
                        self.on_tick(tick)
                    if self._persist_due():
                        self._persist_wakeup.set()
                finally:
                    self.mailbox.done()

    async def _persister(self) -> None:
        """Writes the best price in the background: ticks never wait for the database."""
        while True:
            await self._persist_wakeup.wait()
            self._persist_wakeup = trio.Event()
            await self._maybe_persist()

    def _persist_due(self) -> bool:
        best, ts = self.ladder.best, self.last_ts
        if best is None or best == self._saved_best or ts is None:
            return False
        return self._saved_at is None or (
            (ts - self._saved_at).total_seconds() >= self.persist_every_s
        )

    def on_tick(self, tick: Tick) -> None:
        """Apply one tick (synchronous: no await between decision and submission)."""
        opened = self.trade.opened_at
        if opened is not None and tick.ts < opened:
            return  # a replay restarted from the beginning: before this trade existed
        if self._new_plan is not None:
            self._apply_replan()
        self.ticks += 1
        self.last_ts = tick.ts
        to = self.inst.to_ticks
        event = self.ladder.on_tick(to(tick.bid), to(tick.ask))
        if event is None:
            return
        if isinstance(event, MoveStop):
            self._submit(event)
        else:
            self.exited = event

    def _submit(self, move: MoveStop) -> None:
        level = self.inst.to_price(move.level)
        stop = self.ladder.stop
        self.gateway.submit(
            AmendTarget(
                trade_id=self.trade_id,
                deal_id=self.trade.deal_id,
                epic=self.trade.epic,
                level=level,
                previous=None if stop is None else self.inst.to_price(stop),
                limit=self.trade.limit_price,
                reason=move.reason,
                priority=move.priority,
                on_confirmed=self.on_confirmed,
                on_failed=self.on_failed,
                better=self._better,
                log={"method": self.plan.stages.method},
                replay=self.confirmed_floor is not None
                and not self._better(level, self.confirmed_floor),
            )
        )

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.direction is Direction.BUY else a < b

    def on_confirmed(self, level: float) -> None:
        self.ladder.confirm(self.inst.to_ticks(level))
        self.trade = replace(self.trade, sl_price=level)

    def on_failed(self, reason: str) -> None:
        self.ladder.reject()

    async def _maybe_persist(self, force: bool = False) -> None:
        best = self.ladder.best
        if best is None or best == self._saved_best or self.last_ts is None:
            return
        if not (force or self._persist_due()):
            return
        self._saved_best = best
        self._saved_at = self.last_ts
        try:
            await self.store.save_progress(self.trade_id, self.inst.to_price(best))
        except StoreError as exc:  # queued in the store; the broker stop is the protection
            self.log.bind(event="store.degraded", error=str(exc)).warning("best price queued")

    async def persist(self) -> None:
        """Write the best price now (drain on shutdown)."""
        await self._maybe_persist(force=True)

    @property
    def best_price(self) -> float | None:
        best = self.ladder.best
        return None if best is None else self.inst.to_price(best)
