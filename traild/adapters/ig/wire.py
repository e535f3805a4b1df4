"""IG REST payloads <-> traild values, pure: positions, dealing rules, confirms, exits.

CEEM levels are divided by ``broker_scale`` here and nowhere else on the way in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from traild.core.errors import BrokerError
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.messages import Confirmation, Direction, Position


def level_of(value: Any, inst: Instrument) -> float | None:
    return None if value is None else inst.from_broker(float(value))


def ig_time(text: Any) -> datetime | None:
    """IG's ``2024-05-01T10:00:00`` (UTC fields carry no offset) -> aware UTC."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", ""))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_position(item: Mapping[str, Any], instruments: InstrumentTable) -> Position:
    """One ``{position, market}`` element of ``GET /positions`` v2 in traild prices."""
    pos, market = item["position"], item["market"]
    epic = str(market["epic"])
    inst = instruments.resolve(epic)
    return Position(
        deal_id=str(pos["dealId"]),
        epic=epic,
        direction=Direction.parse(str(pos["direction"])),
        size=float(pos["size"]),
        level=inst.from_broker(float(pos["level"])),
        stop=level_of(pos.get("stopLevel"), inst),
        limit=level_of(pos.get("limitLevel"), inst),
        opened_at=ig_time(pos.get("createdDateUTC")),
    )


# Symbols whose IG "point" is not one pip, with its price size (IG gold: 1.0 = 10 gold pips).
POINT_SIZES: Mapping[str, Decimal] = {}
_GOLD_POINT = Decimal(1)


def point_size(inst: Instrument, overrides: Mapping[str, Decimal] = POINT_SIZES) -> Decimal:
    """Price size of one IG point: configured, 1.0 for gold, else one pip (FX, CEEM too)."""
    if inst.symbol in overrides:
        return overrides[inst.symbol]
    if "XAU" in inst.symbol or "GOLD" in inst.symbol:
        return _GOLD_POINT
    return inst.pip_size


def min_stop_distance_pips(
    market: Mapping[str, Any], inst: Instrument, point_size: Decimal | None = None
) -> float:
    """``dealingRules.minNormalStopOrLimitDistance`` of ``GET /markets/{epic}`` in pips.

    POINTS: ``point_size`` price units each (default: one pip on FX, MINI and CEEM alike).
    PERCENTAGE: of the snapshot's mid price. Rounded up to 0.01 pip (never too close).
    """
    rule = (market.get("dealingRules") or {}).get("minNormalStopOrLimitDistance") or {}
    value, unit = rule.get("value"), rule.get("unit")
    if value is None:
        return 0.0
    if unit == "POINTS":
        distance = Decimal(str(value)) * (point_size or inst.pip_size)
    elif unit == "PERCENTAGE":
        snap = market.get("snapshot") or {}
        mid = (Decimal(str(snap["bid"])) + Decimal(str(snap["offer"]))) / 2 / inst.broker_scale
        distance = mid * Decimal(str(value)) / 100
    else:
        raise BrokerError(f"unknown dealing-rule unit {unit!r}")
    pips = (distance / inst.pip_size).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    return float(pips)


def parse_confirmation(data: Mapping[str, Any], reference: str, inst: Instrument) -> Confirmation:
    """``GET /confirms/{ref}`` -> Confirmation; IG's echoed stop is the confirmed level."""
    accepted = data.get("dealStatus") == "ACCEPTED"
    reason = str(data.get("reason") or ("SUCCESS" if accepted else "UNKNOWN"))
    level = level_of(data.get("stopLevel"), inst) if accepted else None
    return Confirmation(accepted, level, reference, reason)


def classify_exit(last: Position, level: float, inst: Instrument) -> tuple[str, bool]:
    """(reason, gap) of a close at ``level`` given the last known stop and limit."""
    sign = last.direction.sign
    tolerance = float(inst.tick_size) / 2
    if last.stop is not None and sign * (level - last.stop) <= tolerance:
        return "stop", sign * (level - last.stop) < -tolerance
    if last.limit is not None and sign * (level - last.limit) >= -tolerance:
        return "limit", False
    return "manual", False
