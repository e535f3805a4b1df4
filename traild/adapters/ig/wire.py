"""IG payloads <-> traild values, pure: positions, markets (scale, rules), confirms, OPU, exits.

Levels are divided by the epic's ``broker_scale`` here and nowhere else on the way in; that
scale comes from IG's ``GET /markets/{epic}`` (``market_info``), never from the epic's name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from traild.core.errors import BrokerError
from traild.core.instruments import Instrument
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


def parse_position(item: Mapping[str, Any], inst: Instrument) -> Position:
    """One ``{position, market}`` element of ``GET /positions`` v2 in traild prices."""
    pos, market = item["position"], item["market"]
    return Position(
        deal_id=str(pos["dealId"]),
        epic=str(market["epic"]),
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


# -- markets: scale, dealing rules, state ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamScale:
    """How an epic's streamed prices relate to traild prices: ``scale`` and a normal price."""

    scale: int
    reference: float | None


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What ``GET /markets/{epic}`` v3 says, in traild terms (cached by the broker)."""

    epic: str
    scale: int
    min_stop_pips: float
    status: str
    decimals: int | None
    reference: float | None
    trailing_allowed: bool


def wire_scale(snapshot: Mapping[str, Any], inst: Instrument, point: Decimal) -> int:
    """Wire level per traild price from ``snapshot.scalingFactor``.

    IG quotes some epics in points (CEEM and spread-bet FX: EUR/USD 1.08345 is 10834.5, with
    scalingFactor 1) and others in prices (CFD minis: scalingFactor 10000 points per 1.0). One
    point is ``point`` in price, so the wire level is price / (point x scalingFactor).
    """
    factor = Decimal(str(snapshot["scalingFactor"]))
    if factor <= 0:
        raise BrokerError(f"scalingFactor {factor} is not positive")
    scale = 1 / (point * factor)
    rounded = int(scale.to_integral_value())
    if rounded < 1 or scale != rounded or 10 ** round(math.log10(rounded)) != rounded:
        raise BrokerError(f"scalingFactor {factor} gives no power-of-ten scale for {inst.symbol}")
    return rounded


def market_info(data: Mapping[str, Any], epic: str, inst: Instrument, point: Decimal) -> MarketInfo:
    """Parse ``GET /markets/{epic}`` v3: scale, minimum stop distance in pips, status."""
    snapshot = data.get("snapshot") or {}
    scale = wire_scale(snapshot, inst, point)
    scaled = replace(inst, broker_scale=scale)
    decimals = snapshot.get("decimalPlacesFactor")
    bid, offer = snapshot.get("bid"), snapshot.get("offer")
    reference = None
    if bid is not None and offer is not None:
        reference = (float(bid) + float(offer)) / 2 / scale
    rules = data.get("dealingRules") or {}
    return MarketInfo(
        epic=epic,
        scale=scale,
        min_stop_pips=min_stop_distance_pips(data, scaled, point),
        status=str(snapshot.get("marketStatus") or "UNKNOWN"),
        decimals=None if decimals is None else int(decimals),
        reference=reference,
        trailing_allowed=rules.get("trailingStopsPreference") == "AVAILABLE",
    )


def unscale_stream(raw: float, scale: StreamScale) -> float:
    """A streamed price in traild units.

    Assumption (not documented by IG): PRICE values are in the same units as REST levels. A
    value whose magnitude is nearer the normal price than the scaled one is taken as normal
    already, so a server that streams normal prices cannot make traild 10000x wrong.
    """
    if scale.scale == 1:
        return raw
    if scale.reference and raw > 0:
        distance = abs(math.log10(raw) - math.log10(scale.reference))
        if distance < math.log10(scale.scale) / 2:
            return raw
    return raw / scale.scale


# -- flags and the TRADE stream ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopFlags:
    """What kind of stop a position has at IG: guaranteed, IG-native trailing, or plain."""

    guaranteed: bool = False
    trailing: bool = False
    trailing_distance: float | None = None
    trailing_increment: float | None = None


def position_flags(item: Mapping[str, Any]) -> StopFlags:
    """``controlledRisk`` = a guaranteed stop; ``trailingStopDistance`` set = IG trails it."""
    pos = item.get("position") or {}
    distance = pos.get("trailingStopDistance")
    return StopFlags(
        guaranteed=bool(pos.get("controlledRisk")),
        trailing=bool(distance),
        trailing_distance=None if distance is None else float(distance),
        trailing_increment=None if pos.get("trailingStep") is None else float(pos["trailingStep"]),
    )


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """One OPU event of the ``TRADE:{accountId}`` stream (levels still on the wire)."""

    deal_id: str
    epic: str
    status: str  # OPEN, UPDATED, DELETED
    direction: str
    size: float | None
    level: float | None
    stop: float | None
    limit: float | None
    flags: StopFlags
    ts: datetime | None


def parse_json_field(text: str | None) -> Mapping[str, Any] | None:
    """A TRADE field value (JSON text) -> dict; None for null / not JSON / not an object."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_opu(data: Mapping[str, Any]) -> PositionUpdate:
    """An OPU payload: dealId, epic, status, direction, size, level, stopLevel, limitLevel,
    guaranteedStop, trailingStop (IG streaming reference; trading-ig stream samples)."""
    return PositionUpdate(
        deal_id=str(data["dealId"]),
        epic=str(data["epic"]),
        status=str(data.get("status") or "").upper(),
        direction=str(data.get("direction") or ""),
        size=_num(data.get("size")),
        level=_num(data.get("level")),
        stop=_num(data.get("stopLevel")),
        limit=_num(data.get("limitLevel")),
        flags=StopFlags(
            guaranteed=bool(data.get("guaranteedStop")),
            trailing=bool(data.get("trailingStop")),
        ),
        ts=ig_time(data.get("timestamp")),
    )
