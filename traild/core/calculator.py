"""The DynamicTrailingCalculator (names from the seed plan) and the pair lists it honours.

    factor   = V[regime] x (S[session] if session adjustment else 1)
    trigger' = clamp(base_trigger x factor, atr_min x ATR, atr_max x ATR)
    lock'    = base_lock x trigger' / base_trigger

A per-regime override table (``regimes[market_regime]``, any subset of the stage keys) is laid
over the base before the factor. ``recalculate`` is the real-time entry point: new stages only
when the volatility regime moved ``shift`` levels or more from the one the current stages used.

Values are kept to 0.01 pip (Decimal arithmetic, half-up); ticks appear only in the ladder.
The values it reads and writes live in ``core.stageconfig`` and ``core.market`` (re-exported
here: ``from traild.core.calculator import StageConfig`` keeps working).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal

from traild.core.errors import StageError
from traild.core.market import MarketConditions
from traild.core.regime import MARKET_REGIMES
from traild.core.stageconfig import (
    DYNAMIC,
    FALLBACK_REASONS,
    FIXED,
    REGIMES,
    SCALED,
    SESSIONS,
    CalculatedStages,
    RegimeTables,
    StageConfig,
)

__all__ = [
    "DYNAMIC",
    "FALLBACK_REASONS",
    "FIXED",
    "REGIMES",
    "SESSIONS",
    "CalculatedStages",
    "CalculatorParams",
    "DynamicTrailingCalculator",
    "MarketConditions",
    "RegimeTables",
    "StageConfig",
    "in_rollout",
    "is_forced_fixed",
    "is_listed",
    "regime_base",
    "regime_level_name",
    "regime_shift",
]

_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class CalculatorParams:
    """The ``[trailing]`` settings the calculator needs, as plain values."""

    enable_dynamic_trailing: bool = False
    enable_session_adjustment: bool = True
    volatility_multipliers: Mapping[str, float] = field(
        default_factory=lambda: {"low": 0.7, "normal": 1.0, "high": 1.3, "extreme": 1.6}
    )
    scalp_volatility_multipliers: Mapping[str, float] = field(
        default_factory=lambda: {"low": 0.6, "normal": 0.8, "high": 1.0, "extreme": 1.2}
    )
    session_multipliers: Mapping[str, float] = field(
        default_factory=lambda: {"asian": 0.9, "london": 1.1, "new_york": 1.1, "overlap": 1.2}
    )
    atr_min_multiplier: float = 0.8
    atr_max_multiplier: float = 4.0
    force_fixed_trailing_pairs: frozenset[str] = frozenset()
    # The rollout allowlist: when not empty, only these epics/symbols may trail dynamically.
    dynamic_trailing_pairs: frozenset[str] = frozenset()
    stage_alert_min_pips: float = 1.0
    stage_alert_max_pips: float = 200.0
    # "ladder" (SPEC §3 default): the factor clamped so the early-BE trigger lands in the band
    # and the ladder keeps its shape; "per_stage": every trigger clamped to [min, max] x ATR on
    # its own (the plan's literal formula).
    atr_clamp: str = "ladder"


def _dec(value: float) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _cent(value: Decimal) -> float:
    return float(value.quantize(_CENT, rounding=ROUND_HALF_UP))


class DynamicTrailingCalculator:
    """Computes a trade's stages once, at adoption (seed phase 1.2)."""

    def __init__(self, params: CalculatorParams) -> None:
        self.params = params

    def calculate_stages(
        self,
        conditions: MarketConditions | None,
        base: StageConfig,
        is_scalp: bool = False,
        override: str | None = None,
        epic: str | None = None,
        regimes: RegimeTables | None = None,
    ) -> CalculatedStages:
        """Dynamic stages when allowed and possible, else ``base`` with exactly one reason.

        ``regimes``: per-market-regime overrides of ``base`` (dynamic trades only; a fixed
        trade trails on its base table, so every kill switch reverts to the configured stages).
        """
        atr = _usable_atr(conditions)
        reason = self._fallback_reason(conditions, override, epic)
        if reason is not None:
            return self._fixed(base, reason, atr)
        assert conditions is not None and conditions.atr_pips is not None
        try:
            table, market, note = regime_base(base, conditions.market_regime, regimes)
            result = self._dynamic(conditions, table, is_scalp)
        except (ArithmeticError, ValueError, TypeError, KeyError, StageError):
            return self._fixed(base, "calculation_error", atr)
        warnings = result.warnings if note is None else (note, *result.warnings)
        result = replace(result, market_regime=market, warnings=warnings)
        if result.stages.problems():
            return self._fixed(base, "inconsistent_stages", atr, result.warnings)
        return result

    def recalculate(
        self,
        current: CalculatedStages,
        conditions: MarketConditions | None,
        base: StageConfig,
        is_scalp: bool = False,
        shift: int = 2,
        override: str | None = None,
        epic: str | None = None,
        regimes: RegimeTables | None = None,
    ) -> CalculatedStages | None:
        """Real-time recalculation (SPEC §3): new stages when the volatility regime of
        ``conditions`` is ``shift`` or more levels away from the one ``current`` was computed
        with, else None. Only dynamic stages are recalculated; the result may be a fallback
        (same calculator, same reasons)."""
        if current.method != DYNAMIC or conditions is None or conditions.atr_pips is None:
            return None
        if conditions.volatility_regime is None or not regime_level_name(
            conditions.volatility_regime
        ):
            return None  # nothing measured: no shift to act on
        if regime_shift(current.volatility_regime, conditions.volatility_regime) < max(shift, 1):
            return None
        return self.calculate_stages(conditions, base, is_scalp, override, epic, regimes)

    def _fallback_reason(
        self, conditions: MarketConditions | None, override: str | None, epic: str | None
    ) -> str | None:
        p = self.params
        if not p.enable_dynamic_trailing:
            return "disabled"
        epic = epic or (conditions.epic if conditions else None)
        if epic is not None and is_forced_fixed(epic, p.force_fixed_trailing_pairs):
            return "forced_fixed_pair"
        if epic is not None and not in_rollout(epic, p.dynamic_trailing_pairs):
            return "not_in_rollout"
        if override in ("fixed", "off"):
            return "trade_override"
        if conditions is None:
            return "no_conditions"
        atr = conditions.atr_pips
        if atr is None:
            return "no_atr"
        if not isinstance(atr, int | float) or not math.isfinite(atr) or atr <= 0:
            return "invalid_atr"
        return None

    def _fixed(
        self, base: StageConfig, reason: str, atr: float | None, warnings: tuple[str, ...] = ()
    ) -> CalculatedStages:
        return CalculatedStages(base, FIXED, reason, None, atr, warnings, self._out_of_range(base))

    def _dynamic(
        self, cond: MarketConditions, base: StageConfig, is_scalp: bool
    ) -> CalculatedStages:
        p = self.params
        warnings: list[str] = []
        regime = regime_level_name(cond.volatility_regime)
        if regime is None:
            warnings.append(f"unknown volatility regime {cond.volatility_regime!r}: using normal")
            regime = "normal"
        table = p.scalp_volatility_multipliers if is_scalp else p.volatility_multipliers
        factor = _dec(table[regime])
        if p.enable_session_adjustment and cond.session is not None:
            session = cond.session.strip().lower()
            if session in SESSIONS:
                factor *= _dec(p.session_multipliers[session])
            else:
                warnings.append(f"unknown session {cond.session!r}: factor 1.0")
        assert cond.atr_pips is not None
        atr = _dec(cond.atr_pips)
        lo, hi = atr * _dec(p.atr_min_multiplier), atr * _dec(p.atr_max_multiplier)
        values = base.as_dict()
        if p.atr_clamp == "ladder":
            # Clamp the factor, not each trigger: the early-BE trigger lands in the ATR band
            # and the whole ladder keeps its shape (so it stays consistent).
            early = _dec(base.early_be_trigger)
            factor = min(max(early * factor, lo), hi) / early
            lo, hi = Decimal("-Infinity"), Decimal("Infinity")
        for trig, lock in SCALED:
            base_trigger = _dec(getattr(base, trig))
            scaled = min(max(base_trigger * factor, lo), hi)
            values[trig] = _cent(scaled)
            if lock is not None:
                values[lock] = _cent(
                    _dec(getattr(base, lock)) * Decimal(str(values[trig])) / base_trigger
                )
        stages = StageConfig(**values)
        return CalculatedStages(
            stages,
            DYNAMIC,
            None,
            float(factor),
            float(cond.atr_pips),
            tuple(warnings),
            self._out_of_range(stages),
            volatility_regime=regime,
        )

    def _out_of_range(self, stages: StageConfig) -> tuple[str, ...]:
        lo, hi = self.params.stage_alert_min_pips, self.params.stage_alert_max_pips
        names = (
            "early_be_trigger",
            "stage1_trigger",
            "stage2_trigger",
            "stage3_trigger",
            "stage3_min_distance",
        )
        return tuple(n for n in names if not lo <= getattr(stages, n) <= hi)


def _usable_atr(conditions: MarketConditions | None) -> float | None:
    if conditions is None or conditions.atr_pips is None:
        return None
    atr = conditions.atr_pips
    return float(atr) if math.isfinite(atr) and atr > 0 else None


def is_forced_fixed(epic: str, forced: frozenset[str]) -> bool:
    """True when ``epic`` (or its symbol) is listed in ``force_fixed_trailing_pairs``."""
    return is_listed(epic, forced)


def in_rollout(epic: str, allowlist: frozenset[str]) -> bool:
    """True when ``dynamic_trailing_pairs`` is empty (everyone) or lists ``epic`` or its symbol."""
    return not allowlist or is_listed(epic, allowlist)


def is_listed(epic: str, listed: frozenset[str]) -> bool:
    """True when ``epic`` or its symbol (a dot-separated part, upper case) is in ``listed``."""
    if not listed:
        return False
    key = epic.upper()
    if key in listed:
        return True
    parts = set(key.split("."))
    return any(f in parts for f in listed)


def regime_level_name(regime: str | None) -> str | None:
    """The volatility regime normalised (missing = ``normal``); None when unknown."""
    name = (regime or "normal").strip().lower()
    return name if name in REGIMES else None


def regime_shift(old: str | None, new: str | None) -> int:
    """How many levels (low < normal < high < extreme) apart two volatility regimes are;
    a missing or unknown regime counts as ``normal``."""
    a = REGIMES.index(regime_level_name(old) or "normal")
    b = REGIMES.index(regime_level_name(new) or "normal")
    return abs(a - b)


def regime_base(
    base: StageConfig, market_regime: str | None, regimes: RegimeTables | None
) -> tuple[StageConfig, str | None, str | None]:
    """``base`` with the table of ``market_regime`` laid over it (only the keys it names).

    Returns (stages, the regime whose table was applied or None, a warning or None). A regime
    without a table uses the base; one that is neither configured nor a classifier regime
    (``trending``, ``ranging``, ``breakout``, ``unknown``) also warns.
    """
    if market_regime is None:
        return base, None, None
    name = market_regime.strip().lower()
    table = (regimes or {}).get(name)
    if table is None:
        if name in MARKET_REGIMES:
            return base, None, None
        return base, None, f"unknown market regime {market_regime!r}: using the base stages"
    merged = {**asdict(base), **table}
    return StageConfig.from_dict(merged), name, None
