"""IG Markets REST broker: positions, stop amendments with confirmation, markets, allowances.

What traild sends to IG, and nothing else:
  POST /session v2            identifier + password -> CST / X-SECURITY-TOKEN headers
  PUT /session v1             only when ``account_id`` differs from the login's default account
  GET /operations/application v1   the request allowances (unless configured)
  GET /positions v2, GET /positions/{dealId} v2    open positions (reconciliation, reads only)
  GET /markets/{epic} v3      price scale and dealing rules per epic (cached)
  PUT /positions/otc/{dealId} v2   {stopLevel, limitLevel, guaranteedStop, trailingStop}
  GET /confirms/{dealReference} v1 the verdict of an amendment the TRADE stream did not bring
  GET /history/activity v3    the exit level of a position that closed
  DELETE /session v1          at shutdown
and, on Lightstreamer, ``TRADE:{accountId}`` (OPU, CONFIRMS) for openings, closings, stop
changes and deal confirmations (``trade.TradeEvents``). traild never opens or closes positions
at IG and never amends by epic.

Lessons built in: every request has a timeout and fits the allowances (``session.Allowance``);
levels are scaled by what ``/markets`` says at this boundary only; the amendment carries the
limit and the stop type the position has now; a guaranteed or IG-trailing stop is never turned
into a plain one unless configured; the deal reference is always confirmed; a NOT_FOUND
concerns one deal only; secrets never reach logs or errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

import trio
from loguru import logger

from traild.adapters.ig.http import Secret, SecretLike
from traild.adapters.ig.lightstreamer import LightstreamerClient
from traild.adapters.ig.session import IGSession, StreamAuth, utcnow
from traild.adapters.ig.trade import TradeEvents
from traild.adapters.ig.wire import (
    POINT_SIZES,
    MarketInfo,
    StopFlags,
    StreamScale,
    market_info,
    parse_confirmation,
    parse_position,
    point_size,
    position_flags,
)
from traild.core.errors import (
    BrokerError,
    BrokerRejected,
    BrokerTimeout,
    BrokerUnavailable,
    InstrumentError,
)
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.messages import Confirmation, OpenRequest, Position
from traild.ports import EventSink

GUARANTEED = "GUARANTEED_STOP_NOT_MANAGED"
TRAILING = "IG_TRAILING_STOP_NOT_MANAGED"


class IGBroker:
    """The Broker port over IG's REST API (an async context manager owning its session).

    Amendments are by deal id only. The limit sent with a stop is IG's current limit for that
    deal (from the TRADE stream while it is live, else read just before): traild owns the
    stop, never the take-profit, so a differing ``limit`` argument is only logged.
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
        reconcile_interval: float = 300.0,
        trade_stream: bool = True,
        session_refresh_after: float | None = 6 * 3600.0,
        login_backoff: tuple[float, float] | None = None,
        confirm_attempts: int = 10,
        confirm_interval: float = 0.2,
        confirm_stream_wait: float = 1.0,
        rules_ttl: float = 6 * 3600.0,
        rules_retry: float = 60.0,
        trading_allowance: int | None = None,
        account_allowance: int | None = None,
        application_allowance: int | None = None,
        allowance_window: float = 60.0,
        take_over_guaranteed: bool = False,
        take_over_trailing: bool = False,
        point_sizes: Mapping[str, Decimal] = POINT_SIZES,
        stream_url: str | None = None,
        stream_options: Mapping[str, Any] | None = None,
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
            login_backoff=login_backoff,
            clock=clock,
        )
        self.session.allowance.window = allowance_window
        self._api_key = Secret(api_key)
        self._instruments = instruments
        self._confirm = (confirm_attempts, confirm_interval, confirm_stream_wait)
        self._rules_timing = (rules_ttl, rules_retry)
        self._configured = (trading_allowance, account_allowance, application_allowance)
        self.take_over = (take_over_guaranteed, take_over_trailing)
        self._point_sizes = point_sizes
        self.clock = clock
        self.deals: dict[str, Position] = {}
        self.flags: dict[str, StopFlags] = {}
        self.quotes: dict[str, tuple[float, float]] = {}
        self._markets: dict[str, MarketInfo] = {}
        self._market_due: dict[str, float] = {}
        self._refused: set[tuple[str, str]] = set()
        self.sent: dict[str, float] = {}  # deal id -> the stop of traild's latest amendment
        self._limit_warnings: set[tuple[str, float | None]] = set()
        # The account's one Lightstreamer session: the TRADE events and the PRICE feed (and
        # `traild ig check`) all subscribe on it (IG streaming API guide: one connection).
        self.stream = LightstreamerClient(self.stream_auth, **dict(stream_options or {}))
        self.events = TradeEvents(
            self,
            poll_interval=poll_interval,
            reconcile_interval=reconcile_interval,
            use_stream=trade_stream,
        )

    def __repr__(self) -> str:
        return f"IGBroker({self.session!r})"

    async def __aenter__(self) -> Self:
        await self.session.__aenter__()
        await self._load_allowance()
        self.events.subscribe()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.session.__aexit__(exc_type, exc, tb)

    @property
    def account_id(self) -> str:
        return self.session.account_id or ""

    async def stream_auth(self, refused: StreamAuth | None = None) -> StreamAuth:
        """For the Lightstreamer client: the endpoint and this session's credentials."""
        return await self.session.stream_auth(refused)

    # -- markets ---------------------------------------------------------------------------
    async def market(self, epic: str, *, fresh: bool = False) -> MarketInfo:
        """``GET /markets/{epic}`` v3 parsed (cached ``rules_ttl``); raises BrokerError."""
        now = trio.current_time()
        cached = self._markets.get(epic)
        if cached is not None and not fresh and self._market_due.get(epic, 0.0) > now:
            return cached
        base = self._instruments.resolve(epic)
        response = await self.session.request("GET", f"markets/{epic}", version=3)
        assert response is not None
        try:
            info = market_info(response.json(), epic, base, point_size(base, self._point_sizes))
        except (KeyError, TypeError, ValueError) as exc:
            raise BrokerUnavailable(f"IG market {epic}: malformed answer ({exc})") from exc
        self._markets[epic] = info
        self._market_due[epic] = now + self._rules_timing[0]
        if cached is None or cached != info:
            logger.bind(
                event="broker.dealing_rules",
                epic=epic,
                scale=info.scale,
                min_stop_pips=info.min_stop_pips,
                status=info.status,
            ).info("IG {}: scale x{}, minimum stop {} pips", epic, info.scale, info.min_stop_pips)
        return info

    async def stream_scale(self, epic: str) -> StreamScale:
        """For IGStreamFeed: how IG quotes ``epic`` (from /markets, never from its name)."""
        info = await self.market(epic)
        return StreamScale(info.scale, info.reference)

    async def load_markets(self, epics: set[str]) -> None:
        """Read /markets for epics not cached (or due); a failure is logged and retried later."""
        now = trio.current_time()
        for epic in sorted(epics):
            if self._market_due.get(epic, -math.inf) > now:
                continue
            try:
                await self.market(epic)
            except (BrokerError, InstrumentError) as exc:
                self._market_due[epic] = now + self._rules_timing[1]
                logger.bind(event="broker.rules_failed", epic=epic).warning(
                    "IG market {} not available: {}", epic, exc
                )

    def instrument(self, epic: str) -> Instrument:
        """The instrument of ``epic`` scaled as IG's /markets says; InstrumentError if unread."""
        info = self._markets.get(epic)
        if info is None:
            raise InstrumentError(f"IG market {epic} not read yet: its price scale is unknown")
        return replace(self._instruments.resolve(epic), broker_scale=info.scale)

    def min_stop_distance_pips(self, epic: str) -> float:
        info = self._markets.get(epic)
        return 0.0 if info is None else info.min_stop_pips

    # -- reads -----------------------------------------------------------------------------
    async def open_positions(self) -> list[Position]:
        response = await self.session.request("GET", "positions", version=2)
        assert response is not None
        items = response.json().get("positions", [])
        await self.load_markets({str((i.get("market") or {}).get("epic")) for i in items})
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
            await self.market(epic)
            position = parse_position(item, self.instrument(epic))
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
            position = parse_position(item, self.instrument(epic))
            flags = position_flags(item)
        except (KeyError, TypeError, ValueError, InstrumentError) as exc:
            self.refuse_once(deal, "unreadable", f"IG position {deal} not managed: {exc}")
            return None
        market = item["market"]
        inst = self.instrument(position.epic)
        if market.get("bid") is not None and market.get("offer") is not None:
            bid, offer = inst.from_broker(market["bid"]), inst.from_broker(market["offer"])
            self.quotes[position.epic] = (bid, offer)
        self.remember(position, flags)
        why = self.refusal(flags)
        if why is not None:
            self.refuse_once(deal, why, f"IG position {deal} not managed: {why}")
            return None
        return position

    def remember(self, position: Position, flags: StopFlags) -> None:
        self.deals[position.deal_id] = position
        self.flags[position.deal_id] = flags

    def refusal(self, flags: StopFlags) -> str | None:
        """Why traild must not amend a stop of this kind (None: it may)."""
        if flags.guaranteed and not self.take_over[0]:
            return GUARANTEED
        if flags.trailing and not self.take_over[1]:
            return TRAILING
        return None

    def refuse_once(self, deal_id: str, why: str, message: str) -> None:
        if (deal_id, why) in self._refused:
            return
        self._refused.add((deal_id, why))
        logger.bind(event="broker.position_refused", deal_id=deal_id, reason=why).warning(message)

    # -- allowances ------------------------------------------------------------------------
    def allowance_per_minute(self) -> int | None:
        """Amendments per minute that fit the trading allowance (None when unknown).

        With the TRADE stream confirms arrive pushed; without it each amendment also costs a
        non-trading confirm, which the session's limiter paces as well.
        """
        budget = self.session.allowance.budget("trading")
        if budget is None:
            return None
        window = self.session.allowance.window
        return max(1, math.floor(budget * 60.0 / window))

    async def _load_allowance(self) -> None:
        trading, account, app = self._configured
        if trading is None or account is None or app is None:
            try:
                response = await self.session.request("GET", "operations/application", version=1)
                assert response is not None
                apps = response.json()
                mine = [a for a in apps if a.get("apiKey") == self._api_key.reveal()] or apps
                found = mine[0]
                trading = trading or int(found["allowanceAccountTrading"])
                account = account or int(found["allowanceAccountOverall"])
                app = app or int(found["allowanceApplicationOverall"])
            except (BrokerError, KeyError, IndexError, TypeError, ValueError) as exc:
                logger.bind(event="broker.allowance_unknown").warning(
                    "IG allowances not available ({}); only the configured ones apply", exc
                )
        self.session.allowance.configure(trading, account, app)
        logger.bind(event="broker.allowance", trading=trading, account=account, app=app).info(
            "IG allowances: trading {}/min, account {}/min, application {}/min",
            trading,
            account,
            app,
        )

    # -- amendments ------------------------------------------------------------------------
    async def open_position(self, request: OpenRequest) -> Position:
        raise BrokerRejected("traild does not open positions at IG")

    def submit_open(self, request: OpenRequest) -> str:
        raise BrokerRejected("traild does not open positions at IG")

    async def _current(self, deal_id: str) -> Position | None:
        """The position as IG has it now: pushed by the TRADE stream while that is live,
        otherwise read (a cached limit may be stale: the trader can move it any time)."""
        if self.events.live and deal_id in self.deals:
            return self.deals[deal_id]
        return await self.get_position(deal_id)

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """PUT the absolute stop (with IG's current limit and stop type), then confirm it."""
        known = await self._current(deal_id)
        if known is None:
            return Confirmation(False, None, "", "POSITION_NOT_FOUND")
        flags = self.flags.get(deal_id, StopFlags())
        why = self.refusal(flags)
        if why is not None:
            logger.bind(event="broker.amend_refused", deal_id=deal_id, reason=why).warning(
                "stop of {} not amended: {} (configure broker.ig to take it over)", deal_id, why
            )
            return Confirmation(False, None, "", why)
        inst = self.instrument(known.epic)
        if known.limit != limit and (deal_id, limit) not in self._limit_warnings:
            self._limit_warnings.add((deal_id, limit))
            logger.bind(event="broker.limit_mismatch", deal_id=deal_id, epic=known.epic).warning(
                "limit of {} at IG is {}, traild has {}; IG's is kept", deal_id, known.limit, limit
            )
        body = {
            "stopLevel": inst.to_broker(stop),
            "limitLevel": None if known.limit is None else inst.to_broker(known.limit),
            "guaranteedStop": flags.guaranteed,  # never silently a plain stop
            "trailingStop": False,
        }
        if flags.trailing:
            self.refuse_once(deal_id, "taken_over", f"IG trailing stop of {deal_id} taken over")
        self.sent[deal_id] = stop
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
            self.deals[deal_id] = replace(known, stop=confirmation.level)
            self.flags[deal_id] = replace(flags, trailing=False)
        return confirmation

    async def _confirmation(self, reference: str, inst: Instrument) -> Confirmation:
        attempts, interval, stream_wait = self._confirm
        pushed = await self.events.wait_confirm(reference, stream_wait)
        if pushed is not None:
            return parse_confirmation(pushed, reference, inst)
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
            inst = self.instrument(position.epic)
            if position.stop is not None and inst.to_ticks(position.stop) == inst.to_ticks(stop):
                return Confirmation(True, position.stop, "", "RECONCILED")
        raise AssertionError("unreachable")

    # -- events ----------------------------------------------------------------------------
    async def run(self, emit: EventSink) -> None:
        """Report opened/closed positions: TRADE stream OPU plus a slow REST reconciliation."""
        await self.events.run(emit)
