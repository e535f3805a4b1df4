"""Real-time recalculation of stages (SPEC §3), run by the supervisor at each closed bar.

The trade's conditions are re-measured from traild's own bars; when the volatility regime has
moved ``realtime_regime_shift`` levels or more from the one its current stages were computed
with, the same calculator (same fallbacks) produces new stages, which the actor adopts from
the next tick without un-reaching a rung. Every kill switch (dynamic trailing off, a
forced-fixed pair, a ``fixed``/``off`` trade override) stops it at once; the global halt is
checked by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from traild.core.calculator import CalculatedStages, DynamicTrailingCalculator, MarketConditions
from traild.core.messages import StageRecalculation
from traild.runtime.stages import Policy, apply_switches
from traild.runtime.trade_actor import ActorPlan, TradeActor


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
    cond = MarketConditions(
        trade.epic,
        own.atr_pips,
        own.volatility_regime,
        own.session,
        own.market_regime or trade.market_regime_at_entry,
    )
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
