"""IG Markets REST broker: positions, stop amendments with confirmation, dealing rules.

What traild sends to IG, and nothing else:
  POST /session v2            identifier + password -> CST / X-SECURITY-TOKEN headers
  PUT /session v1             only when ``account_id`` differs from the login's default account
  GET /operations/application v1   the account's request allowances (unless configured)
  GET /positions v2, GET /positions/{dealId} v2    open positions (reads only)
  GET /markets/{epic} v3      dealing rules: the minimum stop distance, once per epic (cached)
  PUT /positions/otc/{dealId} v2   {stopLevel, limitLevel, guaranteedStop=false, trailingStop=false}
  GET /confirms/{dealReference} v1 the verdict of every amendment
  GET /history/activity v3    the exit level of a position that disappeared
  DELETE /session v1          at shutdown
traild never opens or closes positions at IG and never amends by epic.

Lessons of the seed system built in: every request has a timeout; the stop is absolute and
scaled for CEEM epics (x broker_scale) at this boundary only; the existing take-profit is
re-sent with every amendment; the deal reference is always confirmed; a NOT_FOUND concerns
one deal only and a failed poll never closes anything; secrets never reach logs or errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import trio
from loguru import logger

from traild.adapters.ig.session import (
    DEMO_URL,
    LIVE_URL,
    IGSession,
    Secret,
    SecretLike,
    StreamAuth,
    utcnow,
)
from traild.adapters.ig.wire import (
    POINT_SIZES,
    classify_exit,
    ig_time,
    min_stop_distance_pips,
    parse_confirmation,
    parse_position,
    point_size,
)
from traild.core.errors import (
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    InstrumentError,
    RateLimited,
)
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.messages import (
    Confirmation,
    Direction,
    OpenRequest,
    Position,
    PositionClosed,
    PositionOpened,
)
from traild.ports import EventSink

__all__ = [
    "DEMO_URL",
    "LIVE_URL",
    "POINT_SIZES",
    "IGBroker",
    "IGSession",
    "Secret",
    "classify_exit",
    "min_stop_distance_pips",
    "parse_confirmation",
    "parse_position",
]


class IGBroker:
    """The Broker port over IG's REST API (an async context manager owning its session).

    Amendments are by deal id only. The limit sent with a stop is IG's current limit for that
    deal, from the last poll or read first for a deal new to this process: traild owns the
    stop, never the take-profit, so a differing ``limit`` argument is only logged
    (``broker.limit_mismatch``). ``poll_interval`` paces ``run``: each poll costs one
    non-trading request of the account's allowance (30/min on live), and confirms share it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretLike,
        identifier: str,
        password: str | SecretLike,
        account_id: str | None = None,
        *,
        instruments: InstrumentTable,
        timeout: float = 10.0,
        poll_interval: float = 5.0,
        session_refresh_after: float | None = 6 * 3600.0,
        confirm_attempts: int = 10,
        confirm_interval: float = 0.2,
        rules_ttl: float = 6 * 3600.0,
        rules_retry: float = 60.0,
        trading_allowance: int | None = None,
        account_allowance: int | None = None,
        point_sizes: Mapping[str, Decimal] = POINT_SIZES,
        stream_url: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = IGSession(
            base_url,
            api_key,
            identifier,
            password,
            account_id,
            timeout=timeout,
            refresh_after=session_refresh_after,
            stream_url=stream_url,
            clock=clock,
        )
        self._api_key = Secret(api_key)
        self._instruments = instruments
        self._poll_interval = poll_interval
        self._confirm = (confirm_attempts, confirm_interval)
        self._rules_timing = (rules_ttl, rules_retry)
        self._allowance = (trading_allowance, account_allowance)
        self._point_sizes = point_sizes
        self._clock = clock
        self._deals: dict[str, Position] = {}
        self._quotes: dict[str, tuple[float, float]] = {}
        self._min_stop: dict[str, float] = {}
        self._rules_due: dict[str, float] = {}
        self._skipped: set[str] = set()
        self._limit_warnings: set[tuple[str, float | None]] = set()

    def __repr__(self) -> str:
        return f"IGBroker({self.session!r})"

    async def __aenter__(self) -> Self:
        await self.session.__aenter__()
        if self._allowance[0] is None:
            await self._load_allowance()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.session.__aexit__(exc_type, exc, tb)

    async def stream_auth(self, refresh: bool = False) -> StreamAuth:
        """For IGStreamFeed: the Lightstreamer endpoint and this session's credentials."""
        return await self.session.stream_auth(refresh)

    # -- reads -----------------------------------------------------------------------------
    async def open_positions(self) -> list[Position]:
        response = await self.session.request("GET", "positions", version=2)
        assert response is not None
        positions = []
        for item in response.json().get("positions", []):
            position = self._parse(item)
            if position is not None:
                positions.append(position)
        await self._refresh_rules({p.epic for p in positions})
        return positions

    async def get_position(self, deal_id: str) -> Position | None:
        response = await self.session.request(
            "GET", f"positions/{deal_id}", version=2, not_found_ok=True
        )
        if response is None:
            return None
        try:
            position = parse_position(response.json(), self._instruments)
        except InstrumentError as exc:
            raise BrokerRejected(f"IG position {deal_id}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise BrokerUnavailable(f"IG position {deal_id}: malformed answer ({exc})") from exc
        self._deals[deal_id] = position
        return position

    def _parse(self, item: Mapping[str, Any]) -> Position | None:
        try:
            position = parse_position(item, self._instruments)
        except (KeyError, TypeError, ValueError, InstrumentError) as exc:
            deal = (item.get("position") or {}).get("dealId", "?")
            if deal not in self._skipped:
                self._skipped.add(deal)
                logger.bind(event="broker.position_skipped", deal_id=deal).error(
                    "IG position {} not managed: {}", deal, exc
                )
            return None
        market = item["market"]
        inst = self._instruments.resolve(position.epic)
        if market.get("bid") is not None and market.get("offer") is not None:
            bid, offer = inst.from_broker(market["bid"]), inst.from_broker(market["offer"])
            self._quotes[position.epic] = (bid, offer)
        self._deals[position.deal_id] = position
        return position

    # -- dealing rules and allowances ------------------------------------------------------
    def min_stop_distance_pips(self, epic: str) -> float:
        return self._min_stop.get(epic, 0.0)

    def allowance_per_minute(self) -> int | None:
        """Amendments per minute that fit the account's allowances, or None when unknown.

        An amendment costs one trading request plus at least one non-trading confirm, and the
        position poll spends non-trading requests too; 2 are kept for session refreshes.
        """
        trading, overall = self._allowance
        if trading is None:
            return None
        budget = trading
        if overall is not None:
            budget = min(trading, overall - math.ceil(60 / self._poll_interval))
        return max(1, budget - 2)

    async def _load_allowance(self) -> None:
        try:
            response = await self.session.request("GET", "operations/application", version=1)
            assert response is not None
            apps = response.json()
            mine = [a for a in apps if a.get("apiKey") == self._api_key.reveal()] or apps
            app = mine[0]
            self._allowance = (
                int(app["allowanceAccountTrading"]),
                int(app["allowanceAccountOverall"]),
            )
        except (BrokerError, KeyError, IndexError, TypeError, ValueError) as exc:
            logger.bind(event="broker.allowance_unknown").warning(
                "IG allowances not available ({}); rate limit left to the defaults", exc
            )
            return
        logger.bind(event="broker.allowance", trading=self._allowance[0]).info(
            "IG allowances: trading {}/min, account {}/min", *self._allowance
        )

    async def _refresh_rules(self, epics: set[str]) -> None:
        now = trio.current_time()
        for epic in sorted(epics):
            if self._rules_due.get(epic, -math.inf) > now:
                continue
            ttl, retry = self._rules_timing
            try:
                response = await self.session.request("GET", f"markets/{epic}", version=3)
                assert response is not None
                inst = self._instruments.resolve(epic)
                point = point_size(inst, self._point_sizes)
                pips = min_stop_distance_pips(response.json(), inst, point)
            except (BrokerError, KeyError, TypeError, ValueError) as exc:
                self._rules_due[epic] = now + retry
                logger.bind(event="broker.rules_failed", epic=epic).warning(
                    "IG dealing rules for {} not available: {}", epic, exc
                )
                continue
            self._rules_due[epic] = now + ttl
            self._min_stop[epic] = pips
            logger.bind(event="broker.dealing_rules", epic=epic, min_stop_pips=pips).info(
                "IG minimum stop distance for {}: {} pips", epic, pips
            )

    # -- amendments ------------------------------------------------------------------------
    async def open_position(self, request: OpenRequest) -> Position:
        raise BrokerRejected("traild does not open positions at IG")

    def submit_open(self, request: OpenRequest) -> str:
        raise BrokerRejected("traild does not open positions at IG")

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """PUT the absolute stop (re-sending the limit), then confirm the deal reference."""
        known = self._deals.get(deal_id) or await self.get_position(deal_id)
        if known is None:
            return Confirmation(False, None, "", "POSITION_NOT_FOUND")
        inst = self._instruments.resolve(known.epic)
        if known.limit != limit and (deal_id, limit) not in self._limit_warnings:
            self._limit_warnings.add((deal_id, limit))
            logger.bind(event="broker.limit_mismatch", deal_id=deal_id, epic=known.epic).warning(
                "limit of {} at IG is {}, traild has {}; IG's is kept", deal_id, known.limit, limit
            )
        body = {
            "stopLevel": inst.to_broker(stop),
            "limitLevel": None if known.limit is None else inst.to_broker(known.limit),
            "guaranteedStop": False,
            "trailingStop": False,
        }
        response = await self.session.request(
            "PUT", f"positions/otc/{deal_id}", version=2, json=body, may_apply=True
        )
        assert response is not None
        reference = str(response.json().get("dealReference") or "")
        if not reference:
            raise BrokerTimeout(f"IG amend of {deal_id}: no deal reference in the answer")
        confirmation = await self._confirmation(reference, inst)
        if confirmation.accepted:
            if confirmation.level is None:  # IG did not echo the level: it is the one sent
                confirmation = replace(confirmation, level=stop)
            self._deals[deal_id] = replace(known, stop=confirmation.level)
        return confirmation

    async def _confirmation(self, reference: str, inst: Instrument) -> Confirmation:
        attempts, interval = self._confirm
        for attempt in range(attempts):
            try:
                response = await self.session.request(
                    "GET", f"confirms/{reference}", version=1, not_found_ok=True
                )
            except BrokerError as exc:
                raise BrokerTimeout(
                    f"IG amendment {reference} sent, verdict unknown: {exc}"
                ) from exc
            if response is not None:
                return parse_confirmation(response.json(), reference, inst)
            if attempt + 1 < attempts:
                await trio.sleep(interval)
        raise BrokerTimeout(
            f"IG amendment {reference} sent, no confirmation after {attempts} tries"
        )

    async def amend_stop_safely(
        self, deal_id: str, stop: float, limit: float | None, retries: int = 1
    ) -> Confirmation:
        """amend_stop that, after a timeout, re-reads the position before any re-send.

        Applied already -> accepted (reason ``RECONCILED``); position gone -> refused
        (``POSITION_NOT_FOUND``); not applied -> sent again up to ``retries`` times.
        """
        for attempt in range(retries + 1):
            try:
                return await self.amend_stop(deal_id, stop, limit)
            except BrokerTimeout:
                if attempt == retries:
                    raise
            position = await self.get_position(deal_id)
            if position is None:
                return Confirmation(False, None, "", "POSITION_NOT_FOUND")
            inst = self._instruments.resolve(position.epic)
            if position.stop is not None and inst.to_ticks(position.stop) == inst.to_ticks(stop):
                return Confirmation(True, position.stop, "", "RECONCILED")
        raise AssertionError("unreachable")

    # -- events ----------------------------------------------------------------------------
    async def run(self, emit: EventSink) -> None:
        """Poll /positions: PositionOpened for new deals, PositionClosed for vanished ones.

        A deal missing from the list is checked alone (GET /positions/{id}); only its own 404
        closes it. A failed poll or check changes nothing and is retried on the next poll.
        """
        known: dict[str, Position] = {}
        while True:
            wait = self._poll_interval
            try:
                positions = await self.open_positions()
            except BrokerError as exc:
                if isinstance(exc, RateLimited):
                    wait = max(wait, exc.retry_after)
                logger.bind(event="broker.poll_failed", error=type(exc).__name__).warning(
                    "IG position poll failed: {}", exc
                )
            else:
                await self._reconcile(known, positions, emit)
            await trio.sleep(wait)

    async def _reconcile(
        self, known: dict[str, Position], positions: list[Position], emit: EventSink
    ) -> None:
        current = {p.deal_id: p for p in positions}
        for deal_id, position in current.items():
            if deal_id not in known:
                await emit(PositionOpened(position, self._clock()))
            known[deal_id] = position
        for deal_id in [d for d in known if d not in current]:
            try:
                still = await self.get_position(deal_id)
            except BrokerError as exc:
                logger.bind(event="broker.check_failed", deal_id=deal_id).warning(
                    "IG check of vanished position {} failed: {}", deal_id, exc
                )
                continue
            if still is not None:
                known[deal_id] = still
                continue
            closed = await self._closed_event(known.pop(deal_id))
            self._deals.pop(deal_id, None)
            await emit(closed)

    async def _closed_event(self, last: Position) -> PositionClosed:
        """Exit level from /history/activity; else estimated from the last stop/limit/quote."""
        inst = self._instruments.resolve(last.epic)
        found = await self._close_activity(last, inst)
        source = "history"
        if found is None:
            source = "estimate"
            found = (self._estimate_exit(last), self._clock())
        level, ts = found
        reason, gap = classify_exit(last, level, inst)
        logger.bind(
            event="broker.position_closed", deal_id=last.deal_id, epic=last.epic, source=source
        ).info("IG closed {} at {} ({}, from {})", last.deal_id, level, reason, source)
        return PositionClosed(last.deal_id, level, reason, ts, gap)

    async def _close_activity(
        self, last: Position, inst: Instrument
    ) -> tuple[float, datetime] | None:
        since = (last.opened_at or self._clock() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
        params = {"from": since, "detailed": "true", "pageSize": "100"}
        try:
            response = await self.session.request(
                "GET", "history/activity", version=3, params=params
            )
            assert response is not None
            for act in response.json().get("activities", []):
                details = act.get("details") or {}
                for action in details.get("actions") or []:
                    if (
                        action.get("actionType") == "POSITION_CLOSED"
                        and action.get("affectedDealId") == last.deal_id
                        and details.get("level") is not None
                    ):
                        when = ig_time(act.get("dateUTC") or act.get("date")) or self._clock()
                        return inst.from_broker(float(details["level"])), when
        except (BrokerError, KeyError, TypeError, ValueError, AttributeError) as exc:
            logger.bind(event="broker.history_failed", deal_id=last.deal_id).warning(
                "IG activity history unavailable for {}: {}", last.deal_id, exc
            )
        return None

    def _estimate_exit(self, last: Position) -> float:
        """Without history: the stop or limit nearest the last quote (it most likely hit),
        else the last exit-side quote (a manual close), else the entry."""
        quote = self._quotes.get(last.epic)
        price = None
        if quote is not None:
            price = quote[0] if last.direction is Direction.BUY else quote[1]
        levels = [level for level in (last.stop, last.limit) if level is not None]
        if levels:
            return min(levels, key=lambda level: abs(level - price)) if price else levels[0]
        return price or last.level
