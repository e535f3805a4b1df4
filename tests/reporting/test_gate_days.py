"""The gate on samples of too few trading days, and the coverage of its interval."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from tests.reporting.helpers import DAY0, EURUSD, GBPUSD, dyn, fix
from traild.config.settings import Settings
from traild.core.calculator import DYNAMIC, FIXED
from traild.reporting.gate import MET, UNDECIDABLE, GatePolicy, evaluate
from traild.reporting.live import Bootstrap, LiveTrade
from traild.reporting.rollout import rollout_status

POLICY = GatePolicy(threshold=0.10, min_trades=30, boot=Bootstrap(samples=1000, seed=3))


def _on_days(
    method: str, pnls: list[float], days: list[int], epic: str = EURUSD
) -> list[LiveTrade]:
    """Trades of ``method``, the i-th on day ``days[i % len(days)]``."""
    return [
        LiveTrade(epic, method, p, DAY0 + timedelta(days=days[i % len(days)]))
        for i, p in enumerate(pnls)
    ]


def test_thirty_dynamic_on_monday_and_thirty_fixed_on_tuesday_are_undecidable() -> None:
    trades = _on_days(DYNAMIC, [12.0] * 30, [0]) + _on_days(FIXED, [10.0] * 30, [1])
    result = evaluate(trades, POLICY)
    assert result.verdict == UNDECIDABLE
    assert "dynamic 1, fixed 1" in result.why and "below 10" in result.why
    assert result.days_needed == 9 and result.trades_needed == 0


def test_sixty_noisy_trades_on_one_day_are_undecidable() -> None:
    rng = np.random.default_rng(4)
    trades = _on_days(DYNAMIC, (14 + rng.normal(0, 10, 30)).tolist(), [0])
    trades += _on_days(FIXED, (10 + rng.normal(0, 10, 30)).tolist(), [0])
    result = evaluate(trades, POLICY)
    assert result.verdict == UNDECIDABLE and result.margin_pips.low is None


def test_all_dynamic_trades_on_one_day_of_twenty_are_undecidable() -> None:
    trades = _on_days(DYNAMIC, [14.0] * 30, [7]) + _on_days(FIXED, [10.0] * 40, list(range(20)))
    result = evaluate(trades, POLICY)
    assert result.verdict == UNDECIDABLE and "dynamic 1, fixed 20" in result.why


def test_a_verdict_is_refused_when_too_many_resamples_lack_a_method() -> None:
    """Dynamic trades on 3 of 30 days: about (27/30)^30 = 4 % of the resampled day sets
    hold no dynamic trade. Dropping them would narrow the interval unduly."""
    trades = _on_days(DYNAMIC, [14.0, 12.0, 13.0] * 10, [2, 11, 23])
    trades += _on_days(FIXED, [10.0, 9.0] * 15, list(range(30)))
    lenient_days = GatePolicy(0.10, 30, POLICY.boot, min_days=3)
    result = evaluate(trades, lenient_days)
    assert result.verdict == UNDECIDABLE and "resampled day sets" in result.why
    assert result.dropped_share == pytest.approx((27 / 30) ** 30, abs=0.015)
    tolerant = GatePolicy(0.10, 30, POLICY.boot, min_days=3, max_dropped_share=0.2)
    assert evaluate(trades, tolerant).verdict == MET  # the same data, the rule alone decides


def test_a_pair_short_of_days_is_left_out_of_the_pooled_gate_and_named() -> None:
    trades = dyn([12.0] * 30) + fix([10.0] * 30)  # 30 days of each on EURUSD
    trades += _on_days(DYNAMIC, [-30.0] * 30, [0, 1], GBPUSD)  # 2 days: cannot decide anything
    trades += _on_days(FIXED, [10.0] * 30, list(range(30)), GBPUSD)
    result = evaluate(trades, POLICY)
    assert result.verdict == MET and result.dynamic_expectancy == pytest.approx(12.0)
    assert f"{GBPUSD}: dynamic 2, fixed 30" in result.why


def test_rollout_status_counts_the_trading_days_still_needed() -> None:
    s = Settings(
        trailing={"enable_dynamic_trailing": True, "dynamic_trailing_pairs": ["EURUSD"]},
        rollout={"bootstrap_samples": 200, "min_days": 12},
    )
    trades = _on_days(DYNAMIC, [12.0] * 40, [0, 1, 2, 3]) + fix([10.0] * 30)
    status = rollout_status(s, trades)
    assert status["min_days"] == 12
    gate = status["rollout_gate"]
    assert (gate["verdict"], gate["trades_needed"], gate["days_needed"]) == (UNDECIDABLE, 0, 8)
    assert status["recommendation"].endswith("over about 8 more trading days")


@pytest.mark.parametrize("days", [10, 30])
def test_the_margin_interval_covers_the_true_margin_at_about_the_stated_rate(days: int) -> None:
    """300 samples of ``days`` trading days, 6 trades of each method a day; the trades of a
    day share a market move. True expectancies 12 and 10 pips: margin 12 - 10 - 0.1 x 10 = 1.
    The 95 % interval contains 1 in about 95 % of the samples (the plain percentile interval
    covers about 91 % here: too narrow on so few days)."""
    rng = np.random.default_rng(27)
    per_day, seeds, truth = 6, 300, 1.0
    day_of = np.repeat(np.arange(days), per_day)
    dates = [DAY0 + timedelta(days=int(d)) for d in day_of]
    policy = GatePolicy(0.10, 30, Bootstrap(samples=1000, seed=1))
    covered = 0
    for _ in range(seeds):
        market = rng.normal(0, 8.0, days)[day_of]
        trades = []
        for method, mean in ((DYNAMIC, 12.0), (FIXED, 10.0)):
            pnl = mean + market + rng.normal(0, 6.0, day_of.size)
            trades += [
                LiveTrade(EURUSD, method, float(p), d) for p, d in zip(pnl, dates, strict=True)
            ]
        g = evaluate(trades, policy).margin_pips
        assert g.low is not None and g.high is not None
        covered += g.low <= truth <= g.high
    assert 0.925 <= covered / seeds <= 0.975


@pytest.mark.parametrize(("df", "exact"), [(4, 2.7764), (9, 2.2622), (29, 2.0452), (200, 1.9719)])
def test_the_t_quantile_of_the_expanded_interval_matches_the_table(df: int, exact: float) -> None:
    from traild.reporting.live import _t_quantile

    assert _t_quantile(0.975, df) == pytest.approx(exact, abs=1e-3)


def test_the_expanded_tail_narrows_on_few_days_and_vanishes_on_many() -> None:
    from traild.reporting.live import expanded_tail

    assert expanded_tail(0.025, 10) == pytest.approx(0.0086, abs=5e-4)
    assert expanded_tail(0.025, 30) == pytest.approx(0.0188, abs=5e-4)
    assert 0.0245 < expanded_tail(0.025, 1000) < 0.025
