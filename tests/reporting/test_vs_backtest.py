"""Live trades against a backtest summary.json with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reporting.helpers import GBPUSD, dyn, fix
from traild.config.settings import Settings
from traild.core.errors import DataError
from traild.reporting.vs_backtest import compare, load_summary

SETTINGS = Settings(rollout={"bootstrap_samples": 200})


def summary(dyn_e: float = 12.0, fix_e: float = 10.0) -> dict[str, object]:
    def variant(e: float, capture: float) -> dict[str, object]:
        return {"trades": 100, "win_rate": 0.5, "expectancy_pips": e, "profit_capture_pct": capture,
                "protected_share": 1.0, "median_minutes_to_lock": 6.0}  # fmt: skip

    return {"variants": {"fixed": variant(8, 40), "fixed+lock": variant(fix_e, 50.0),
                         "dynamic+lock": variant(dyn_e, 60.0)}}  # fmt: skip


def test_live_metrics_sit_next_to_the_prediction_with_intervals() -> None:
    trades = dyn([20.0, 4.0] * 15, mfe=20.0, lock_minutes=6.0) + fix([10.0] * 30, mfe=20.0)
    result = compare(SETTINGS, trades, summary())
    assert result["predicted_improvement_pct"] == 20.0
    group = result["groups"]["all pairs"]
    e = group["dynamic_volatility"]["metrics"]["expectancy_pips"]
    assert e["value"] == 12.0 and e["backtest"] == 12.0 and e["consistent"] is True
    capture = group["dynamic_volatility"]["metrics"]["profit_capture_pct"]
    assert capture["value"] == 60.0  # (20 + 4) / (20 + 20): every trade wins
    fixed = group["fixed"]["metrics"]
    assert fixed["expectancy_pips"]["value"] == 10.0 and fixed["expectancy_pips"]["consistent"]
    assert fixed["win_rate"]["value"] == 1.0 and fixed["win_rate"]["consistent"] is False
    assert fixed["median_minutes_to_lock"]["value"] is None  # no confirmed locks
    assert group["dynamic_volatility"]["trades"] == 30
    assert group["gate"]["verdict"] == "undecidable"  # 20/4 noise: interval straddles +10 %


def test_groups_per_pair_and_overall() -> None:
    trades = dyn([12.0] * 3) + fix([10.0] * 3, epic=GBPUSD)
    result = compare(SETTINGS, trades, summary())
    assert set(result["groups"]) == {"all pairs", "CS.D.EURUSD.MINI.IP", GBPUSD}
    assert result["groups"][GBPUSD]["dynamic_volatility"]["trades"] == 0


def test_a_prediction_outside_the_live_interval_is_flagged() -> None:
    result = compare(SETTINGS, dyn([12.0] * 30) + fix([10.0] * 30), summary(dyn_e=15.0))
    row = result["groups"]["all pairs"]["dynamic_volatility"]["metrics"]["expectancy_pips"]
    assert row["consistent"] is False


def test_summary_is_read_from_a_directory_and_bad_input_is_one_clear_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(summary()))
    assert "dynamic+lock" in load_summary(tmp_path)["variants"]
    with pytest.raises(DataError, match="no backtest summary"):
        load_summary(tmp_path / "nowhere")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="cannot read"):
        load_summary(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"variants": {"fixed": {}}}')
    with pytest.raises(DataError, match="no variant 'dynamic\\+lock'"):
        compare(SETTINGS, [], load_summary(tmp_path / "other.json"))


def test_each_pair_is_compared_with_its_own_backtest_figures_and_the_pooled_is_labelled() -> None:
    data = summary()
    for name, e in (("fixed+lock", 10.0), ("dynamic+lock", 12.0)):
        pooled = data["variants"][name]  # type: ignore[index]
        pooled["by_pair"] = {"EURUSD": {**pooled, "expectancy_pips": e - 5}}
    trades = dyn([12.0] * 30) + fix([10.0] * 30) + dyn([9.0] * 5, epic=GBPUSD)
    result = compare(SETTINGS, trades, data)
    groups = result["groups"]
    eurusd = groups["CS.D.EURUSD.MINI.IP"]
    assert eurusd["backtest_scope"] == "EURUSD"
    assert eurusd["dynamic_volatility"]["metrics"]["expectancy_pips"]["backtest"] == 7.0
    assert eurusd["fixed"]["metrics"]["expectancy_pips"]["backtest"] == 5.0
    assert eurusd["predicted_improvement_pct"] == 40.0
    # all pairs, and a pair the backtest never traded: the pooled figures, said so
    assert groups["all pairs"]["backtest_scope"] == "pooled"
    assert groups["all pairs"]["dynamic_volatility"]["metrics"]["expectancy_pips"]["backtest"] == 12
    assert groups[GBPUSD]["backtest_scope"] == "pooled"
    # a summary.json from before by_pair: pooled everywhere, labelled
    old = compare(SETTINGS, trades, summary())
    assert {g["backtest_scope"] for g in old["groups"].values()} == {"pooled"}


def test_the_terminal_and_html_say_which_backtest_figures_a_pair_is_compared_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from traild.reporting.html import _backtest
    from traild.reporting.vs_backtest import print_comparison

    data = summary()
    for name in ("fixed+lock", "dynamic+lock"):
        pooled = data["variants"][name]  # type: ignore[index]
        pooled["by_pair"] = {"EURUSD": pooled}
    result = compare(SETTINGS, dyn([12.0] * 3) + fix([10.0] * 3, epic=GBPUSD), data)
    print_comparison(result)
    out = capsys.readouterr().out
    assert "== all pairs: against the backtest's figures pooled over all its pairs" in out
    assert "== CS.D.EURUSD.MINI.IP: against the backtest's EURUSD figures" in out
    assert f"== {GBPUSD}: against the backtest's figures pooled" in out
    html = _backtest(result)
    assert "pooled over all pairs" in html and "EURUSD only" in html
