"""Stage configuration and the DynamicTrailingCalculator (names from the seed plan).

    factor   = V[regime] x (S[session] if session adjustment else 1)
    trigger' = clamp(base_trigger x factor, atr_min x ATR, atr_max x ATR)
    lock'    = base_lock x trigger' / base_trigger

A per-regime override table (``regimes[market_regime]``, any subset of the stage keys) is laid
over the base before the factor. ``recalculate`` is the real-time entry point: new stages only
when the volatility regime moved ``shift`` levels or more from the one the current stages used.

Values are kept to 0.01 pip (Decimal arithmetic, half-up); ticks appear only in the ladder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from traild.core.errors import StageError
from traild.core.regime import MARKET_REGIMES

REGIMES = ("low", "normal", "high", "extreme")
SESSIONS = ("asian", "london", "new_york", "overlap")
FIXED = "fixed"
DYNAMIC = "dynamic_volatility"
FALLBACK_REASONS = (
    "disabled",
    "forced_fixed_pair",
    "not_in_rollout",
    "trade_override",
    "no_conditions",
    "no_atr",
    "invalid_atr",
    "calculation_error",
    "inconsistent_stages",
)
_CENT = Decimal("0.01")
# (trigger, lock) pairs scaled together; stage3_min_distance is clamped like a trigger.
_SCALED = (
    ("early_be_trigger", "early_be_buffer"),
    ("stage1_trigger", "stage1_lock"),
    ("stage2_trigger", "stage2_lock"),
    ("stage3_trigger", None),
    ("stage3_min_distance", None),
)
# market regime -> partial stage config (pips), laid over the base before the factor
RegimeTables = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class StageConfig:
    """A trade's ladder in pips (see SPEC §2)."""

    early_be_trigger: float
    early_be_buffer: float
    stage1_trigger: float
    stage1_lock: float
    stage2_trigger: float
    stage2_lock: float
    stage3_trigger: float
    stage3_atr_multiplier: float
    stage3_min_distance: float

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return _STAGE_FIELDS

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageConfig:
        """Build from a mapping; raises StageError on a missing, unknown or non-numeric field."""
        names = cls.field_names()
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise StageError(f"stage fields: missing {missing}, unknown {unknown}")
        values: dict[str, float] = {}
        for name in names:
            raw = data[name]
            if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
                raise StageError(f"stage field {name} is not a number: {raw!r}")
            try:
                value = float(raw)
            except ValueError:
                raise StageError(f"stage field {name} is not a number: {raw!r}") from None
            if not math.isfinite(value):
                raise StageError(f"stage field {name} is not finite: {raw!r}")
            values[name] = value
        return cls(**values)

    def as_dict(self) -> dict[str, float]:
        """Pips rounded to 0.01; the ATR multiplier is a factor and is kept as configured."""
        return {
            k: (v if k == "stage3_atr_multiplier" else round(v, 2))
            for k in _STAGE_FIELDS
            for v in (getattr(self, k),)
        }

    def problems(self) -> list[str]:
        """Consistency violations (empty when usable)."""
        out: list[str] = []
        if not 0 < self.early_be_trigger <= self.stage1_trigger:
            out.append("need 0 < early_be_trigger <= stage1_trigger")
        if not self.stage1_trigger < self.stage2_trigger < self.stage3_trigger:
            out.append("need stage1_trigger < stage2_trigger < stage3_trigger")
        for trig, lock in _SCALED[:3]:
            assert lock is not None
            if not 0 <= getattr(self, lock) < getattr(self, trig):
                out.append(f"need 0 <= {lock} < {trig}")
        if self.stage1_lock > self.stage2_lock:
            out.append("need stage1_lock <= stage2_lock")
        if self.stage3_min_distance <= 0 or self.stage3_atr_multiplier < 0:
            out.append("need stage3_min_distance > 0 and stage3_atr_multiplier >= 0")
        return out


_STAGE_FIELDS = tuple(f.name for f in fields(StageConfig))


@dataclass(frozen=True, slots=True)
class MarketConditions:
    """The market when a trade is adopted. ATR in pips; strings as the alert gave them."""

    epic: str
    atr_pips: float | None = None
    volatility_regime: str | None = None
    session: str | None = None
    market_regime: str | None = None


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


@dataclass(frozen=True, slots=True)
class CalculatedStages:
    """The outcome of one calculation: stages, method, the one fallback reason, diagnostics."""

    stages: StageConfig
    method: str
    fallback_reason: str | None = None
    factor: float | None = None
    atr_pips: float | None = None
    warnings: tuple[str, ...] = ()
    out_of_range: tuple[str, ...] = ()
    # The volatility regime the factor used and the market regime whose table was applied
    # (None: the base table); real-time recalculation measures shifts from the former.
    volatility_regime: str | None = None
    market_regime: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The form stored in ``trade_log.calculated_stages``."""
        return {
            "method": self.method,
            "fallback_reason": self.fallback_reason,
            "factor": self.factor,
            "atr_pips": self.atr_pips,
            "volatility_regime": self.volatility_regime,
            "market_regime": self.market_regime,
            "stages": self.stages.as_dict(),
        }

    @classmethod
    def from_json(cls, data: Any) -> CalculatedStages:
        """Parse a stored value; raises StageError on anything malformed or inconsistent."""
        if not isinstance(data, Mapping) or not isinstance(data.get("stages"), Mapping):
            raise StageError(f"calculated_stages is not a stage object: {str(data)[:80]!r}")
        stages = StageConfig.from_dict(data["stages"])
        if stages.problems():
            raise StageError("stored stages inconsistent: " + "; ".join(stages.problems()))
        method = data.get("method", DYNAMIC)
        if method not in (FIXED, DYNAMIC):
            raise StageError(f"unknown calculation method {method!r}")
        atr = data.get("atr_pips")
        factor = data.get("factor")
        vol, market = data.get("volatility_regime"), data.get("market_regime")
        return cls(
            stages,
            method,
            data.get("fallback_reason"),
            float(factor) if isinstance(factor, int | float) else None,
            float(atr) if isinstance(atr, int | float) and atr > 0 else None,
            volatility_regime=vol if vol in REGIMES else None,
            market_regime=market if isinstance(market, str) else None,
        )


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
        for trig, lock in _SCALED:
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
