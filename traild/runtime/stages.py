"""Stage decisions of the supervisor: stored, calculated, fixed, and the kill switches.

Plain functions of the current ``Policy`` (swapped on reload) and a trade; they log what was
decided (``stages.calculated``, ``stages.fallback``, ``stages.out_of_range``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from traild.core.calculator import (
    DYNAMIC,
    FIXED,
    CalculatedStages,
    CalculatorParams,
    DynamicTrailingCalculator,
    MarketConditions,
    RegimeTables,
    StageConfig,
    in_rollout,
    is_forced_fixed,
)
from traild.core.errors import StageError
from traild.core.ladder import LadderPolicy
from traild.core.market import completed
from traild.core.messages import AlertRecord, TradeRecord


@dataclass(frozen=True, slots=True)
class Policy:
    """The plain values the supervisor needs from the settings (swapped on reload)."""

    calculator: CalculatorParams
    ladder: LadderPolicy
    fixed_stages: Callable[[str, bool], StageConfig]
    restart_budget: int = 5
    restart_backoff: float = 0.5
    restart_backoff_max: float = 30.0
    dynamic_failures_before_fixed: int = 2
    persist_every_s: float = 1.0
    min_distance: Callable[[str], float] = lambda epic: 0.0
    # per-market-regime stage overrides of (epic, is_scalp); real-time recalculation
    regime_tables: Callable[[str, bool], RegimeTables] = lambda epic, scalp: {}
    realtime_recalc: bool = False
    realtime_regime_shift: int = 2
    reconcile_stops_s: float = 30.0  # how often the broker's stops are checked (drift)


def stored_stages(policy: Policy, trade: TradeRecord) -> CalculatedStages | None:
    """The stages stored at adoption; unusable JSON falls back to fixed (logged)."""
    if trade.calculated_stages is None:
        return None
    try:
        return CalculatedStages.from_json(trade.calculated_stages)
    except StageError as exc:
        logger.bind(
            event="stages.fallback",
            trade_id=trade.id,
            deal_id=trade.deal_id,
            epic=trade.epic,
            reason="calculation_error",
            error=str(exc),
        ).warning("stored stages unusable; using fixed")
        return fixed_stages(policy, trade, "calculation_error")


def merge_conditions(
    epic: str, alert: AlertRecord | None, own: MarketConditions | None, pip: float
) -> MarketConditions | None:
    """The alert's fields (ATR converted from price to pips) where present, else traild's own
    (``core.market.completed``: a missing or NaN field is taken from the bars)."""
    if alert is None:
        return own
    atr = None if alert.atr is None else alert.atr / pip
    given = MarketConditions(
        epic, atr, alert.volatility_regime, alert.market_session, alert.market_regime
    )
    return completed(given, own)


def calculate(
    policy: Policy, trade: TradeRecord, cond: MarketConditions | None
) -> CalculatedStages:
    """Run the calculator once for ``trade`` and log inputs and outputs."""
    calc = DynamicTrailingCalculator(policy.calculator)
    base = policy.fixed_stages(trade.epic, trade.is_scalp_trade)
    regimes = policy.regime_tables(trade.epic, trade.is_scalp_trade)
    result = calc.calculate_stages(
        cond, base, trade.is_scalp_trade, trade.trailing_override, trade.epic, regimes
    )
    log = logger.bind(
        trade_id=trade.id,
        deal_id=trade.deal_id,
        epic=trade.epic,
        method=result.method,
        reason=result.fallback_reason,
        factor=result.factor,
        stages=result.stages.as_dict(),
        regime_table=result.market_regime,
        inputs=None
        if cond is None
        else {
            "atr_pips": cond.atr_pips,
            "regime": cond.volatility_regime,
            "session": cond.session,
            "market_regime": cond.market_regime,
        },
    )
    if result.method == DYNAMIC:
        log.bind(event="stages.calculated").info("dynamic stages calculated")
    else:
        log.bind(event="stages.fallback").info("fixed stages used")
    for warning in result.warnings:
        log.bind(event="stages.calculated").warning(warning)
    if result.out_of_range:
        log.bind(event="stages.out_of_range", fields=list(result.out_of_range)).warning(
            "stages outside the configured sanity range"
        )
    return result


def fixed_stages(
    policy: Policy, trade: TradeRecord, reason: str, atr: float | None = None
) -> CalculatedStages:
    base = policy.fixed_stages(trade.epic, trade.is_scalp_trade)
    return CalculatedStages(base, FIXED, reason, None, atr)


def apply_switches(
    policy: Policy, trade: TradeRecord, stages: CalculatedStages
) -> CalculatedStages:
    """Kill switches: dynamic off, forced-fixed pair, pair out of the rollout allowlist,
    per-trade override -> fixed stages."""
    if stages.method != DYNAMIC:
        return stages
    calc = policy.calculator
    reason = None
    if not calc.enable_dynamic_trailing:
        reason = "disabled"
    elif is_forced_fixed(trade.epic, calc.force_fixed_trailing_pairs):
        reason = "forced_fixed_pair"
    elif not in_rollout(trade.epic, calc.dynamic_trailing_pairs):
        reason = "not_in_rollout"
    elif trade.trailing_override in ("fixed", "off"):
        reason = "trade_override"
    if reason is None:
        return stages
    return fixed_stages(policy, trade, reason, stages.atr_pips)
