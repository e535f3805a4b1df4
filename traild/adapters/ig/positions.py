"""IG's positions as traild knows them: the REST reads (``GET /positions`` v2, one deal by id)
and what is kept per deal between them (the position, its stop type, traild's latest stop sent,
the refusals and limit mismatches already logged).

Every per-deal entry goes when the deal closes (``forget``), and each table keeps at most
``DEALS_KEPT`` deals, the least recently touched dropped first, so a long run over many deals
(or positions traild refuses, which it never sees close) holds a bounded amount.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from loguru import logger

from traild.adapters.ig.markets import MarketRules
from traild.adapters.ig.options import IGTakeOver
from traild.adapters.ig.session import IGSession
from traild.adapters.ig.wire import StopFlags, parse_position, position_flags
from traild.core.errors import BrokerRejected, BrokerUnavailable, InstrumentError
from traild.core.messages import Position

GUARANTEED = "GUARANTEED_STOP_NOT_MANAGED"
TRAILING = "IG_TRAILING_STOP_NOT_MANAGED"
DEALS_KEPT = 2_000  # far above an account's open positions; a cap, not a working size


def keep_newest(entries: MutableMapping[Any, Any], kept: int) -> None:
    """Drop the oldest entries (insertion order) beyond ``kept``."""
    while len(entries) > kept:
        del entries[next(iter(entries))]


def _touch(entries: MutableMapping[str, Any], key: str, value: Any) -> None:
    """Set ``key`` as the newest entry, then cap the table."""
    entries.pop(key, None)
    entries[key] = value
    keep_newest(entries, DEALS_KEPT)


class IGPositions:
    """Reads IG's positions and keeps, per deal, what the amendments and events need."""

    def __init__(self, session: IGSession, markets: MarketRules, take_over: IGTakeOver) -> None:
        self.session = session
        self.markets = markets
        self.take_over = take_over
        self.deals: dict[str, Position] = {}
        self.flags: dict[str, StopFlags] = {}
        self.sent: dict[str, float] = {}  # deal id -> the stop of traild's latest amendment
        self.quotes: dict[str, tuple[float, float]] = {}  # epic -> (bid, offer), last read
        self._refused: dict[str, set[str]] = {}  # deal id -> refusals logged
        self._limit_warnings: dict[str, set[float | None]] = {}  # deal id -> limits warned

    def sizes(self) -> dict[str, int]:
        """How many deals each per-deal table holds (bounded: see the module docstring)."""
        return {
            "deals": len(self.deals),
            "flags": len(self.flags),
            "sent": len(self.sent),
            "refused": len(self._refused),
            "limit_warnings": len(self._limit_warnings),
        }

    # -- reads -----------------------------------------------------------------------------
    async def open_positions(self) -> list[Position]:
        response = await self.session.request("GET", "positions", version=2)
        assert response is not None
        items = response.json().get("positions", [])
        await self.markets.load_markets({str((i.get("market") or {}).get("epic")) for i in items})
        return [p for p in map(self.adopt_item, items) if p is not None]

    async def get_position(self, deal_id: str) -> Position | None:
        response = await self.session.request(
            "GET", f"positions/{deal_id}", version=2, not_found_ok=True
        )
        if response is None:
            return None
        item = response.json()
        try:
            epic = str(item["market"]["epic"])
            await self.markets.market(epic)
            position = parse_position(item, self.markets.instrument(epic))
        except InstrumentError as exc:
            raise BrokerRejected(f"IG position {deal_id}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise BrokerUnavailable(f"IG position {deal_id}: malformed answer ({exc})") from exc
        self.remember(position, position_flags(item))
        return position

    def adopt_item(self, item: Mapping[str, Any]) -> Position | None:
        """One /positions element -> Position, or None (logged once) when traild must not
        manage it: unknown instrument or scale, a guaranteed or IG-trailing stop."""
        deal = str((item.get("position") or {}).get("dealId", "?"))
        try:
            epic = str(item["market"]["epic"])
            position = parse_position(item, self.markets.instrument(epic))
            flags = position_flags(item)
        except (KeyError, TypeError, ValueError, InstrumentError) as exc:
            self.refuse_once(deal, "unreadable", f"IG position {deal} not managed: {exc}")
            return None
        market = item["market"]
        inst = self.markets.instrument(position.epic)
        if market.get("bid") is not None and market.get("offer") is not None:
            bid, offer = inst.from_broker(market["bid"]), inst.from_broker(market["offer"])
            self.quotes[position.epic] = (bid, offer)
        self.remember(position, flags)
        why = self.refusal(flags)
        if why is not None:
            self.refuse_once(deal, why, f"IG position {deal} not managed: {why}")
            return None
        return position

    # -- per deal --------------------------------------------------------------------------
    def remember(self, position: Position, flags: StopFlags) -> None:
        _touch(self.deals, position.deal_id, position)
        _touch(self.flags, position.deal_id, flags)

    def note_sent(self, deal_id: str, stop: float) -> None:
        """traild is sending ``stop`` for ``deal_id`` (its TRADE update is then traild's own)."""
        _touch(self.sent, deal_id, stop)

    def forget(self, deal_id: str) -> None:
        """The deal closed: nothing is kept for it."""
        for table in (self.deals, self.flags, self.sent, self._refused, self._limit_warnings):
            table.pop(deal_id, None)

    def refusal(self, flags: StopFlags) -> str | None:
        """Why traild must not amend a stop of this kind (None: it may)."""
        if flags.guaranteed and not self.take_over.guaranteed:
            return GUARANTEED
        if flags.trailing and not self.take_over.trailing:
            return TRAILING
        return None

    def refuse_once(self, deal_id: str, why: str, message: str) -> None:
        logged = self._refused.get(deal_id, set())
        if why in logged:
            return
        _touch(self._refused, deal_id, logged | {why})
        logger.bind(event="broker.position_refused", deal_id=deal_id, reason=why).warning(message)

    def warn_limit_once(
        self, deal_id: str, epic: str, ig_limit: float | None, limit: float | None
    ) -> None:
        """traild's limit for the deal differs from IG's (IG's is kept): logged once per value."""
        warned = self._limit_warnings.get(deal_id, set())
        if ig_limit == limit or limit in warned:
            return
        _touch(self._limit_warnings, deal_id, warned | {limit})
        logger.bind(event="broker.limit_mismatch", deal_id=deal_id, epic=epic).warning(
            "limit of {} at IG is {}, traild has {}; IG's is kept", deal_id, ig_limit, limit
        )
