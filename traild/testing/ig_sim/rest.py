"""The IG sim's REST payloads and dealing decisions (positions, amendments, confirms, markets).

Levels are kept in normal prices and scaled on the wire exactly where IG scales them: CEEM
epics' REST levels are x10000. Amendment verdicts follow IG: a stop on or beyond the market is
``WRONG_SIDE_OF_MARKET``, one closer than the dealing rule ``ATTACHED_ORDER_LEVEL_ERROR``.
An amendment without ``limitLevel`` (or with null) removes the limit, as the omitted leg would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traild.testing.ig_sim.server import IGSim, SimMarket, SimPosition

Reply = tuple[int, Any, dict[str, str]]
_REST_STATUS = {
    "TRADEABLE": "TRADEABLE",
    "EDIT": "EDITS_ONLY",
    "CLOSED": "CLOSED",
    "OFFLINE": "OFFLINE",
    "AUCTION": "ON_AUCTION",
    "AUCTION_NO_EDIT": "ON_AUCTION_NO_EDITS",
    "SUSPENDED": "SUSPENDED",
}
_EPSILON = 1e-9


def scale_of(epic: str) -> int:
    """IG's REST levels of CEEM epics are x10000 (Lightstreamer's are not)."""
    return 10000 if ".CEEM." in epic.upper() else 1


def point_size(epic: str) -> float:
    """Price size of one IG point: a pip on FX, 1.0 on gold."""
    upper = epic.upper()
    if "GOLD" in upper or "XAU" in upper:
        return 1.0
    return 0.01 if "JPY" in upper else 0.0001


def wire(value: float | None, epic: str) -> float | None:
    return None if value is None else round(value * scale_of(epic), 6)


def unwire(value: float | None, epic: str) -> float | None:
    return None if value is None else round(value / scale_of(epic), 10)


def _scaling_factor(epic: str) -> int:
    upper = epic.upper()
    if scale_of(epic) > 1 or "GOLD" in upper or "XAU" in upper:
        return 1
    return 100 if "JPY" in upper else 10000


def positions(sim: IGSim, account: str) -> dict[str, Any]:
    if account != sim.account_id:
        return {"positions": []}
    listed = []
    for p in sim.positions.values():
        if sim.hidden.get(p.deal_id, 0) > 0:
            sim.hidden[p.deal_id] -= 1
            continue
        listed.append(position_json(sim, p))
    return {"positions": listed}


def position(sim: IGSim, deal_id: str) -> Reply:
    found = sim.positions.get(deal_id)
    if found is None:
        return 404, {"errorCode": "error.service.marketdata.position.details.null.error"}, {}
    return 200, position_json(sim, found), {}


def position_json(sim: IGSim, p: SimPosition) -> dict[str, Any]:
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
            "limitLevel": wire(p.limit, p.epic),
            "level": wire(p.level, p.epic),
            "currency": "USD",
            "controlledRisk": False,
            "stopLevel": wire(p.stop, p.epic),
            "trailingStep": None,
            "trailingStopDistance": None,
            "limitedRiskPremium": None,
        },
        "market": {
            "instrumentName": p.epic,
            "expiry": "-",
            "epic": p.epic,
            "instrumentType": "CURRENCIES",
            "lotSize": 1.0,
            "bid": wire(market.bid, p.epic),
            "offer": wire(market.offer, p.epic),
            "updateTime": market.update_time,
            "updateTimeUTC": market.update_time,
            "delayTime": 0,
            "streamingPricesAvailable": True,
            "marketStatus": _REST_STATUS.get(market.state, market.state),
            "scalingFactor": _scaling_factor(p.epic),
        },
    }


def amend(sim: IGSim, deal_id: str, body: Any) -> Reply:
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
    stop, limit = unwire(levels[0], found.epic), unwire(levels[1], found.epic)
    reason = _verdict(sim.markets[found.epic], found, stop, limit)
    if reason is None:
        found.stop, found.limit = stop, limit
    sim.store_confirm(reference, _confirm(sim, reference, deal_id, found, reason, stop, limit))
    return 200, {"dealReference": reference}, {}


def _min_distance(market: SimMarket) -> float:
    if market.unit == "PERCENTAGE":
        return (market.bid + market.offer) / 2 * market.min_stop_distance / 100
    return market.min_stop_distance * point_size(market.epic)


def _verdict(
    market: SimMarket, p: SimPosition, stop: float | None, limit: float | None
) -> str | None:
    if market.state in ("CLOSED", "OFFLINE", "SUSPENDED"):
        return "MARKET_CLOSED" if market.state == "CLOSED" else "MARKET_OFFLINE"
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
    sim: IGSim,
    reference: str,
    deal_id: str,
    p: SimPosition | None,
    reason: str | None,
    stop: float | None = None,
    limit: float | None = None,
) -> dict[str, Any]:
    accepted = reason is None
    epic = p.epic if p else None
    return {
        "date": sim.clock().strftime("%Y-%m-%dT%H:%M:%S.000"),
        "status": "AMENDED" if accepted else None,
        "reason": "SUCCESS" if accepted else reason,
        "dealStatus": "ACCEPTED" if accepted else "REJECTED",
        "epic": epic,
        "expiry": "-",
        "dealReference": reference,
        "dealId": deal_id,
        "affectedDeals": [{"dealId": deal_id, "status": "AMENDED"}] if accepted else [],
        "level": wire(p.level, p.epic) if p else None,
        "size": p.size if p else None,
        "direction": p.direction if p else None,
        "stopLevel": wire(stop, epic) if epic else None,
        "limitLevel": wire(limit, epic) if epic else None,
        "stopDistance": None,
        "limitDistance": None,
        "guaranteedStop": False,
        "trailingStop": False,
        "profit": None,
        "profitCurrency": None,
    }


def confirm(sim: IGSim, reference: str) -> Reply:
    payload = sim.take_confirm(reference)
    if payload is None:
        return 404, {"errorCode": "error.confirms.deal-not-found"}, {}
    return 200, payload, {}


def market(sim: IGSim, epic: str) -> Reply:
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
        "bid": wire(m.bid, epic),
        "offer": wire(m.offer, epic),
        "updateTime": m.update_time,
        "delayTime": 0,
        "decimalPlacesFactor": 1 if scale_of(epic) > 1 else 5,
        "scalingFactor": _scaling_factor(epic),
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


def applications(sim: IGSim) -> list[dict[str, Any]]:
    trading, account = sim.allowance_limits()
    return [
        {
            "name": "traild-sim",
            "apiKey": sim.api_key,
            "status": "ENABLED",
            "allowanceApplicationOverall": 60,
            "allowanceAccountTrading": trading or 100,
            "allowanceAccountOverall": account or 30,
            "allowanceAccountHistoricalData": 10000,
            "concurrentSubscriptionsLimit": 40,
        }
    ]
