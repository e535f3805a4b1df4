"""Sessions of aware times in any zone, and the mid-rank percentile of tied ATR values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from traild.core.conditions import ConditionParams, regime_of, session_of
from traild.core.regime import RegimeParams, atr_percentiles, percentile_rank

P = ConditionParams()
LONDON = ZoneInfo("Europe/London")


def test_london_summer_time_is_converted_to_utc_before_the_session_is_read() -> None:
    local = datetime(2024, 7, 1, 7, 30, tzinfo=LONDON)  # BST: 06:30 UTC
    assert session_of(local) == session_of(local.astimezone(UTC)) == "asian"
    assert session_of(datetime(2024, 7, 1, 8, 30, tzinfo=LONDON)) == "london"


@pytest.mark.parametrize("offset_h", [-5, -3, 0, 2, 9, 13])
def test_the_same_instant_in_every_zone_is_in_the_same_session(offset_h: int) -> None:
    zone = timezone(timedelta(hours=offset_h))
    for hour in range(24):
        instant = datetime(2024, 1, 15, hour, 45, tzinfo=UTC)
        assert session_of(instant.astimezone(zone)) == session_of(instant)


def test_an_atr_equal_to_its_whole_history_is_normal_not_low() -> None:
    history = [5.0] * 40
    assert percentile_rank(5.0, history) == 50.0
    assert regime_of(5.0, history, P) == "normal"


def test_ties_count_half_below_and_half_above() -> None:
    history = [1.0, 2.0, 2.0, 2.0, 3.0]  # 1 below, 3 equal: (1 + 1.5) / 5
    assert percentile_rank(2.0, history) == pytest.approx(50.0)
    assert percentile_rank(3.0, history) == pytest.approx(90.0)  # 4 below, 1 equal
    assert percentile_rank(0.5, history) == 0.0 and percentile_rank(9.0, history) == 100.0


def test_the_backtests_atr_percentile_uses_the_same_mid_rank() -> None:
    flat = [1.0] * 60  # every bar the same range: every ATR equal to its history
    p = RegimeParams(atr_period=3, atr_lookback=10, atr_min_history=5)
    ranks = [r for r in atr_percentiles([1.1] * 60, [1.0] * 60, flat, p) if r is not None]
    assert ranks and all(r == 50.0 for r in ranks)
