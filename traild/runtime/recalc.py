"""Re-planning running trades: real-time recalculation of stages (SPEC §3) at each closed bar,
a reloaded configuration, and the per-trade kill switch.

The trade's conditions are re-measured from traild's own bars; when the volatility regime has
moved ``realtime_regime_shift`` levels or more from the one its current stages were computed
with, the same calculator (same fallbacks) produces new stages, which the actor adopts from
the next tick without un-reaching a rung. Every kill switch (dynamic trailing off, a
forced-fixed pair, a ``fixed``/``off`` trade override) stops it at once; the global halt is
checked at each closed bar (nothing is recalculated while it is on).

A reload switches every actor before its next tick: a kill switch engaged moves a trade to
fixed stages, fixed stages follow the new configuration, and every ladder its new policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime

from traild.core.calculator import (
    FIXED,
    CalculatedStages,
    DynamicTrailingCalculator,
    MarketConditions,
)
from traild.core.conditions import BarHistory
from traild.core.messages import StageRecalculation
from traild.runtime.actors import ladder_policy
from traild.runtime.gateway import Gateway
from traild.runtime.records import Records
from traild.runtime.slots import Slots
from traild.runtime.stages import Policy, apply_switches
from traild.runtime.trade_actor import ActorPlan, TradeActor


class Replanner:
    """Changes the plans of running actors: at a closed bar, a reload, a per-trade switch."""

    def __init__(
        self,
        slots: Slots,
        gateway: Gateway,
        histories: dict[str, BarHistory],
        now: Callable[[], datetime],
        policy: Callable[[], Policy],
        records: Records,
        counts: dict[str, int],
    ) -> None:
        self.slots = slots
        self.gateway = gateway
        self.histories = histories
        self.now = now
        self.policy = policy
        self.records = records
        self.counts = counts

    def on_bar_closed(self, epic: str) -> None:
        """A bar of ``epic`` closed: recalculate its trades whose regime shifted (SPEC §3).
        Nothing while the global halt is on (the per-trade switches are checked per actor)."""
        history = self.histories.get(epic)
        policy = self.policy()
        if not policy.realtime_recalc or self.gateway.halted or history is None:
            return
        if not self.records.background.open:
            return
        now = self.now()
        actors = self.slots.actors(epic)
        if not actors:
            return
        own = history.conditions(epic, now)
        for rec in recalculate_actors(policy, actors, own, now):
            self.counts["recalculated"] = self.counts.get("recalculated", 0) + 1
            self.records.recalculation_soon(rec)

    def apply_policy(self) -> None:
        """A reloaded configuration (``policy()`` is the new one): every actor switches before
        its next tick."""
        policy = self.policy()
        for actor in self.slots.actors():
            stages = actor.plan.stages
            switched = apply_switches(policy, actor.trade, stages)
            if switched is not stages:
                self._to_fixed(actor, switched, "kill switch: trade moves to fixed stages")
            elif stages.method == FIXED:
                switched = replace(
                    stages, stages=policy.fixed_stages(actor.trade.epic, actor.trade.is_scalp_trade)
                )
            actor.replan(ActorPlan(switched, ladder_policy(policy, actor.trade.epic)))

    def override(self, actor: TradeActor, override: str | None) -> None:
        """The per-trade kill switch: ``fixed`` stages, or ``off`` (no amendments at all)."""
        actor.trade = replace(actor.trade, trailing_override=override)
        stages = apply_switches(self.policy(), actor.trade, actor.plan.stages)
        actor.log.bind(
            event="killswitch.engaged" if override else "killswitch.released",
            switch="trade",
            override=override,
        ).warning("per-trade override")
        if stages is not actor.plan.stages:
            self._to_fixed(actor, stages, "trade moves to fixed stages")
            actor.replan(ActorPlan(stages, actor.plan.policy))
        if override == "off":
            self.gateway.forget(actor.trade_id)

    def _to_fixed(self, actor: TradeActor, stages: CalculatedStages, message: str) -> None:
        """A kill switch moved the trade to fixed ``stages``: logged and recorded."""
        actor.log.bind(
            event="stages.fallback", reason=stages.fallback_reason, stages=stages.stages.as_dict()
        ).warning(message)
        self.records.method_soon(actor.trade_id, FIXED, stages.fallback_reason)


def recalculate_actors(
    policy: Policy, actors: Iterable[TradeActor], own: MarketConditions, now: datetime
) -> list[StageRecalculation]:
    """Recalculate every actor (of one epic) whose regime shifted; the records to store."""
    if not policy.realtime_recalc:
        return []
    out = []
    for actor in actors:
        rec = recalculate_actor(policy, actor, own, now)
        if rec is not None:
            out.append(rec)
    return out


def recalculate_actor(
    policy: Policy, actor: TradeActor, own: MarketConditions, now: datetime
) -> StageRecalculation | None:
    """New stages for ``actor`` from ``own`` (its epic's bars) when its regime shifted."""
    trade = actor.trade
    plan = actor.current_plan
    current = plan.stages
    if apply_switches(policy, trade, current) is not current:
        return None  # a kill switch is engaged: the supervisor moves it to fixed stages
    # the bars' conditions; the entry's market regime while the bars classify none
    cond = replace(own, market_regime=own.market_regime or trade.market_regime_at_entry)
    new = DynamicTrailingCalculator(policy.calculator).recalculate(
        current,
        cond,
        policy.fixed_stages(trade.epic, trade.is_scalp_trade),
        trade.is_scalp_trade,
        policy.realtime_regime_shift,
        trade.trailing_override,
        trade.epic,
        policy.regime_tables(trade.epic, trade.is_scalp_trade),
    )
    if new is None:
        return None
    _log(actor, current, new, cond)
    actor.recalculate(ActorPlan(new, plan.policy))
    return StageRecalculation(
        trade_id=actor.trade_id,
        recalculated_at=now,
        old_volatility_regime=current.volatility_regime,
        new_volatility_regime=cond.volatility_regime,
        market_regime=cond.market_regime,
        atr_pips=cond.atr_pips,
        session=cond.session,
        method=new.method,
        fallback_reason=new.fallback_reason,
        old_stages=current.to_json(),
        new_stages=new.to_json(),
    )


def _log(
    actor: TradeActor, old: CalculatedStages, new: CalculatedStages, cond: MarketConditions
) -> None:
    actor.log.bind(
        event="stages.recalculated",
        old_regime=old.volatility_regime,
        new_regime=cond.volatility_regime,
        market_regime=cond.market_regime,
        regime_table=new.market_regime,
        atr_pips=cond.atr_pips,
        session=cond.session,
        method=new.method,
        reason=new.fallback_reason,
        factor=new.factor,
        old_stages=old.stages.as_dict(),
        stages=new.stages.as_dict(),
    ).info(
        "stages recalculated: volatility regime {} -> {}",
        old.volatility_regime,
        cond.volatility_regime,
    )
    for warning in new.warnings:
        actor.log.bind(event="stages.recalculated").warning(warning)
