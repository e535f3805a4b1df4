"""DynamicTrailingCalculator: the seed plan's examples, every fallback reason, clamps, locks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from traild.core.calculator import (
    DYNAMIC,
    FALLBACK_REASONS,
    FIXED,
    CalculatedStages,
    CalculatorParams,
    DynamicTrailingCalculator,
    MarketConditions,
    StageConfig,
    is_forced_fixed,
)
from traild.core.errors import StageError

EURUSD = "CS.D.EURUSD.MINI.IP"
REGULAR = StageConfig(
    early_be_trigger=15,
    early_be_buffer=2,
    stage1_trigger=20,
    stage1_lock=8,
    stage2_trigger=30,
    stage2_lock=15,
    stage3_trigger=40,
    stage3_atr_multiplier=1.0,
    stage3_min_distance=10,
)
SCALP = StageConfig(
    early_be_trigger=10,
    early_be_buffer=1,
    stage1_trigger=12,
    stage1_lock=5,
    stage2_trigger=15,
    stage2_lock=10,
    stage3_trigger=20,
    stage3_atr_multiplier=0.8,
    stage3_min_distance=5,
)
# The plan's unit tests check its literal per-trigger clamp ("per_stage"); the default "ladder"
# clamp has its own tests below.
ENABLED = CalculatorParams(enable_dynamic_trailing=True, atr_clamp="per_stage")


def calc(params: CalculatorParams = ENABLED) -> DynamicTrailingCalculator:
    return DynamicTrailingCalculator(params)


def cond(
    atr: float | None = 8.0, regime: str | None = "normal", session: str | None = None
) -> MarketConditions:
    return MarketConditions(EURUSD, atr, regime, session)


# -- the seed plan's unit tests ----------------------------------------------------------------
def test_low_volatility_asian_regular_early_be_is_9_45_as_in_the_plan() -> None:
    result = calc().calculate_stages(cond(8.0, "low", "asian"), REGULAR, is_scalp=False)
    assert result.method == DYNAMIC
    assert result.fallback_reason is None
    assert result.stages.early_be_trigger == 9.45  # 15 x 0.7 x 0.9, above 0.8 x 8 = 6.4
    assert result.factor == pytest.approx(0.63)
    assert 6.4 <= result.stages.early_be_trigger < 15


def test_scalp_stages_are_tighter_than_regular_ones_under_the_same_conditions() -> None:
    conditions = cond(10.0, "normal", None)
    base = REGULAR
    regular = calc().calculate_stages(conditions, base, is_scalp=False)
    scalp = calc().calculate_stages(conditions, base, is_scalp=True)
    assert scalp.stages.stage1_trigger < regular.stages.stage1_trigger
    assert regular.stages.stage1_trigger == 20.0  # 20 x 1.0
    assert scalp.stages.stage1_trigger == 16.0  # 20 x 0.8


@pytest.mark.parametrize(
    ("regime", "atr", "regular", "scalp"),
    [
        ("low", 10.0, 10.5, 9.0),
        ("normal", 10.0, 15.0, 12.0),
        ("high", 10.0, 19.5, 15.0),
        ("extreme", 16.0, 24.0, 18.0),
    ],
)
def test_volatility_multipliers_match_the_plan_tables(
    regime: str, atr: float, regular: float, scalp: float
) -> None:
    conditions = cond(atr, regime, None)  # ATR chosen so that nothing is clamped
    assert calc().calculate_stages(conditions, REGULAR).stages.early_be_trigger == regular
    got = calc().calculate_stages(conditions, REGULAR, is_scalp=True)
    assert got.stages.early_be_trigger == scalp


@pytest.mark.parametrize(
    ("session", "factor"), [("asian", 0.9), ("london", 1.1), ("new_york", 1.1), ("overlap", 1.2)]
)
def test_session_factor_multiplies_the_volatility_factor(session: str, factor: float) -> None:
    result = calc().calculate_stages(cond(20.0, "high", session), REGULAR)
    assert result.factor == pytest.approx(1.3 * factor)
    assert result.stages.stage1_trigger == round(20 * 1.3 * factor, 2)


def test_session_adjustment_disabled_ignores_the_session() -> None:
    params = replace(ENABLED, enable_session_adjustment=False)
    result = calc(params).calculate_stages(cond(10.0, "normal", "overlap"), REGULAR)
    assert result.factor == 1.0
    assert result.stages == REGULAR


# -- ATR clamp and locks ------------------------------------------------------------------------
def test_trigger_below_the_atr_minimum_is_raised_to_0_8_atr() -> None:
    # 15 x 0.6 (scalp low) x 0.9 (asian) = 8.1 < 0.8 x 12 = 9.6
    result = calc().calculate_stages(cond(12.0, "low", "asian"), REGULAR, is_scalp=True)
    assert result.stages.early_be_trigger == 9.6


def test_trigger_above_the_atr_maximum_is_cut_to_4_atr() -> None:
    # stage3 40 x 1.6 x 1.2 = 76.8 > 4 x 5 = 20: every trigger is cut to 20 -> inconsistent;
    # so check the clamp on its own with a base whose only large value is stage3.
    base = replace(REGULAR, stage3_trigger=200.0)
    result = calc().calculate_stages(cond(20.0, "normal", None), base)
    assert result.method == DYNAMIC
    assert result.stages.stage3_trigger == 80.0  # 4 x 20
    assert result.stages.stage2_trigger == 30.0  # untouched


def test_the_atr_multiplier_is_neither_scaled_nor_rounded() -> None:
    base = replace(REGULAR, stage3_atr_multiplier=0.875)
    result = calc().calculate_stages(cond(10.0, "low", "asian"), base)
    assert result.method == DYNAMIC
    assert result.stages.stage3_atr_multiplier == 0.875
    assert CalculatedStages.from_json(result.to_json()).stages.stage3_atr_multiplier == 0.875


def test_stage3_min_distance_is_scaled_and_clamped_like_a_trigger() -> None:
    result = calc().calculate_stages(cond(20.0, "normal", None), REGULAR)
    assert result.stages.stage3_min_distance == 16.0  # 10 x 1.0 raised to 0.8 x 20
    assert result.stages.stage3_atr_multiplier == REGULAR.stage3_atr_multiplier  # not scaled


def test_locks_are_scaled_with_their_own_triggers() -> None:
    result = calc().calculate_stages(cond(8.0, "low", "asian"), REGULAR)
    s = result.stages
    assert s.early_be_buffer == 1.26  # 2 x 9.45 / 15
    assert s.stage1_trigger == 12.6 and s.stage1_lock == 5.04  # 8 x 12.6 / 20
    assert s.stage2_trigger == 18.9 and s.stage2_lock == 9.45  # 15 x 18.9 / 30


def test_a_clamped_trigger_scales_its_lock_by_the_clamped_ratio() -> None:
    # early BE: 15 x 0.6 x 0.9 = 8.1 -> clamped to 9.6; buffer 2 x 9.6 / 15 = 1.28
    result = calc().calculate_stages(cond(12.0, "low", "asian"), REGULAR, is_scalp=True)
    assert result.stages.early_be_buffer == 1.28


def test_values_are_kept_to_a_hundredth_of_a_pip() -> None:
    base = replace(REGULAR, early_be_trigger=15.55, early_be_buffer=2.35)
    result = calc().calculate_stages(cond(10.0, "low", "london"), base)
    # 15.55 x 0.77 = 11.9735 -> 11.97 ; 2.35 x 11.97 / 15.55 = 1.80896... -> 1.81
    assert result.stages.early_be_trigger == 11.97
    assert result.stages.early_be_buffer == 1.81


# -- fallbacks: exactly one reason each -------------------------------------------------------
def test_disabled_dynamic_trailing_falls_back_with_reason_disabled() -> None:
    result = calc(CalculatorParams()).calculate_stages(cond(), REGULAR)
    assert (result.method, result.fallback_reason) == (FIXED, "disabled")
    assert result.stages == REGULAR


@pytest.mark.parametrize("listed", [EURUSD, "EURUSD"])
def test_forced_fixed_pair_falls_back_by_epic_or_symbol(listed: str) -> None:
    params = replace(ENABLED, force_fixed_trailing_pairs=frozenset([listed]))
    result = calc(params).calculate_stages(cond(), REGULAR)
    assert (result.method, result.fallback_reason) == (FIXED, "forced_fixed_pair")


def test_forcing_another_pair_leaves_this_one_dynamic() -> None:
    params = replace(ENABLED, force_fixed_trailing_pairs=frozenset(["CS.D.GBPUSD.MINI.IP"]))
    assert calc(params).calculate_stages(cond(), REGULAR).method == DYNAMIC
    assert not is_forced_fixed(EURUSD, frozenset(["GBPUSD"]))


@pytest.mark.parametrize("override", ["fixed", "off"])
def test_per_trade_override_falls_back_with_reason_trade_override(override: str) -> None:
    result = calc().calculate_stages(cond(), REGULAR, override=override)
    assert (result.method, result.fallback_reason) == (FIXED, "trade_override")


def test_missing_conditions_fall_back_with_reason_no_conditions() -> None:
    result = calc().calculate_stages(None, REGULAR, epic=EURUSD)
    assert (result.method, result.fallback_reason) == (FIXED, "no_conditions")


def test_conditions_without_atr_fall_back_with_reason_no_atr() -> None:
    result = calc().calculate_stages(cond(None, "high", "london"), REGULAR)
    assert (result.method, result.fallback_reason) == (FIXED, "no_atr")


@pytest.mark.parametrize("atr", [0.0, -3.0, math.nan, math.inf])
def test_unusable_atr_falls_back_with_reason_invalid_atr(atr: float) -> None:
    result = calc().calculate_stages(cond(atr), REGULAR)
    assert (result.method, result.fallback_reason) == (FIXED, "invalid_atr")
    assert result.atr_pips is None


def test_a_failing_calculation_falls_back_with_reason_calculation_error() -> None:
    params = replace(ENABLED, volatility_multipliers={"low": 0.7})  # no "normal" entry
    result = calc(params).calculate_stages(cond(8.0, "normal"), REGULAR)
    assert (result.method, result.fallback_reason) == (FIXED, "calculation_error")
    assert result.stages == REGULAR


def test_a_nan_multiplier_is_a_calculation_error_not_nan_stages() -> None:
    params = replace(
        ENABLED, volatility_multipliers={"low": 0.7, "normal": math.nan, "high": 1, "extreme": 2}
    )
    result = calc(params).calculate_stages(cond(8.0, "normal"), REGULAR)
    assert result.fallback_reason == "calculation_error"


def test_clamping_that_collapses_two_triggers_falls_back_with_inconsistent_stages() -> None:
    # ATR 40: 0.8 x 40 = 32 lifts early BE, stage1 and stage2 to 32: stage1 == stage2.
    result = calc().calculate_stages(cond(40.0, "normal", None), REGULAR)
    assert (result.method, result.fallback_reason) == (FIXED, "inconsistent_stages")
    assert result.stages == REGULAR


def test_every_fallback_reason_is_reachable_and_listed() -> None:
    seen = {
        calc(CalculatorParams()).calculate_stages(cond(), REGULAR).fallback_reason,
        calc(replace(ENABLED, force_fixed_trailing_pairs=frozenset(["EURUSD"])))
        .calculate_stages(cond(), REGULAR)
        .fallback_reason,
        calc().calculate_stages(cond(), REGULAR, override="fixed").fallback_reason,
        calc(replace(ENABLED, dynamic_trailing_pairs=frozenset(["GBPUSD"])))
        .calculate_stages(cond(), REGULAR)
        .fallback_reason,
        calc().calculate_stages(None, REGULAR, epic=EURUSD).fallback_reason,
        calc().calculate_stages(cond(None), REGULAR).fallback_reason,
        calc().calculate_stages(cond(-1.0), REGULAR).fallback_reason,
        calc(replace(ENABLED, volatility_multipliers={}))
        .calculate_stages(cond(), REGULAR)
        .fallback_reason,
        calc().calculate_stages(cond(40.0), REGULAR).fallback_reason,
    }
    assert seen == set(FALLBACK_REASONS)


@pytest.mark.parametrize("listed", [EURUSD, "EURUSD"])
def test_pair_in_the_rollout_allowlist_trails_dynamically(listed: str) -> None:
    params = replace(ENABLED, dynamic_trailing_pairs=frozenset([listed, "GBPUSD"]))
    assert calc(params).calculate_stages(cond(), REGULAR).method == DYNAMIC


def test_pair_outside_a_non_empty_allowlist_falls_back_with_not_in_rollout() -> None:
    params = replace(ENABLED, dynamic_trailing_pairs=frozenset(["GBPUSD", "CS.D.USDJPY.MINI.IP"]))
    result = calc(params).calculate_stages(cond(), REGULAR)
    assert (result.method, result.fallback_reason) == (FIXED, "not_in_rollout")
    assert result.stages == REGULAR


def test_empty_allowlist_lets_every_pair_trail_dynamically() -> None:
    assert calc(replace(ENABLED, dynamic_trailing_pairs=frozenset())).calculate_stages(
        cond(), REGULAR
    ).method == (DYNAMIC)


def test_fallback_precedence_forced_before_not_in_rollout_before_override() -> None:
    params = replace(
        ENABLED,
        force_fixed_trailing_pairs=frozenset(["EURUSD"]),
        dynamic_trailing_pairs=frozenset(["GBPUSD"]),
    )
    got = calc(params).calculate_stages(cond(), REGULAR, override="fixed")
    assert got.fallback_reason == "forced_fixed_pair"
    params = replace(ENABLED, dynamic_trailing_pairs=frozenset(["GBPUSD"]))
    got = calc(params).calculate_stages(cond(), REGULAR, override="fixed")
    assert got.fallback_reason == "not_in_rollout"
    params = replace(CalculatorParams(), dynamic_trailing_pairs=frozenset(["GBPUSD"]))
    assert calc(params).calculate_stages(cond(), REGULAR).fallback_reason == "disabled"


def test_fallback_precedence_disabled_before_forced_before_override() -> None:
    params = CalculatorParams(force_fixed_trailing_pairs=frozenset(["EURUSD"]))
    assert calc(params).calculate_stages(None, REGULAR, override="fixed").fallback_reason == (
        "disabled"
    )
    params = replace(ENABLED, force_fixed_trailing_pairs=frozenset(["EURUSD"]))
    got = calc(params).calculate_stages(None, REGULAR, override="fixed", epic=EURUSD)
    assert got.fallback_reason == "forced_fixed_pair"


def test_fixed_fallback_keeps_a_usable_atr_for_the_stage3_distance() -> None:
    result = calc(CalculatorParams()).calculate_stages(cond(12.5), REGULAR)
    assert result.atr_pips == 12.5


# -- regime and session strings -----------------------------------------------------------------
def test_missing_regime_counts_as_normal_without_a_warning() -> None:
    result = calc().calculate_stages(cond(20.0, None, None), REGULAR)
    assert result.factor == 1.0 and result.warnings == ()


def test_missing_session_is_factor_one_without_a_warning() -> None:
    result = calc().calculate_stages(cond(20.0, "high", None), REGULAR)
    assert result.factor == pytest.approx(1.3) and result.warnings == ()


def test_unknown_regime_counts_as_normal_with_a_warning() -> None:
    result = calc().calculate_stages(cond(20.0, "volcanic", "london"), REGULAR)
    assert result.method == DYNAMIC
    assert result.factor == pytest.approx(1.1)
    assert len(result.warnings) == 1 and "volcanic" in result.warnings[0]


def test_unknown_session_is_factor_one_with_a_warning() -> None:
    result = calc().calculate_stages(cond(20.0, "low", "sydney"), REGULAR)
    assert result.factor == pytest.approx(0.7)
    assert len(result.warnings) == 1 and "sydney" in result.warnings[0]


def test_regime_and_session_are_case_and_space_insensitive() -> None:
    result = calc().calculate_stages(cond(20.0, " High ", "LONDON"), REGULAR)
    assert result.factor == pytest.approx(1.43) and result.warnings == ()


# -- sanity range ---------------------------------------------------------------------------------
def test_stages_outside_the_sanity_range_are_reported() -> None:
    params = replace(ENABLED, stage_alert_min_pips=10.0, stage_alert_max_pips=30.0)
    result = calc(params).calculate_stages(cond(8.0, "low", "asian"), REGULAR)
    # 9.45, 12.6, 18.9, 25.2 and min distance 6.4 (clamped up from 6.3)
    assert result.out_of_range == ("early_be_trigger", "stage3_min_distance")
    assert result.method == DYNAMIC  # reported, not rejected


def test_stages_inside_the_default_range_report_nothing() -> None:
    assert calc().calculate_stages(cond(8.0, "low", "asian"), REGULAR).out_of_range == ()


def test_fixed_fallback_stages_are_range_checked_too() -> None:
    params = CalculatorParams(stage_alert_max_pips=35.0)
    assert calc(params).calculate_stages(None, REGULAR).out_of_range == ("stage3_trigger",)


# -- StageConfig and the stored JSON -------------------------------------------------------------
def test_default_stage_configs_are_consistent() -> None:
    assert REGULAR.problems() == [] and SCALP.problems() == []


@pytest.mark.parametrize(
    "change",
    [
        {"early_be_trigger": 0.0},
        {"early_be_trigger": 21.0},
        {"stage2_trigger": 20.0},
        {"stage3_trigger": 30.0},
        {"early_be_buffer": 15.0},
        {"stage1_lock": -1.0},
        {"stage2_lock": 7.0},
        {"stage3_min_distance": 0.0},
    ],
)
def test_inconsistent_stage_configs_are_reported(change: dict[str, float]) -> None:
    assert replace(REGULAR, **change).problems()


def test_early_be_trigger_may_equal_stage1_trigger() -> None:
    assert replace(REGULAR, early_be_trigger=20.0).problems() == []


def test_calculated_stages_round_trip_through_json() -> None:
    result = calc().calculate_stages(cond(8.0, "low", "asian"), REGULAR)
    again = CalculatedStages.from_json(result.to_json())
    assert again.stages == result.stages
    assert (again.method, again.fallback_reason, again.atr_pips) == (DYNAMIC, None, 8.0)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "stages",
        {"stages": {"early_be_trigger": 15}},
        {"method": "magic", "stages": REGULAR.as_dict()},
        {"stages": {**REGULAR.as_dict(), "stage2_trigger": 10}},
        {"stages": {**REGULAR.as_dict(), "stage1_lock": "eight"}},
        {"stages": {**REGULAR.as_dict(), "stage1_lock": True}},
        {"stages": {**REGULAR.as_dict(), "stage1_lock": "nan"}},
        {"stages": {**REGULAR.as_dict(), "surprise": 1}},
    ],
)
def test_malformed_stored_stages_raise_stage_error(stored: object) -> None:
    with pytest.raises(StageError):
        CalculatedStages.from_json(stored)


def test_default_ladder_clamp_keeps_the_ladder_consistent_where_per_stage_collapses_it() -> None:
    from traild.core.calculator import (
        CalculatorParams,
        DynamicTrailingCalculator,
        MarketConditions,
        StageConfig,
    )

    base = StageConfig(15, 2, 20, 8, 30, 15, 40, 1.0, 10)
    cond = MarketConditions("CS.D.EURUSD.MINI.IP", 4.0, "normal", "london")
    per_stage = DynamicTrailingCalculator(
        CalculatorParams(enable_dynamic_trailing=True, atr_clamp="per_stage")
    )
    collapsed = per_stage.calculate_stages(cond, base)
    assert (collapsed.method, collapsed.fallback_reason) == ("fixed", "inconsistent_stages")

    ladder = DynamicTrailingCalculator(CalculatorParams(enable_dynamic_trailing=True))
    result = ladder.calculate_stages(cond, base)
    # 15 x 1.0 x 1.1 = 16.5 > 4 x ATR = 16: the factor becomes 16/15 for the whole ladder
    assert result.method == "dynamic_volatility"
    s = result.stages
    assert (s.early_be_trigger, s.stage1_trigger, s.stage2_trigger, s.stage3_trigger) == (
        16.0,
        21.33,
        32.0,
        42.67,
    )
    assert (s.early_be_buffer, s.stage1_lock, s.stage2_lock) == (2.13, 8.53, 16.0)
    assert s.stage3_min_distance == 10.67
    # inside the band both modes agree (the plan's worked example)
    low = MarketConditions("CS.D.EURUSD.MINI.IP", 8.0, "low", "asian")
    assert ladder.calculate_stages(low, base).stages.early_be_trigger == 9.45
    assert per_stage.calculate_stages(low, base).stages.early_be_trigger == 9.45


def test_settings_default_atr_clamp_is_ladder_and_per_stage_is_selectable() -> None:
    from traild.config.settings import Settings

    assert Settings().calculator_params().atr_clamp == "ladder"
    chosen = Settings.model_validate({"trailing": {"atr_clamp": "per_stage"}})
    assert chosen.calculator_params().atr_clamp == "per_stage"
