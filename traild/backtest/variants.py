"""Backtest variants (seed phase 6): fixed, fixed+lock, dynamic+lock, and multiplier grids.

* ``fixed``        fixed stages, guaranteed profit lock off (the baseline)
* ``fixed+lock``   fixed stages, profit lock on (isolates the lock)
* ``dynamic+lock`` dynamic stages enabled, profit lock on; the calculator's fallbacks still
                   apply (short history -> ``no_atr``, forced pairs, ...) and are reported
* grids            ``--grid volatility.low=0.6,0.7 session.asian=0.8,0.9``: the cartesian
                   product, each a dynamic+lock variant with those multipliers replaced
                   (a grid with ``regime.<regime>.<stage key>`` axes is dynamic+lock+regime)
* ``dynamic+lock+regime``, ``dynamic+lock+rt``, ``dynamic+lock+regime+rt``: see
                   ``backtest.adaptive`` (regime stage tables, real-time recalculation)

Everything else (stage bases, profit-lock trigger and level, minimum step, ATR bounds, session
adjustment, forced pairs) comes from the configuration.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from traild.backtest.adaptive import ADAPTIVE, REGIME, check_regime_key, is_regime_key
from traild.backtest.names import DEFAULT_VARIANTS as DEFAULT_VARIANTS  # re-exported
from traild.backtest.names import DYNAMIC_LOCK as DYNAMIC_LOCK
from traild.backtest.names import FIXED as FIXED
from traild.backtest.names import FIXED_LOCK as FIXED_LOCK
from traild.core.calculator import REGIMES, SESSIONS, CalculatorParams
from traild.core.errors import UsageError
from traild.core.ladder import LadderPolicy

BASE = {FIXED: (False, False), FIXED_LOCK: (False, True), DYNAMIC_LOCK: (True, True)}
# grid key prefix -> (CalculatorParams field, allowed names); "atr.min"/"atr.max" are scalars
_TABLES = {
    "volatility": ("volatility_multipliers", REGIMES),
    "scalp_volatility": ("scalp_volatility_multipliers", REGIMES),
    "session": ("session_multipliers", SESSIONS),
}
_SCALARS = {"atr.min": "atr_min_multiplier", "atr.max": "atr_max_multiplier"}


@dataclass(frozen=True, slots=True)
class Variant:
    """One way of trailing every trade of the backtest."""

    name: str
    dynamic: bool
    lock: bool
    overrides: tuple[tuple[str, float], ...] = ()  # (grid key, value)
    regime: bool = False  # per-market-regime stage tables (backtest.adaptive)
    realtime: bool = False  # real-time recalculation at each closed bar

    def calculator_params(self, base: CalculatorParams) -> CalculatorParams:
        """The configuration's calculator settings with this variant's switches and values."""
        tables = {field: dict(getattr(base, field)) for field, _ in _TABLES.values()}
        scalars = {field: float(getattr(base, field)) for field in _SCALARS.values()}
        for key, value in self.overrides:
            if is_regime_key(key):
                continue  # regime tables, not calculator parameters
            if key in _SCALARS:
                scalars[_SCALARS[key]] = value
            else:
                prefix, name = key.split(".", 1)
                tables[_TABLES[prefix][0]][name] = value
        return replace(
            base,
            enable_dynamic_trailing=self.dynamic,
            volatility_multipliers=tables["volatility_multipliers"],
            scalp_volatility_multipliers=tables["scalp_volatility_multipliers"],
            session_multipliers=tables["session_multipliers"],
            atr_min_multiplier=scalars["atr_min_multiplier"],
            atr_max_multiplier=scalars["atr_max_multiplier"],
        )

    def ladder_policy(self, base: LadderPolicy) -> LadderPolicy:
        return replace(base, profit_lock=self.lock)


def parse_variants(text: str) -> list[Variant]:
    """``fixed,fixed+lock,dynamic+lock`` (any subset, in the order given)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASE and n not in ADAPTIVE]
    if unknown or not names:
        raise UsageError(
            f"--variants: unknown variant(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {DEFAULT_VARIANTS},{','.join(ADAPTIVE)}"
        )
    return [Variant(n, *BASE[n]) if n in BASE else _adaptive(n, ()) for n in dict.fromkeys(names)]


def _adaptive(name: str, overrides: tuple[tuple[str, float], ...]) -> Variant:
    dynamic, lock, regime, realtime = ADAPTIVE[name]
    label = ",".join(f"{k}={v:g}" for k, v in overrides)
    return Variant(
        f"{name}[{label}]" if label else name, dynamic, lock, overrides, regime, realtime
    )


def parse_grid(items: Sequence[str], base: CalculatorParams) -> list[Variant]:
    """``KEY=V1,V2`` items -> the cartesian product of dynamic+lock variants."""
    if not items:
        return []
    axes: list[list[tuple[str, float]]] = []
    seen: set[str] = set()
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().lower()
        if not sep or not values.strip():
            raise UsageError(f"--grid {item!r}: expected KEY=V1,V2,...")
        _check_key(key)
        if key in seen:
            raise UsageError(f"--grid: {key} given twice")
        seen.add(key)
        axes.append([(key, _multiplier(key, v)) for v in values.split(",") if v.strip()])
    variants = []
    for combo in itertools.product(*axes):
        label = ",".join(f"{k}={v:g}" for k, v in combo)
        if any(is_regime_key(k) for k, _ in combo):
            variant = _adaptive(REGIME, tuple(combo))
        else:
            variant = Variant(f"{DYNAMIC_LOCK}[{label}]", True, True, tuple(combo))
        params = variant.calculator_params(base)
        if params.atr_min_multiplier > params.atr_max_multiplier:
            raise UsageError(f"--grid {label}: atr.min above atr.max")
        variants.append(variant)
    return variants


def _check_key(key: str) -> None:
    if key in _SCALARS:
        return
    if is_regime_key(key):
        check_regime_key(key)
        return
    prefix, _, name = key.partition(".")
    if prefix in _TABLES and name in _TABLES[prefix][1]:
        return
    known = [f"{p}.{n}" for p, (_, names) in _TABLES.items() for n in names] + list(_SCALARS)
    raise UsageError(f"--grid: unknown key {key!r}; known keys: {', '.join(known)}")


def _multiplier(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--grid {key}: not a number: {text.strip()!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--grid {key}: must be a positive number: {text.strip()!r}")
    return value


def baseline_pairs(variants: Sequence[Variant]) -> list[tuple[str, str]]:
    """(dynamic variant, its fixed baseline) for every dynamic variant: the baseline is
    ``fixed+lock`` when it runs (same lock, only the stages differ), else ``fixed``."""
    names = [v.name for v in variants]
    base = FIXED_LOCK if FIXED_LOCK in names else FIXED if FIXED in names else None
    return [] if base is None else [(v.name, base) for v in variants if v.dynamic]
