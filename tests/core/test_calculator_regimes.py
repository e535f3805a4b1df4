"""Regime-specific stage tables: laid over the base before the factor, only the keys named."""

from __future__ import annotations

from dataclasses import asdict

from traild.core.calculator import (
    DYNAMIC,
    FIXED,
    CalculatedStages,
    CalculatorParams,
    DynamicTrailingCalculator,
    MarketConditions,
    StageConfig,
    regime_base,
    regime_shift,
)

BASE = StageConfig(15, 2, 20, 8, 30, 15, 40, 1.0, 10)
TABLES = {
    "trending": {"stage3_trigger": 50.0, "stage3_min_distance": 15.0},
    "ranging": {"stage1_trigger": 18.0, "stage1_lock": 9.0},
}
ON = DynamicTrailingCalculator(CalculatorParams(enable_dynamic_trailing=True))


def _cond(market: str | None, regime: str = "normal") -> MarketConditions:
    return MarketConditions("CS.D.EURUSD.MINI.IP", 20.0, regime, None, market)


def test_a_regime_table_changes_only_the_keys_it_names() -> None:
    stages, applied, warning = regime_base(BASE, "trending", TABLES)
    assert applied == "trending" and warning is None
    changed = {k for k, v in asdict(stages).items() if asdict(BASE)[k] != v}
    assert changed == {"stage3_trigger", "stage3_min_distance"}


def test_the_table_is_applied_before_the_volatility_factor() -> None:
    result = ON.calculate_stages(_cond("trending", "high"), BASE, regimes=TABLES)
    assert result.method == DYNAMIC and result.market_regime == "trending"
    assert result.stages.stage3_trigger == 65.0  # 50 x 1.3
    assert result.stages.stage3_min_distance == 19.5  # 15 x 1.3
    assert result.stages.stage1_trigger == 26.0  # base 20 x 1.3, untouched by the table
    assert result.volatility_regime == "high"


def test_a_regime_without_a_table_uses_the_base_silently() -> None:
    plain = ON.calculate_stages(_cond(None), BASE, regimes=TABLES)
    breakout = ON.calculate_stages(_cond("Breakout"), BASE, regimes=TABLES)
    assert breakout.stages == plain.stages and breakout.market_regime is None
    assert breakout.warnings == ()


def test_an_unknown_regime_falls_back_to_the_base_with_a_warning() -> None:
    result = ON.calculate_stages(_cond("choppy"), BASE, regimes=TABLES)
    assert (
        result.method == DYNAMIC and result.stages == ON.calculate_stages(_cond(None), BASE).stages
    )
    assert any("unknown market regime 'choppy'" in w for w in result.warnings)


def test_no_tables_means_the_market_regime_changes_nothing() -> None:
    for market in ("trending", "ranging", "breakout", None):
        assert (
            ON.calculate_stages(_cond(market), BASE).stages
            == ON.calculate_stages(_cond(None), BASE).stages
        )


def test_a_fixed_trade_trails_on_the_base_table_whatever_the_regime() -> None:
    off = DynamicTrailingCalculator(CalculatorParams(enable_dynamic_trailing=False))
    result = off.calculate_stages(_cond("trending"), BASE, regimes=TABLES)
    assert result.method == FIXED and result.stages == BASE and result.market_regime is None


def test_an_inconsistent_regime_table_falls_back_with_its_reason() -> None:
    bad = {"trending": {"stage1_trigger": 35.0}}  # above stage 2
    result = ON.calculate_stages(_cond("trending"), BASE, regimes=bad)
    assert result.method == FIXED and result.fallback_reason == "inconsistent_stages"
    assert result.stages == BASE


def test_recalculation_goes_through_the_same_fallbacks() -> None:
    current = ON.calculate_stages(_cond("trending", "normal"), BASE, regimes=TABLES)
    forced = DynamicTrailingCalculator(
        CalculatorParams(
            enable_dynamic_trailing=True, force_fixed_trailing_pairs=frozenset({"EURUSD"})
        )
    )
    result = forced.recalculate(current, _cond("trending", "extreme"), BASE, regimes=TABLES)
    assert result is not None and result.fallback_reason == "forced_fixed_pair"
    fixed = CalculatedStages(BASE, FIXED, "disabled")
    assert ON.recalculate(fixed, _cond(None, "extreme"), BASE) is None


def test_regimes_are_stored_with_the_stages_and_read_back() -> None:
    result = ON.calculate_stages(_cond("trending", "low"), BASE, regimes=TABLES)
    again = CalculatedStages.from_json(result.to_json())
    assert again.volatility_regime == "low" and again.market_regime == "trending"
    assert again.stages == result.stages


def test_regime_shift_counts_levels_and_missing_is_normal() -> None:
    assert regime_shift("low", "extreme") == 3
    assert regime_shift("extreme", "high") == 1
    assert regime_shift(None, "extreme") == 2
    assert regime_shift("bogus", "low") == 1
