"""Backtest variants and multiplier grids."""

from __future__ import annotations

import pytest

from traild.backtest.variants import Variant, parse_grid, parse_variants
from traild.core.calculator import CalculatorParams
from traild.core.errors import UsageError
from traild.core.ladder import LadderPolicy

BASE = CalculatorParams()


def test_base_variants_switch_dynamic_trailing_and_the_profit_lock() -> None:
    fixed, fixed_lock, dynamic = parse_variants("fixed,fixed+lock,dynamic+lock")
    assert [(v.dynamic, v.lock) for v in (fixed, fixed_lock, dynamic)] == [
        (False, False),
        (False, True),
        (True, True),
    ]
    assert not fixed.ladder_policy(LadderPolicy()).profit_lock
    assert dynamic.calculator_params(BASE).enable_dynamic_trailing
    assert [v.name for v in parse_variants(" dynamic+lock , fixed,fixed")] == [
        "dynamic+lock",
        "fixed",
    ]


def test_unknown_variant_is_an_error() -> None:
    with pytest.raises(UsageError, match=r"unknown variant.*trailing"):
        parse_variants("fixed,trailing")


def test_grid_is_the_cartesian_product_of_dynamic_lock_variants_named_by_their_values() -> None:
    variants = parse_grid(["volatility.low=0.6,0.7", "session.asian=0.8,0.9"], BASE)
    assert [v.name for v in variants] == [
        "dynamic+lock[volatility.low=0.6,session.asian=0.8]",
        "dynamic+lock[volatility.low=0.6,session.asian=0.9]",
        "dynamic+lock[volatility.low=0.7,session.asian=0.8]",
        "dynamic+lock[volatility.low=0.7,session.asian=0.9]",
    ]
    params = variants[1].calculator_params(BASE)
    assert params.volatility_multipliers["low"] == 0.6
    assert params.session_multipliers == {
        "asian": 0.9,
        "london": 1.1,
        "new_york": 1.1,
        "overlap": 1.2,
    }
    assert params.enable_dynamic_trailing and variants[1].lock
    assert BASE.volatility_multipliers["low"] == 0.7  # the base is left alone


def test_grid_reaches_scalp_multipliers_and_atr_bounds() -> None:
    (v,) = parse_grid(["scalp_volatility.extreme=1.5", "atr.max=3"], BASE)
    params = v.calculator_params(BASE)
    assert params.scalp_volatility_multipliers["extreme"] == 1.5
    assert params.atr_max_multiplier == 3.0


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("volatility.calm=0.6", "unknown key 'volatility.calm'"),
        ("speed=2", "unknown key 'speed'"),
        ("volatility.low", "expected KEY=V1,V2"),
        ("volatility.low=fast", "not a number"),
        ("session.asian=0", "must be a positive number"),
        ("atr.min=5", "atr.min above atr.max"),
    ],
)
def test_bad_grid_is_an_error(item: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_grid([item], BASE)


def test_no_grid_adds_no_variant() -> None:
    assert parse_grid([], BASE) == []
    assert Variant("x", True, True).calculator_params(BASE).atr_min_multiplier == 0.8
