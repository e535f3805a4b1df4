"""A trade's stage table and the outcome of a stage calculation (SPEC §2, §3), as plain values:
what the calculator (``core.calculator``) reads and writes, what is stored with a trade
(``CalculatedStages.to_json``/``from_json``) and what the ladder compiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from traild.core.errors import StageError
from traild.core.numbers import finite_number

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
# (trigger, lock) pairs scaled together; stage3_min_distance is clamped like a trigger.
SCALED = (
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
        values = {n: finite_number(data[n], f"stage field {n}", StageError) for n in names}
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
        for trig, lock in SCALED[:3]:
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
