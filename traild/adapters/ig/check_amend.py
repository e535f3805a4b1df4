"""``traild ig check --amend DEAL_ID``: one no-op amendment, reported step by step.

The position is read (``GET /positions/{dealId}`` v2) and its stop and limit are sent back
exactly as IG gave them, with its stop type (``PUT /positions/otc/{dealId}`` v2:
``stopLevel``, ``limitLevel``, ``guaranteedStop``, ``trailingStop``; IG REST reference). A
PUT only says IG accepted the request for processing; the verdict is the deal confirmation
(``GET /confirms/{dealReference}``, IG REST reference; trading-ig confirms every amendment the
same way), which IG also pushes as CONFIRMS on the TRADE stream (IG streaming API reference).
Both are reported with the time they took. A position with an IG trailing stop is refused: a
no-op would have to resend IG's trailing distance and step, which traild never sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from traild.core.errors import BrokerRejected, BrokerTimeout

if TYPE_CHECKING:
    from traild.adapters.ig.rest import IGBroker

STREAM_CONFIRM_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class ConfirmSeen:
    deal_status: str
    reason: str
    status: str
    stop: Any
    limit: Any
    ms: float


@dataclass(frozen=True, slots=True)
class AmendReport:
    deal_id: str
    epic: str
    body: Mapping[str, Any]
    put_status: int
    reference: str
    put_ms: float
    pushed: ConfirmSeen | None  # CONFIRMS on the TRADE stream (None: not within the wait)
    polled: ConfirmSeen | None  # GET /confirms/{dealReference}
    unchanged: bool  # IG's stop and limit after the amendment are the ones before


class ConfirmWatch:
    """CONFIRMS payloads from the TRADE stream by deal reference, with their arrival time."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Mapping[str, Any], float]] = {}
        self._changed = trio.Event()

    def arrived(self, data: Mapping[str, Any]) -> None:
        reference = str(data.get("dealReference") or "")
        if reference:
            self._seen[reference] = (data, trio.current_time())
            self._changed.set()
            self._changed = trio.Event()

    async def wait(self, reference: str, seconds: float) -> tuple[Mapping[str, Any], float] | None:
        with trio.move_on_after(seconds):
            while reference not in self._seen:
                await self._changed.wait()
        return self._seen.get(reference)


def _seen(data: Mapping[str, Any], ms: float) -> ConfirmSeen:
    return ConfirmSeen(
        str(data.get("dealStatus")),
        str(data.get("reason")),
        str(data.get("status")),
        data.get("stopLevel"),
        data.get("limitLevel"),
        round(ms, 1),
    )


async def _read(broker: IGBroker, deal_id: str) -> Mapping[str, Any]:
    response = await broker.session.request(
        "GET", f"positions/{deal_id}", version=2, not_found_ok=True
    )
    if response is None:
        raise BrokerRejected(f"position {deal_id} is not open on account {broker.account_id}")
    item: Mapping[str, Any] = response.json()
    return item


async def noop_amend(broker: IGBroker, deal_id: str, confirms: ConfirmWatch) -> AmendReport:
    """PUT the position's current stop and limit, then its confirmation (pushed and polled)."""
    item = await _read(broker, deal_id)
    position, market = item.get("position") or {}, item.get("market") or {}
    if position.get("trailingStopDistance"):
        raise BrokerRejected(
            f"position {deal_id} has an IG trailing stop: a no-op amendment would end it; "
            "pick a position with a plain or guaranteed stop"
        )
    body = {
        "stopLevel": position.get("stopLevel"),
        "limitLevel": position.get("limitLevel"),
        "guaranteedStop": bool(position.get("controlledRisk")),
        "trailingStop": False,
    }
    start = trio.current_time()
    response = await broker.session.request(
        "PUT", f"positions/otc/{deal_id}", version=2, json=body, may_apply=True
    )
    assert response is not None
    put_ms = (trio.current_time() - start) * 1000
    reference = str(response.json().get("dealReference") or "")
    if not reference:
        raise BrokerTimeout(f"IG amend of {deal_id}: no deal reference in the answer")
    pushed = await confirms.wait(reference, STREAM_CONFIRM_WAIT_S)
    polled_at = trio.current_time()
    answer = await broker.session.request(
        "GET", f"confirms/{reference}", version=1, not_found_ok=True
    )
    polled_ms = (trio.current_time() - polled_at) * 1000
    after = (await _read(broker, deal_id)).get("position") or {}
    levels = (after.get("stopLevel"), after.get("limitLevel"))
    return AmendReport(
        deal_id,
        str(market.get("epic", "?")),
        body,
        response.status_code,
        reference,
        round(put_ms, 1),
        None if pushed is None else _seen(pushed[0], (pushed[1] - start) * 1000),
        None if answer is None else _seen(answer.json(), polled_ms),
        levels == (body["stopLevel"], body["limitLevel"]),
    )
