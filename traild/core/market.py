"""The market conditions a trade's stages are computed from, and the one rule that completes
given conditions (an alert's, a signal's, the command line's) from traild's own bars (SPEC §3).

``completed`` is used by the daemon's adoption (``runtime.stages``), ``traild simulate`` and the
backtest's entries; ``remeasured`` by real-time recalculation. A field counts as missing when
it is None, empty or NaN (a NULL column read as NaN, a NaN ATR): a NaN is never handed on to
the calculator, where it would read as a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class MarketConditions:
    """The market when a trade is adopted. ATR in pips; strings as the alert gave them."""

    epic: str
    atr_pips: float | None = None
    volatility_regime: str | None = None
    session: str | None = None
    market_regime: str | None = None


def present(value: object) -> bool:
    """True unless ``value`` is None, an empty string or NaN."""
    return value is not None and value == value and value != ""


def _pick(given: _T | None, own: _T | None) -> _T | None:
    if present(given):
        return given
    return own if present(own) else None


def completed(given: MarketConditions, own: MarketConditions | None) -> MarketConditions:
    """``given``'s fields where present, the others from ``own`` (traild's own bars; None:
    none yet). The epic is ``given``'s."""
    if own is None:
        own = MarketConditions(given.epic)
    return MarketConditions(
        given.epic,
        _pick(given.atr_pips, own.atr_pips),
        _pick(given.volatility_regime, own.volatility_regime),
        _pick(given.session, own.session),
        _pick(given.market_regime, own.market_regime),
    )


def remeasured(
    epic: str, own: MarketConditions, entry_market_regime: str | None
) -> MarketConditions:
    """The conditions a real-time recalculation uses: the bars' measurement, with the trade's
    market regime at entry while the bars classify none."""
    bars = MarketConditions(
        epic, own.atr_pips, own.volatility_regime, own.session, own.market_regime
    )
    return completed(bars, MarketConditions(epic, market_regime=entry_market_regime))
