"""The IG sim's REST payloads and dealing decisions (positions, amendments, confirms, markets).

Levels are kept in normal prices and put on the wire in the market's units (``SimMarket.scale``:
CEEM and spread-bet epics in points). Amendment verdicts follow IG's reasons (confirm enum,
ecosystem research 6.4): a stop on or beyond the market is ``WRONG_SIDE_OF_MARKET``, one closer
than the dealing rule ``ATTACHED_ORDER_LEVEL_ERROR``. PUT /positions/otc v2 replaces stop, limit
and the stop's type as sent (IG REST reference service-detail?id=608): a missing or null
``limitLevel`` removes the limit, ``guaranteedStop=false`` makes a guaranteed stop plain and
``trailingStop=false`` ends IG's trailing (the sim records those conversions; that IG converts
rather than refuses is an assumption).
"""

from __future__ import annotations

import math
from typing import Any

from traild.testing.ig_sim.market import SimMarket, SimPosition, SimView, point_size

Reply = tuple[int, Any, dict[str, str]]
# DLG_FLAG (stream) -> marketStatus (REST). DEAL/EDIT/CLOSED/SUSPEND/AUCTION pairs follow
# IG's REST enum (TRADEABLE, EDITS_ONLY, CLOSED, SUSPENDED, ON_AUCTION, ON_AUCTION_NO_EDITS,
# OFFLINE); the others are an assumption.
_REST_STATUS = {
    "DEAL": "TRADEABLE",
    "EDIT": "EDITS_ONLY",
    "CLOSINGSONLY": "CLOSINGS_ONLY",
    "DEALNOEDIT": "TRADEABLE",
    "CLOSED": "CLOSED",
    "CALL": "CLOSED",
    "AUCTION": "ON_AUCTION",
    "AUCTIONNOEDIT": "ON_AUCTION_NO_EDITS",
    "SUSPEND": "SUSPENDED",
}
# States in which IG refuses an edit of an open position, with the confirm reason (assumption
# for CALL, DEALNOEDIT, AUCTION and AUCTIONNOEDIT: IG's names say "no edit" / not dealing).
_NO_EDIT = {
    "CLOSED": "MARKET_CLOSED",
    "CALL": "MARKET_CLOSED",
    "SUSPEND": "MARKET_OFFLINE",
    "DEALNOEDIT": "MARKET_CLOSED_WITH_EDITS",
    "AUCTION": "MARKET_CLOSED_WITH_EDITS",
    "AUCTIONNOEDIT": "MARKET_CLOSED_WITH_EDITS",
}
_EPSILON = 1e-9


def wire(value: float | None, market: SimMarket) -> float | None:
    return None if value is None else market.wire(value)


def unwire(value: float | None, market: SimMarket) -> float | None:
    return None if value is None else round(value / market.scale, 10)


def _scaling_factor(market: SimMarket) -> int:
    """``snapshot.scalingFactor``: points per wire unit (1 when quoted in points)."""
    return max(1, round(1 / (point_size(market.epic) * market.scale)))


def _decimals(market: SimMarket) -> int:
    """``snapshot.decimalPlacesFactor``: decimals of the wire level."""
    tick = 0.00001 if point_size(market.epic) == 0.0001 else 0.001
    if point_size(market.epic) == 1.0:
        tick = 0.01
    return max(0, round(-math.log10(tick * market.scale)))


def positions(sim: SimView, account: str) -> dict[str, Any]:
    if account != sim.account_id:
        return {"positions": []}
    listed = []
    for p in sim.positions.values():
        if sim.hidden.get(p.deal_id, 0) > 0:
            sim.hidden[p.deal_id] -= 1
            continue
        listed.append(position_json(sim, p))
    return {"positions": listed}


def position(sim: SimView, deal_id: str) -> Reply:
    found = sim.positions.get(deal_id)
    if found is None:
        return 404, {"errorCode": "error.service.marketdata.position.details.null.error"}, {}
    return 200, position_json(sim, found), {}


def position_json(sim: SimView, p: SimPosition) -> dict[str, Any]:
    market = sim.markets[p.epic]
    created = p.created.strftime("%Y-%m-%dT%H:%M:%S") if p.created else None
    return {
        "position": {
            "contractSize": 1.0,
            "createdDate": created,
            "createdDateUTC": created,
            "dealId": p.deal_id,
            "dealReference": f"REF{p.deal_id}",
            "size": p.size,
            "direction": p.direction,
            "limitLevel": wire(p.limit, market),
            "level": wire(p.level, market),
            "currency": "USD",
            "controlledRisk": p.guaranteed,
            "stopLevel": wire(p.stop, market),
            "trailingStep": 1.0 if p.trailing_distance else None,
            "trailingStopDistance": p.trailing_distance,
            "limitedRiskPremium": None,
        },
        "market": {
            "instrumentName": p.epic,
            "expiry": "-",
            "epic": p.epic,
            "instrumentType": "CURRENCIES",
            "lotSize": 1.0,
            "bid": wire(market.bid, market),
            "offer": wire(market.offer, market),
            "updateTime": market.update_time,
            "updateTimeUTC": market.update_time,
            "delayTime": 0,
            "streamingPricesAvailable": True,
            "marketStatus": _REST_STATUS.get(market.state, market.state),
            "scalingFactor": _scaling_factor(market),
        },
    }


def amend(sim: SimView, deal_id: str, body: Any) -> Reply:
    """PUT /positions/otc/{dealId} v2: validate, decide, store the confirm, answer the ref."""
    if not isinstance(body, dict):
        return 400, {"errorCode": "validation.null-not-allowed.request"}, {}
    levels = (body.get("stopLevel"), body.get("limitLevel"))
    if any(v is not None and not isinstance(v, int | float) for v in levels):
        return 400, {"errorCode": "validation.type-mismatch.request"}, {}
    if body.get("trailingStop") and body.get("trailingStopDistance") is None:
        return 400, {"errorCode": "validation.null-not-allowed.request.trailingStopDistance"}, {}
    sim.amendments.append((deal_id, body))
    reference = sim.new_reference()
    found = sim.positions.get(deal_id)
    if found is None:
        sim.store_confirm(reference, _confirm(sim, reference, deal_id, None, "POSITION_NOT_FOUND"))
        return 200, {"dealReference": reference}, {}
    market = sim.markets[found.epic]
    stop, limit = unwire(levels[0], market), unwire(levels[1], market)
    reason = _verdict(market, found, stop, limit)
    if reason is None:
        found.stop, found.limit = stop, limit
        _apply_stop_type(sim, found, body)
    payload = _confirm(sim, reference, deal_id, found, reason, stop, limit)
    sim.store_confirm(reference, payload)
    sim.publish_confirm(payload)
    if reason is None:
        sim.publish_opu(found, "UPDATED")
    return 200, {"dealReference": reference}, {}


def _apply_stop_type(sim: SimView, p: SimPosition, body: dict[str, Any]) -> None:
    if p.guaranteed and not body.get("guaranteedStop"):
        p.guaranteed = False
        sim.conversions.append((p.deal_id, "guaranteed"))
    if p.trailing_distance and not body.get("trailingStop"):
        p.trailing_distance = None
        sim.conversions.append((p.deal_id, "trailing"))


def opu(sim: SimView, p: SimPosition, status: str) -> dict[str, Any]:
    """An OPU payload of the TRADE stream (IG streaming reference; levels on the wire)."""
    market = sim.markets[p.epic]
    return {
        "dealReference": f"REF{p.deal_id}",
        "dealId": p.deal_id,
        "direction": p.direction,
        "epic": p.epic,
        "status": status,
        "dealStatus": "ACCEPTED",
        "level": wire(p.level, market),
        "size": p.size,
        "timestamp": sim.clock().strftime("%Y-%m-%dT%H:%M:%S.000"),
        "channel": "PublicRestOTC",
        "expiry": "-",
        "currency": "USD",
        "stopLevel": wire(p.stop, market),
        "limitLevel": wire(p.limit, market),
        "guaranteedStop": p.guaranteed,
        "trailingStop": bool(p.trailing_distance),
    }


def _min_distance(market: SimMarket) -> float:
    if market.unit == "PERCENTAGE":
        return (market.bid + market.offer) / 2 * market.min_stop_distance / 100
    return market.min_stop_distance * point_size(market.epic)


def _verdict(
    market: SimMarket, p: SimPosition, stop: float | None, limit: float | None
) -> str | None:
    if market.state in _NO_EDIT:
        return _NO_EDIT[market.state]
    sign = 1 if p.direction == "BUY" else -1
    price = market.bid if sign > 0 else market.offer
    minimum = _min_distance(market)
    if stop is not None:
        if sign * (price - stop) <= 0:
            return "WRONG_SIDE_OF_MARKET"
        if sign * (price - stop) < minimum - _EPSILON:
            return "ATTACHED_ORDER_LEVEL_ERROR"
    changed = limit is not None and (p.limit is None or abs(limit - p.limit) > _EPSILON)
    if changed and limit is not None and sign * (limit - price) < max(minimum, _EPSILON):
        return "ATTACHED_ORDER_LEVEL_ERROR"
    return None


def _confirm(
    sim: SimView,
    reference: str,
    deal_id: str,
    p: SimPosition | None,
    reason: str | None,
    stop: float | None = None,
    limit: float | None = None,
) -> dict[str, Any]:
    accepted = reason is None
    market = sim.markets[p.epic] if p else None
    return {
        "date": sim.clock().strftime("%Y-%m-%dT%H:%M:%S.000"),
        "status": "AMENDED" if accepted else None,
        "reason": "SUCCESS" if accepted else reason,
        "dealStatus": "ACCEPTED" if accepted else "REJECTED",
        "epic": p.epic if p else None,
        "expiry": "-",
        "dealReference": reference,
        "dealId": deal_id,
        "affectedDeals": [{"dealId": deal_id, "status": "AMENDED"}] if accepted else [],
        "level": wire(p.level, market) if p and market else None,
        "size": p.size if p else None,
        "direction": p.direction if p else None,
        "stopLevel": wire(stop, market) if market else None,
        "limitLevel": wire(limit, market) if market else None,
        "stopDistance": None,
        "limitDistance": None,
        "guaranteedStop": bool(p and p.guaranteed),
        "trailingStop": bool(p and p.trailing_distance),
        "profit": None,
        "profitCurrency": None,
    }


def confirm(sim: SimView, reference: str) -> Reply:
    payload = sim.take_confirm(reference)
    if payload is None:
        return 404, {"errorCode": "error.confirms.deal-not-found"}, {}
    return 200, payload, {}


def market(sim: SimView, epic: str) -> Reply:
    m = sim.markets.get(epic)
    if m is None:
        return 404, {"errorCode": "error.service.marketdata.instrument.epic.unavailable"}, {}
    rules = {
        "minStepDistance": {"unit": "POINTS", "value": 1.0},
        "minDealSize": {"unit": "POINTS", "value": 0.5},
        "minControlledRiskStopDistance": {"unit": "POINTS", "value": 5.0},
        "minNormalStopOrLimitDistance": {"unit": m.unit, "value": m.min_stop_distance},
        "maxStopOrLimitDistance": {"unit": "PERCENTAGE", "value": 75.0},
        "marketOrderPreference": "AVAILABLE_DEFAULT_OFF",
        "trailingStopsPreference": "AVAILABLE",
    }
    snapshot = {
        "marketStatus": _REST_STATUS.get(m.state, m.state),
        "bid": wire(m.bid, m),
        "offer": wire(m.offer, m),
        "updateTime": m.update_time,
        "delayTime": 0,
        "decimalPlacesFactor": _decimals(m),
        "scalingFactor": _scaling_factor(m),
        "controlledRiskExtraSpread": 1,
    }
    instrument = {
        "epic": epic,
        "name": epic,
        "type": "CURRENCIES",
        "expiry": "-",
        "lotSize": 1.0,
        "onePipMeans": str(point_size(epic)),
        "streamingPricesAvailable": True,
    }
    return 200, {"instrument": instrument, "dealingRules": rules, "snapshot": snapshot}, {}


def applications(sim: SimView) -> list[dict[str, Any]]:
    trading, account, app = sim.allowance_limits()
    return [
        {
            "name": "traild-sim",
            "apiKey": sim.api_key,
            "status": "ENABLED",
            "allowanceApplicationOverall": app or 60,
            "allowanceAccountTrading": trading or 100,
            "allowanceAccountOverall": account or 30,
            "allowanceAccountHistoricalData": 10000,
            "concurrentSubscriptionsLimit": 40,
        }
    ]


def closed_activity(sim: SimView, p: SimPosition, level: float, reason: str) -> dict[str, Any]:
    """The history/activity v3 entry of a position closed at ``level`` (``reason``: stop,
    limit, or manual: the trader on IG's platform)."""
    now = sim.clock().strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "date": now,
        "dateUTC": now,
        "epic": p.epic,
        "dealId": sim.new_deal_id(),
        "channel": "SYSTEM" if reason != "manual" else "WEB",
        "type": "POSITION",
        "status": "ACCEPTED",
        "description": f"Position/s closed: {p.deal_id[-8:]}",
        "details": {
            "dealReference": sim.new_reference(),
            "actions": [{"actionType": "POSITION_CLOSED", "affectedDealId": p.deal_id}],
            "direction": "SELL" if p.direction == "BUY" else "BUY",
            "size": p.size,
            "level": sim.markets[p.epic].wire(level),
        },
    }
