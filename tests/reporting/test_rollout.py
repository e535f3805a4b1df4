"""Rollout stages from the effective configuration, and recommendations with known answers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reporting.helpers import EURUSD, GBPUSD, dyn, fix
from traild.config.rollout_stage import DYNAMIC_ON, FIXED_ONLY, WIDENED, pair_stage
from traild.config.settings import Settings
from traild.reporting.rollout import rollout_status

USDJPY = "CS.D.USDJPY.MINI.IP"
THREE = ["EURUSD", "GBPUSD", "AUDUSD"]


def settings(**trailing: Any) -> Settings:
    return Settings(trailing=trailing, rollout={"bootstrap_samples": 200})


@pytest.mark.parametrize(
    ("trailing", "epic", "expected"),
    [
        ({}, EURUSD, (FIXED_ONLY, "disabled")),
        ({"enable_dynamic_trailing": True, "dynamic_trailing_pairs": ["EURUSD"]}, EURUSD,
         (DYNAMIC_ON, None)),
        ({"enable_dynamic_trailing": True, "dynamic_trailing_pairs": ["EURUSD"]}, GBPUSD,
         (FIXED_ONLY, "not_in_rollout")),
        ({"enable_dynamic_trailing": True, "dynamic_trailing_pairs": THREE}, GBPUSD,
         (WIDENED, None)),
        ({"enable_dynamic_trailing": True}, USDJPY, (WIDENED, None)),
        ({"enable_dynamic_trailing": True, "force_fixed_trailing_pairs": ["USDJPY"]}, USDJPY,
         (FIXED_ONLY, "forced_fixed_pair")),
    ],
)  # fmt: skip
def test_stage_of_a_pair_follows_toggle_forced_list_and_allowlist(
    trailing: dict[str, Any], epic: str, expected: tuple[str, str | None]
) -> None:
    assert pair_stage(settings(**trailing), epic) == expected


def test_pilot_meeting_the_gate_recommends_widening_to_three_pairs() -> None:
    s = settings(enable_dynamic_trailing=True, dynamic_trailing_pairs=["EURUSD"])
    trades = dyn([12.0] * 30) + fix([10.0] * 30) + fix([5.0] * 40, epic=GBPUSD)
    status = rollout_status(s, trades)
    by_pair = {p["pair"]: p for p in status["pairs"]}
    assert by_pair[EURUSD]["stage"] == DYNAMIC_ON and by_pair[EURUSD]["gate"]["verdict"] == "met"
    assert by_pair[GBPUSD]["stage"] == FIXED_ONLY
    assert by_pair[GBPUSD]["fixed_reason"] == "not_in_rollout"
    assert by_pair[GBPUSD]["gate"]["verdict"] == "undecidable"  # no dynamic trades there
    assert status["rollout_gate"]["verdict"] == "met"  # pooled over the pilot pair only
    assert status["plan_step"] == "pilot: dynamic trailing for EURUSD only"
    assert status["recommendation"].startswith("widen to three pairs")


def test_widened_pairs_meeting_the_gate_recommend_all_pairs() -> None:
    s = settings(enable_dynamic_trailing=True, dynamic_trailing_pairs=["EURUSD", "GBPUSD"])
    trades = dyn([12.0] * 30) + fix([10.0] * 30) + dyn([6.6] * 30, epic=GBPUSD)
    trades += fix([5.0] * 30, epic=GBPUSD)  # pooled: 9.3 against 7.5, +24 %
    status = rollout_status(s, trades)
    assert status["rollout_gate"]["verdict"] == "met"
    assert status["recommendation"].startswith("go to all pairs")


def test_falling_short_recommends_rolling_back() -> None:
    s = settings(enable_dynamic_trailing=True, dynamic_trailing_pairs=["EURUSD"])
    status = rollout_status(s, dyn([9.0] * 30) + fix([10.0] * 30))
    assert status["pairs"][0]["gate"]["verdict"] == "not_met"
    assert status["recommendation"].startswith("roll back")


def test_too_few_trades_say_how_many_more_and_an_unused_allowlist_entry_is_listed() -> None:
    s = settings(enable_dynamic_trailing=True, dynamic_trailing_pairs=["EURUSD", "USDJPY"])
    status = rollout_status(s, dyn([12.0] * 5) + fix([10.0] * 30))
    assert [p["pair"] for p in status["pairs"]] == [EURUSD, "USDJPY"]
    assert status["rollout_gate"]["trades_needed"] == 25
    assert status["rollout_gate"]["days_needed"] == 5  # 5 dynamic days of the 10 needed
    assert status["recommendation"].endswith("about 25 more over about 5 more trading days")


def test_dynamic_off_recommends_starting_the_pilot() -> None:
    status = rollout_status(settings(), fix([10.0] * 30))
    assert status["pairs"][0]["stage"] == FIXED_ONLY
    assert status["recommendation"].startswith("start the pilot")


def test_a_dynamic_pair_whose_stages_keep_falling_back_is_pointed_out() -> None:
    from traild.core.messages import Direction, TradeRecord

    def record(i: int, method: str, reason: str | None) -> TradeRecord:
        return TradeRecord(f"D{i}", EURUSD, Direction.BUY, trailing_calculation_method=method,
                           fallback_reason=reason)  # fmt: skip

    records = [record(i, "fixed", "no_atr") for i in range(3)]
    records += [record(i + 3, "dynamic_volatility", None) for i in range(7)]
    s = settings(enable_dynamic_trailing=True, dynamic_trailing_pairs=["EURUSD"])
    status = rollout_status(s, [], records)  # open trades only: the pair is listed all the same
    (pair,) = status["pairs"]
    assert pair["pair"] == EURUSD
    assert pair["calculations"] == {"trades": 10, "dynamic": 7, "data_fallbacks": {"no_atr": 3}}
    assert pair["recommendation"].startswith("check the conditions: 3 of 10 trades")
