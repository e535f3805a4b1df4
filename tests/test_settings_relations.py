"""Keys valid alone but not together: refused, and the message names every key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from traild.config.settings import load
from traild.core.errors import ConfigError


def _problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "traild.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path, environ or {})
    return info.value.problems


def _loads(tmp_path: Path, text: str) -> None:
    path = tmp_path / "traild.toml"
    path.write_text(text, encoding="utf-8")
    load(path, {})


def test_a_minimum_history_longer_than_the_lookback_is_refused(tmp_path: Path) -> None:
    (problem,) = _problems(
        tmp_path, "[conditions]\nregime_lookback = 40\nregime_min_history = 50\n"
    )
    assert "conditions.regime_min_history (50)" in problem
    assert "conditions.regime_lookback (40)" in problem


def test_a_minimum_history_equal_to_the_lookback_is_accepted(tmp_path: Path) -> None:
    _loads(tmp_path, "[conditions]\nregime_lookback = 40\nregime_min_history = 40\n")


def test_the_minimum_history_set_from_the_environment_is_checked_against_the_file(
    tmp_path: Path,
) -> None:
    problems = _problems(
        tmp_path,
        "[conditions]\nregime_lookback = 30\n",
        {"TRAILD_CONDITIONS__REGIME_MIN_HISTORY": "31"},
    )
    assert any("conditions.regime_min_history (31)" in p for p in problems)


@pytest.mark.parametrize(
    ("low", "high", "extreme"), [(80, 70, 60), (20, 70, 70), (20, 20, 90), (50, 40, 90)]
)
def test_percentile_thresholds_must_be_ordered_low_high_extreme(
    tmp_path: Path, low: int, high: int, extreme: int
) -> None:
    text = (
        f"[conditions]\nlow_percentile = {low}\nhigh_percentile = {high}\n"
        f"extreme_percentile = {extreme}\n"
    )
    (problem,) = _problems(tmp_path, text)
    for key in ("low_percentile", "high_percentile", "extreme_percentile"):
        assert f"conditions.{key}" in problem


def test_ordered_percentiles_are_accepted(tmp_path: Path) -> None:
    _loads(
        tmp_path,
        "[conditions]\nlow_percentile = 10\nhigh_percentile = 60\nextreme_percentile = 95\n",
    )


@pytest.mark.parametrize(
    "hours",
    [
        {"london_start_hour": 21},  # the same hour as asian: asian never starts
        {"overlap_start_hour": 6},  # overlap before london
        {"new_york_start_hour": 10},  # new_york before overlap
        {"asian_start_hour": 13},  # asian in the middle of the overlap
    ],
)
def test_session_start_hours_must_follow_each_other_around_the_clock(
    tmp_path: Path, hours: dict[str, int]
) -> None:
    text = "[conditions]\n" + "".join(f"{k} = {v}\n" for k, v in hours.items())
    (problem,) = _problems(tmp_path, text)
    assert "conditions.asian_start_hour" in problem and "conditions.new_york_start_hour" in problem


def test_a_shifted_session_clock_that_keeps_the_order_is_accepted(tmp_path: Path) -> None:
    # every session an hour later (daylight saving): asian now wraps past midnight at 22
    text = (
        "[conditions]\nasian_start_hour = 22\nlondon_start_hour = 8\n"
        "overlap_start_hour = 13\nnew_york_start_hour = 17\n"
    )
    _loads(tmp_path, text)


def test_every_broken_relation_is_listed_at_once(tmp_path: Path) -> None:
    text = "[conditions]\nregime_lookback = 10\nlow_percentile = 90\nlondon_start_hour = 21\n"
    text = "; ".join(_problems(tmp_path, text))
    assert "regime_min_history (20)" in text
    assert "percentiles must be ordered" in text and "session start hours" in text
