"""Pure IG payload conversions: dealing rules to pips, confirms, exits, times, points."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from traild.adapters.ig.wire import (
    classify_exit,
    ig_time,
    min_stop_distance_pips,
    parse_confirmation,
    point_size,
)
from traild.core.errors import BrokerError
from traild.core.instruments import InstrumentTable
from traild.core.messages import Direction, Position

TABLE = InstrumentTable()
EURUSD = TABLE.resolve("CS.D.EURUSD.MINI.IP")
CEEM = TABLE.resolve("CS.D.EURUSD.CEEM.IP")
USDJPY = TABLE.resolve("CS.D.USDJPY.MINI.IP")
GOLD = TABLE.resolve("CS.D.CFEGOLD.CFE.IP")


def _rules(value: float | None, unit: str = "POINTS", **snapshot: float) -> dict[str, Any]:
    rule = {} if value is None else {"minNormalStopOrLimitDistance": {"unit": unit, "value": value}}
    return {"dealingRules": rule, "snapshot": snapshot}


@pytest.mark.parametrize(
    ("inst", "points", "pips"),
    [(EURUSD, 2.0, 2.0), (CEEM, 3.0, 3.0), (USDJPY, 8.0, 8.0), (GOLD, 0.5, 5.0)],
)
def test_points_are_pips_on_fx_and_ten_pips_on_gold(inst: Any, points: float, pips: float) -> None:
    assert min_stop_distance_pips(_rules(points), inst, point_size(inst)) == pips


def test_percentage_rule_uses_the_unscaled_mid_and_rounds_up() -> None:
    rules = _rules(0.05, "PERCENTAGE", bid=11783.1, offer=11784.1)  # CEEM wire prices
    assert min_stop_distance_pips(rules, CEEM, point_size(CEEM)) == 5.9  # 5.8918 pips, up


def test_missing_rule_is_zero_and_an_unknown_unit_is_an_error() -> None:
    assert min_stop_distance_pips(_rules(None), EURUSD) == 0.0
    with pytest.raises(BrokerError, match="FURLONGS"):
        min_stop_distance_pips(_rules(1.0, "FURLONGS"), EURUSD)


def test_configured_point_size_wins() -> None:
    assert point_size(EURUSD, {"EURUSD": Decimal("0.001")}) == Decimal("0.001")


def test_confirmation_carries_igs_echoed_level_or_its_reason() -> None:
    accepted = parse_confirmation({"dealStatus": "ACCEPTED", "stopLevel": 11790.5}, "R1", CEEM)
    assert (accepted.accepted, accepted.level, accepted.reason) == (True, 1.17905, "SUCCESS")
    refused = parse_confirmation(
        {"dealStatus": "REJECTED", "reason": "ATTACHED_ORDER_LEVEL_ERROR"}, "R2", EURUSD
    )
    assert (refused.accepted, refused.level, refused.reference) == (False, None, "R2")
    assert refused.reason == "ATTACHED_ORDER_LEVEL_ERROR"
    assert parse_confirmation({}, "R3", EURUSD).reason == "UNKNOWN"


def _pos(direction: Direction, stop: float | None, limit: float | None) -> Position:
    return Position("D1", "CS.D.EURUSD.MINI.IP", direction, 1.0, 1.1, stop, limit)


@pytest.mark.parametrize(
    ("direction", "level", "expected"),
    [
        (Direction.BUY, 1.0980, ("stop", False)),
        (Direction.BUY, 1.0975, ("stop", True)),
        (Direction.BUY, 1.1200, ("limit", False)),
        (Direction.BUY, 1.1050, ("manual", False)),
        (Direction.SELL, 1.1020, ("stop", False)),
        (Direction.SELL, 1.1031, ("stop", True)),
        (Direction.SELL, 1.0800, ("limit", False)),
    ],
)
def test_exit_reason_follows_the_last_stop_and_limit(
    direction: Direction, level: float, expected: tuple[str, bool]
) -> None:
    stop, limit = (1.0980, 1.1200) if direction is Direction.BUY else (1.1020, 1.0800)
    assert classify_exit(_pos(direction, stop, limit), level, EURUSD) == expected


def test_ig_times_without_offset_are_utc() -> None:
    assert ig_time("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert ig_time("2024-05-01T10:00:00.250") == datetime(2024, 5, 1, 10, 0, 0, 250000, UTC)
    assert ig_time(None) is None and ig_time("yesterday") is None
