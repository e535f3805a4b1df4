"""The 10 % expectancy gate on constructed live trades with known answers."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tests.reporting.helpers import GBPUSD, dyn, fix
from traild.reporting.gate import MET, NOT_MET, UNDECIDABLE, GatePolicy, evaluate
from traild.reporting.live import Bootstrap, expectancy, metric_table

POLICY = GatePolicy(threshold=0.10, min_trades=30, boot=Bootstrap(samples=400, seed=3))


def test_dynamic_twenty_percent_better_without_noise_meets_the_gate() -> None:
    result = evaluate(dyn([12.0] * 30) + fix([10.0] * 30), POLICY)
    assert result.verdict == MET and result.trades_needed == 0
    assert (result.dynamic_expectancy, result.fixed_expectancy) == (12.0, 10.0)
    assert result.improvement_pct.value == pytest.approx(20.0)
    # margin = 12 - 10 - 0.1 x 10 = 1 pip, and every resample agrees
    assert (result.margin_pips.value, result.margin_pips.low, result.margin_pips.high) == (
        pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0),
    )  # fmt: skip


def test_five_percent_better_is_not_met() -> None:
    result = evaluate(dyn([10.5] * 30) + fix([10.0] * 30), POLICY)
    assert result.verdict == NOT_MET and result.margin_pips.value == pytest.approx(-0.5)


def test_negative_fixed_expectancy_needs_ten_percent_of_its_size_more() -> None:
    # E_fix = -10: the target is -9; dynamic at -8.5 clears it by 0.5 pip
    assert evaluate(dyn([-8.5] * 30) + fix([-10.0] * 30), POLICY).verdict == MET
    assert evaluate(dyn([-9.5] * 30) + fix([-10.0] * 30), POLICY).verdict == NOT_MET


def test_too_few_trades_are_undecidable_and_the_shortfall_is_the_trades_needed() -> None:
    result = evaluate(dyn([12.0] * 10) + fix([10.0] * 30), POLICY)
    assert result.verdict == UNDECIDABLE and result.trades_needed == 20
    assert "10 dynamic and 30 fixed" in result.why


def test_an_estimate_exactly_at_the_target_can_never_be_decided() -> None:
    result = evaluate(dyn([21.0, 1.0] * 15) + fix([10.0] * 30), POLICY)  # E_dyn = 11 = 10 x 1.1
    assert result.verdict == UNDECIDABLE and result.trades_needed is None


def test_trades_needed_follows_the_interval_width() -> None:
    # dynamic 22/2 alternating (mean 12, sd 10) vs a constant 10: margin 1 pip, the interval
    # of the dynamic mean is about +-1.96 x 10 / sqrt(30): far wider than the margin
    result = evaluate(dyn([22.0, 2.0] * 15) + fix([10.0] * 30), POLICY)
    assert result.verdict == UNDECIDABLE
    half = 1.96 * 10 * math.sqrt(29 / 30) / math.sqrt(30)
    expected = 60 * half**2 - 60
    assert result.trades_needed is not None
    assert expected * 0.75 < result.trades_needed < expected * 1.3


def test_no_dynamic_trades_at_all_is_undecidable_without_a_count() -> None:
    result = evaluate(fix([10.0] * 30), POLICY)
    assert result.verdict == UNDECIDABLE and result.trades_needed is None
    assert result.improvement_pct.value is None


def test_metric_table_known_values_and_intervals_contain_them() -> None:
    trades = dyn([12.0, -4.0] * 10, mfe=20.0, lock_minutes=6.0)
    table = metric_table(trades, Bootstrap(samples=300))
    assert expectancy(trades) == 4.0
    assert table["expectancy_pips"].value == 4.0
    assert table["win_rate"].value == 0.5
    assert table["profit_capture_pct"].value == pytest.approx(60.0)  # 12 of 20 on the winners
    assert table["protected_share"].value == 1.0
    assert table["median_minutes_to_lock"].value == 6.0
    e = table["expectancy_pips"]
    assert e.low is not None and e.high is not None and e.low < 4.0 < e.high


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    trades = dyn([22.0, 2.0, 7.0] * 10) + fix([10.0, 9.0] * 15)
    assert evaluate(trades, POLICY) == evaluate(trades, POLICY)


def test_resampled_metrics_equal_the_plain_definitions_on_the_same_day_draws() -> None:
    from traild.reporting.live import METRICS, DaySums, _median_lock, _ratio_parts, ratio

    trades = dyn([12.0, -4.0, 7.5, 0.0, 3.0] * 3, mfe=15.0, lock_minutes=None)
    trades = [
        dataclasses.replace(t, minutes_to_lock=float(i % 4) if i % 3 else None)
        for i, t in enumerate(trades)
    ]
    sums = DaySums(trades)
    w = Bootstrap(samples=20, seed=5).weights(len(sums.days))
    medians = _median_lock(trades, sums, w)
    for row in range(w.shape[0]):
        sample = [
            t for t, d in zip(trades, sums.day_of, strict=True) for _ in range(int(w[row, d]))
        ]
        for name, (num, den) in _ratio_parts(trades).items():
            got = ratio(w[row] @ sums.sums(num), w[row] @ sums.sums(den))
            want = METRICS[name](sample)
            assert (want is None and math.isnan(got)) or got == pytest.approx(want), name
        want_median = METRICS["median_minutes_to_lock"](sample)
        assert (want_median is None and math.isnan(medians[row])) or medians[row] == pytest.approx(
            want_median
        )


def test_pairs_are_compared_within_themselves_not_by_their_mix() -> None:
    # dynamic only on EURUSD (+12 vs its fixed +10), fixed on GBPUSD far lower (-20): pooled
    # naively dynamic would look 3x better; pair by pair it is +20 %
    trades = dyn([12.0] * 30) + fix([10.0] * 30) + fix([-20.0] * 60, epic=GBPUSD)
    result = evaluate(trades, POLICY)
    assert result.improvement_pct.value == pytest.approx(20.0)
    assert (result.dynamic_trades, result.fixed_trades) == (30, 90)


def test_no_pair_with_both_methods_is_undecidable() -> None:
    result = evaluate(dyn([12.0] * 30) + fix([10.0] * 30, epic=GBPUSD), POLICY)
    assert result.verdict == UNDECIDABLE and "both methods" in result.why
