"""One rule completes given conditions from traild's own bars (``core.market.completed``), and
all three paths use it: the daemon's alert at adoption (``runtime.stages.merge_conditions``),
``traild simulate`` and the backtest's signals. A NaN in any given field (a NULL read as NaN)
is missing, so the bars' value is used; it never reaches the calculator."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.backtest.helpers import OANDA
from traild.backtest.markets import Market
from traild.backtest.signals import Signal, resolve
from traild.backtest.simulate import SimulationRequest, simulate
from traild.config.settings import Settings
from traild.core.conditions import ConditionParams
from traild.core.market import MarketConditions, completed, present, remeasured
from traild.core.messages import AlertRecord, Direction
from traild.runtime.stages import merge_conditions

EPIC = "CS.D.EURUSD.MINI.IP"
NAN: Any = math.nan  # in a str field too: what a NaN-writing client leaves in a column
AT = datetime(2014, 5, 2, 12, 0, tzinfo=UTC)  # a day and a half in: every field measurable
# the given conditions, all different from what the bars measure at AT
GIVEN = MarketConditions(EPIC, 9.25, "low", "asian", "trending")
FIELDS = ("atr_pips", "volatility_regime", "session", "market_regime")
CASES = [*FIELDS, "all"]


def _with_nan(field: str) -> MarketConditions:
    names = FIELDS if field == "all" else (field,)
    return replace(GIVEN, **dict.fromkeys(names, NAN))


def _expected(field: str, bars: MarketConditions) -> MarketConditions:
    names = FIELDS if field == "all" else (field,)
    return replace(GIVEN, **{n: getattr(bars, n) for n in names})


def test_present_and_completed_treat_none_empty_and_nan_as_missing() -> None:
    assert [present(v) for v in (None, "", NAN, 0.0, "low")] == [False, False, False, True, True]
    own = MarketConditions(EPIC, 7.5, "high", "london", "breakout")
    assert completed(MarketConditions(EPIC, NAN, "", NAN, None), own) == own
    assert completed(MarketConditions(EPIC, NAN), None) == MarketConditions(EPIC)
    assert completed(GIVEN, own) == GIVEN
    # real-time recalculation: the bars first, the entry's market regime while they have none
    assert remeasured(EPIC, replace(own, market_regime=None), "ranging").market_regime == (
        "ranging"
    )
    assert remeasured(EPIC, own, "ranging") == own


@pytest.mark.parametrize("field", CASES)
def test_a_nan_alert_field_is_completed_from_the_bars_at_adoption(field: str) -> None:
    own = MarketConditions(EPIC, 7.5, "high", "london", "breakout")
    given = _with_nan(field)
    alert = AlertRecord(
        1,
        EPIC,
        atr=NAN if field in ("atr_pips", "all") else 0.000925,  # 9.25 pips
        volatility_regime=given.volatility_regime,
        market_regime=given.market_regime,
        market_session=given.session,
    )
    got = merge_conditions(EPIC, alert, own, 0.0001)
    assert got is not None
    assert got.atr_pips == pytest.approx(_expected(field, own).atr_pips)
    assert replace(got, atr_pips=None) == replace(_expected(field, own), atr_pips=None)


@pytest.fixture(scope="module")
def bars_simulate(ticks_dir: Path) -> MarketConditions:
    """What the bars measure at AT, as ``simulate`` reports it with nothing given."""
    c = _simulate(ticks_dir, MarketConditions(EPIC))["conditions"]
    assert set(c["source"].values()) == {"ticks"}
    out = MarketConditions(EPIC, c["atr_pips"], c["regime"], c["session"], c["market_regime"])
    _differs_from_given(out)
    return out


def _differs_from_given(bars: MarketConditions) -> None:
    """Every field measured, and none equal to the given one (so the test can tell them apart)."""
    assert all(present(getattr(bars, f)) for f in FIELDS)
    assert all(getattr(bars, f) != getattr(GIVEN, f) for f in FIELDS)


def _simulate(ticks_dir: Path, given: MarketConditions) -> dict[str, Any]:
    req = SimulationRequest(
        str(ticks_dir / OANDA),
        EPIC,
        Direction.BUY,
        stop_pips=10.0,
        limit_pips=5.0,
        at=AT,
        atr_pips=given.atr_pips,
        regime=given.volatility_regime,
        session=given.session,
        market_regime=given.market_regime,
    )
    return simulate(Settings(trailing={"enable_dynamic_trailing": True}), req)


@pytest.mark.parametrize("field", CASES)
def test_a_nan_given_to_simulate_is_completed_from_the_bars(
    field: str, ticks_dir: Path, bars_simulate: MarketConditions
) -> None:
    c = _simulate(ticks_dir, _with_nan(field))["conditions"]
    got = MarketConditions(EPIC, c["atr_pips"], c["regime"], c["session"], c["market_regime"])
    assert got == _expected(field, bars_simulate)
    names = {"atr_pips": "atr_pips", "volatility_regime": "regime"}
    nan = FIELDS if field == "all" else (field,)
    assert c["source"] == {names.get(f, f): "ticks" if f in nan else "given" for f in FIELDS}


def _signal(given: MarketConditions) -> Signal:
    return Signal(
        int(AT.timestamp() * 1000),
        0,
        EPIC,
        Direction.BUY,
        10.0,
        None,
        atr_pips=given.atr_pips,
        volatility_regime=given.volatility_regime,
        session=given.session,
        market_regime=given.market_regime,
    )


@pytest.mark.parametrize("field", CASES)
def test_a_nan_in_a_backtest_signal_is_completed_from_the_bars(field: str, oanda: Market) -> None:
    (bare,) = resolve([_signal(MarketConditions(EPIC))], [oanda], ConditionParams())
    bars = bare.conditions
    _differs_from_given(bars)
    (spec,) = resolve([_signal(_with_nan(field))], [oanda], ConditionParams())
    assert spec.conditions == _expected(field, bars)
