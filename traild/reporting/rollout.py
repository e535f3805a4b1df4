"""Where each pair stands in the plan's rollout (Step 3), and what the live trades say.

Stages, from the effective configuration (file + database overrides): ``fixed_only``,
``dynamic_on``, ``widened`` (``traild.config.rollout_stage``).

The gate ("10 %+ expectancy improvement") is judged on paired differences, dynamic minus fixed
on the same trades, whenever recorded ticks give the closed trades counterfactuals
(``paired.py``); the before/after comparison of live trades (``gate.py``) stays as a secondary
view, and decides only when there are no counterfactuals. This module recommends; it never
changes the configuration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from traild.config.rollout_stage import FIXED_ONLY, pair_stage
from traild.config.settings import Settings
from traild.core.calculator import DYNAMIC, is_listed
from traild.core.instruments import symbol_of
from traild.core.messages import TradeRecord
from traild.reporting.gate import MET, NOT_MET, GatePolicy, GateResult, evaluate
from traild.reporting.live import Bootstrap, LiveTrade
from traild.reporting.paired import (
    PairedPolicy,
    PairedResult,
    PairedTrade,
    evaluate_paired,
    paired_gate,
)

# Fallbacks for lack of usable market data (not the configuration's choice).
DATA_FALLBACKS = frozenset(
    ("no_conditions", "no_atr", "invalid_atr", "calculation_error", "inconsistent_stages")
)
DATA_FALLBACK_SHARE = 0.2  # above this share of a dynamic pair's trades, say so


def gate_policy(settings: Settings) -> GatePolicy:
    """The before/after gate's policy, from ``[rollout]``."""
    r = settings.rollout
    boot = _bootstrap(settings)
    return GatePolicy(r.improvement_threshold, r.min_trades, boot, r.min_days, r.max_dropped_share)


def paired_policy(settings: Settings) -> PairedPolicy:
    """The paired gate's policy, from ``[rollout]``."""
    r = settings.rollout
    return PairedPolicy(r.improvement_threshold, r.min_trades, r.min_days, _bootstrap(settings))


def _bootstrap(settings: Settings) -> Bootstrap:
    r = settings.rollout
    return Bootstrap(r.bootstrap_samples, r.confidence, r.bootstrap_seed)


def plan_step(settings: Settings) -> str:
    t = settings.trailing
    if not t.enable_dynamic_trailing:
        return "dynamic trailing off: every pair on fixed stages"
    listed = t.dynamic_trailing_pairs
    if not listed:
        return "dynamic trailing for every pair not forced fixed"
    if len(listed) == 1:
        return f"pilot: dynamic trailing for {listed[0]} only"
    return f"widened: dynamic trailing for {len(listed)} pairs ({', '.join(listed)})"


def pairs_of(settings: Settings, epics: Iterable[str]) -> list[str]:
    """Every epic with trades, plus allowlist entries that match none of them."""
    seen = sorted(set(epics))
    for entry in settings.trailing.dynamic_trailing_pairs:
        if not any(is_listed(e, frozenset([entry.upper()])) for e in seen):
            seen.append(entry.upper())
    return seen


def rollout_status(
    settings: Settings,
    trades: Sequence[LiveTrade],
    records: Sequence[TradeRecord] = (),
    paired: tuple[Sequence[PairedTrade], PairedPolicy] | None = None,
) -> dict[str, Any]:
    """Per pair: stage, gate, how its stages were calculated (``records``: every trade of the
    window, open ones too) and a recommendation; overall: the plan step and the next move.
    ``paired``: the counterfactual pairs of the closed trades; when there are any, the paired
    gate decides (``gate_basis`` "paired") and the before/after gate is the secondary view."""
    policy = gate_policy(settings)
    pairs: list[dict[str, Any]] = []
    for epic in pairs_of(settings, [t.epic for t in trades] + [r.epic for r in records]):
        stage, reason = pair_stage(settings, epic)
        gate = evaluate([t for t in trades if t.epic == epic], policy)
        calc = calculations([r for r in records if r.epic == epic])
        pairs.append(
            {
                "pair": epic,
                "symbol": symbol_of(epic),
                "stage": stage,
                "fixed_reason": reason,
                "calculations": calc,
                "gate": gate.as_dict(),
                "recommendation": _data_advice(stage, calc) or _pair_advice(stage, gate),
            }
        )
    live = {p["pair"] for p in pairs if p["stage"] != FIXED_ONLY}
    pooled = evaluate([t for t in trades if t.epic in live], policy)
    status = {
        "plan_step": plan_step(settings),
        "threshold_pct": round(100 * policy.threshold, 2),
        "min_trades": policy.min_trades,
        "min_days": policy.min_days,
        "confidence": policy.boot.confidence,
        "gate_basis": "before_after",
        "pairs": pairs,
        "rollout_gate": pooled.as_dict(),
        "recommendation": _next_move(settings, pooled, live),
    }
    if paired is not None and paired[0]:
        _add_paired(settings, status, paired[0], paired[1], live)
    return status


def _add_paired(
    settings: Settings,
    status: dict[str, Any],
    trades: Sequence[PairedTrade],
    policy: PairedPolicy,
    live: set[str],
) -> None:
    """The paired gate as the deciding view: per pair, and pooled over the pairs on dynamic
    (over every pair before the pilot starts: would the pilot pass?)."""
    gate = paired_gate(trades, policy)
    for p in status["pairs"]:
        mine = gate["pairs"].get(p["pair"])
        p["paired_gate"] = mine
        if mine is not None and not p["recommendation"].startswith("check the conditions"):
            p["recommendation"] = _paired_advice(p["stage"], mine)
    pooled = evaluate_paired([t for t in trades if not live or t.epic in live], policy)
    gate["rollout_gate"] = pooled.as_dict()
    gate["rollout_gate"]["over"] = sorted(live) if live else "every pair with counterfactuals"
    status["gate_basis"] = "paired"
    status["paired_gate"] = gate
    status["recommendation"] = _next_move(settings, pooled, live)


def _paired_advice(stage: str, gate: dict[str, Any]) -> str:
    verdict, needed = gate["verdict"], gate["trades_needed"]
    if verdict == MET:
        return (
            "keep dynamic: the paired gate is met"
            if stage != FIXED_ONLY
            else "the paired gate is met on its trades: a candidate when widening"
        )
    if verdict == NOT_MET:
        return (
            "consider taking it out of dynamic_trailing_pairs: the paired gate is not met"
            if stage != FIXED_ONLY
            else "fixed only: dynamic would not meet the paired gate on its trades"
        )
    more = "" if needed is None else f" (about {needed} more, ~{gate['days_needed']} trading days)"
    return "keep collecting closed trades" + more


def calculations(records: Sequence[TradeRecord]) -> dict[str, Any]:
    """Adopted trades by method, and the fallbacks that mean missing or unusable market data."""
    adopted = [r for r in records if r.trailing_calculation_method is not None]
    data = Counter(r.fallback_reason for r in adopted if r.fallback_reason in DATA_FALLBACKS)
    return {
        "trades": len(adopted),
        "dynamic": sum(r.trailing_calculation_method == DYNAMIC for r in adopted),
        "data_fallbacks": dict(sorted(data.items())),
    }


def _data_advice(stage: str, calc: Mapping[str, Any]) -> str | None:
    """A pair meant to trail dynamically whose stages are often not calculated."""
    failed = sum(calc["data_fallbacks"].values())
    if stage == FIXED_ONLY or not calc["trades"] or failed / calc["trades"] <= DATA_FALLBACK_SHARE:
        return None
    reasons = ", ".join(f"{k} {v}" for k, v in calc["data_fallbacks"].items())
    return (
        f"check the conditions: {failed} of {calc['trades']} trades fell back to fixed "
        f"({reasons}); see `stages.fallback` in the log"
    )


def _pair_advice(stage: str, gate: GateResult) -> str:
    needed = _still_needed(gate)
    needed = f" ({needed})" if needed else ""
    if stage == FIXED_ONLY:
        if gate.dynamic_trades == 0:
            return "fixed only: no dynamic trades to judge"
        if gate.verdict == MET:
            return "earlier dynamic trades met the gate: a candidate when widening"
        return "fixed only"
    if gate.verdict == MET:
        return "keep dynamic: the gate is met"
    if gate.verdict == NOT_MET:
        return "consider taking it out of dynamic_trailing_pairs: the gate is not met"
    return "keep collecting closed trades" + needed


def _next_move(settings: Settings, pooled: GateResult | PairedResult, live: set[str]) -> str:
    t = settings.trailing
    if not t.enable_dynamic_trailing or not live:
        return (
            "start the pilot: enable_dynamic_trailing = true and "
            "`traild config set trailing dynamic_trailing_pairs=EURUSD`"
        )
    if pooled.verdict == NOT_MET:
        return (
            "roll back: dynamic trailing falls short of the target; remove the pairs from "
            "dynamic_trailing_pairs (or set enable_dynamic_trailing = false)"
        )
    if pooled.verdict != MET:
        more = _still_needed(pooled)
        return "stay at this step and keep collecting closed trades" + (f": {more}" if more else "")
    if len(t.dynamic_trailing_pairs) == 1:
        return "widen to three pairs: `traild config set trailing dynamic_trailing_pairs=A,B,C`"
    if t.dynamic_trailing_pairs:
        return "go to all pairs: `traild config set trailing dynamic_trailing_pairs=`"
    return "fully rolled out and the gate holds: nothing to change"


def _still_needed(gate: GateResult | PairedResult) -> str:
    """``about N more`` trades and, when days are short too, ``over about M more trading
    days`` (empty when no sample size decides it)."""
    parts = []
    if gate.trades_needed:
        parts.append(f"about {gate.trades_needed} more")
    if gate.days_needed:
        parts.append(f"over about {gate.days_needed} more trading days")
    return " ".join(parts)
