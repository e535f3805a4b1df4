"""Claims judged on constructed trades whose answer is known; walk-forward never peeks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.backtest.test_metrics import ROW
from traild.backtest.claims import judge_claims, trading_day
from traild.backtest.engine import TradeRow
from traild.backtest.walkforward import choose, folds_of, walk_forward

DAY = 86_400_000
T0 = 1_709_596_800_000  # 2024-03-05T00:00Z
FIX, DYN = "fixed+lock", "dynamic+lock"


def _pair(pnl_fixed: list[float], pnl_dynamic: list[float]) -> list[TradeRow]:
    """Scalp trades, one per hour over 30 days, in both variants (same ids and days)."""
    rows = []
    for i, (f, d) in enumerate(zip(pnl_fixed, pnl_dynamic, strict=True)):
        base = replace(ROW, trade_id=i, is_scalp=True, entry_ts=T0 + i * 3_600_000)
        rows.append(replace(base, variant=FIX, pnl_pips=f, mfe_pips=max(f, 0) + 1))
        rows.append(replace(base, variant=DYN, pnl_pips=d, mfe_pips=max(d, 0) + 1))
    return rows


def _scalp_verdict(rows: list[TradeRow], key: str = "scalp_expectancy_gain") -> dict[str, object]:
    claims = judge_claims(rows, [FIX, DYN], [(DYN, FIX)], {FIX, DYN})
    result: dict[str, object] = claims["criteria"][key]["results"][f"{DYN} vs {FIX}"]
    return result


@pytest.mark.parametrize(
    ("factor", "noise", "expected"),
    [(1.5, 0.5, "met"), (0.5, 0.5, "not_met"), (1.1, 8.0, "inconclusive")],
)
def test_scalp_expectancy_claim_verdict_matches_the_constructed_truth(
    factor: float, noise: float, expected: str
) -> None:
    rng = np.random.default_rng(5)
    n = 30 * 24
    fixed = (2.0 + rng.normal(0, noise, n)).tolist()
    dynamic = (
        [f * factor for f in fixed]
        if expected != "inconclusive"
        else (2.0 * factor + rng.normal(0, noise, n)).tolist()
    )
    got = _scalp_verdict(_pair(fixed, dynamic))
    assert got["verdict"] == expected
    assert got["trades"] == n and got["days"] == 31  # 30 calendar days span 31 21:00 rolls
    low, high = got["ci_low"], got["ci_high"]
    assert isinstance(low, float) and isinstance(high, float) and low <= high
    if expected != "inconclusive":
        assert got["value"] == pytest.approx(factor - 1, abs=1e-3)
        assert low <= factor - 1 <= high


def test_overall_expectancy_claim_has_its_own_row_with_an_interval() -> None:
    """The plan's rollout criterion (+10 % expectancy, every trade): scalps and regular
    trades together, judged like the scalp row."""
    rng = np.random.default_rng(7)
    fixed = (2.0 + rng.normal(0, 0.5, 30 * 24)).tolist()
    rows = _pair(fixed, [f * 1.5 for f in fixed])
    rows = [replace(r, is_scalp=r.trade_id % 2 == 0) for r in rows]
    got = _scalp_verdict(rows, "expectancy_gain")
    assert got["verdict"] == "met" and got["trades"] == 30 * 24
    assert got["value"] == pytest.approx(0.5, abs=1e-3)
    assert isinstance(got["ci_low"], float) and got["ci_low"] <= 0.5 <= got["ci_high"]


def test_every_seed_criterion_is_judged_with_target_value_interval_and_verdict() -> None:
    rows = _pair([1.0, -1.0] * 360, [1.0, -1.0] * 360)
    claims = judge_claims(rows, [FIX, DYN], [(DYN, FIX)], {FIX, DYN})
    assert claims["method"]["resampling_unit"].startswith("trading day")
    assert set(claims["criteria"]) == {
        "lock_violations",
        "lock_slippage_loss_share",
        "expectancy_gain",
        "scalp_expectancy_gain",
        "premature_reduction_high_vol",
        "capture_gain_trending",
        "losing_rate_change",
        "scalp_minutes_to_lock",
        "scalp_protected_share",
    }
    for c in claims["criteria"].values():
        assert {"criterion", "target", "direction", "unit", "results"} <= set(c)
        for r in c["results"].values():
            assert r["verdict"] in ("met", "not_met", "inconclusive")
    assert claims["criteria"]["lock_violations"]["results"][FIX]["verdict"] == "met"
    # identical variants: no losing-rate change, but an interval around 0 cannot prove "<= 0"
    change = claims["criteria"]["losing_rate_change"]["results"][f"{DYN} vs {FIX}"]
    assert change["value"] == 0.0
    # no trade labelled trending: nothing to judge
    trending = claims["criteria"]["capture_gain_trending"]["results"][f"{DYN} vs {FIX}"]
    assert (trending["trades"], trending["verdict"]) == (0, "inconclusive")


def test_trading_days_roll_at_21_utc_so_the_sunday_open_belongs_to_monday() -> None:
    sunday_2130 = T0 - 2 * DAY + 21 * 3_600_000 + 1_800_000  # 2024-03-03T21:30Z
    monday_noon = T0 - DAY + 12 * 3_600_000
    assert trading_day(sunday_2130) == trading_day(monday_noon)


def _grid_rows() -> list[TradeRow]:
    """4 folds of 10 trades; candidate A wins fold 0, B fold 1, C fold 2 -- and each does
    badly on the next fold, so evaluating on the choosing fold would look much better."""
    best = {0: "A", 1: "B", 2: "C", 3: "A"}
    rows = []
    for i in range(40):
        fold = i // 10
        base = replace(ROW, trade_id=i, entry_ts=T0 + i * 3_600_000)
        rows.append(replace(base, variant=FIX, pnl_pips=0.0))
        for name in "ABC":
            pnl = 5.0 if best[fold] == name else 1.0
            if fold > 0 and best[fold - 1] == name:
                pnl = -3.0  # last fold's winner loses here
            rows.append(replace(base, variant=name, pnl_pips=pnl))
    return rows


def test_walk_forward_never_evaluates_a_grid_point_on_the_fold_it_was_chosen_on() -> None:
    rows = _grid_rows()
    folds = folds_of(rows, 4)
    assert [len(f) for f in folds] == [10, 10, 10, 10]
    steps = choose(rows, ["A", "B", "C"], folds)
    assert [(s.chosen_on, s.evaluated_on, s.chosen) for s in steps] == [
        (0, 1, "A"),
        (1, 2, "B"),
        (2, 3, "C"),
    ]
    for s in steps:
        assert not s.scored_ids & s.evaluated_ids
    wf = walk_forward(rows, ["A", "B", "C"], 4)
    assert [s["in_sample_expectancy_pips"] for s in wf["steps"]] == [5.0, 5.0, 5.0]
    assert [s["out_of_sample_expectancy_pips"] for s in wf["steps"]] == [-3.0, -3.0, -3.0]
    assert wf["out_of_sample"]["trades"] == 30 and wf["out_of_sample"]["expectancy_pips"] == -3.0
    assert wf["baseline"]["expectancy_pips"] == 0.0
    assert wf["expectancy_difference_pips"]["value"] == -3.0
