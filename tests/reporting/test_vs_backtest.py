"""Live trades against a backtest summary.json with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reporting.helpers import GBPUSD, dyn, fix
from traild.core.errors import DataError
from traild.reporting.vs_backtest import compare, load_summary
from traild.settings import Settings

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
