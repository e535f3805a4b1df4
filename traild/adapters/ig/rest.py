"""IG Markets REST broker: the Broker port over IG's REST API and the account's stream.

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

``IGBroker`` puts the parts together and owns the amendment: ``session`` (login, requests,
allowances), ``markets`` (``/markets``: scales and dealing rules), ``positions`` (the reads and
what is kept per deal), ``stream`` (the one Lightstreamer session) and ``events`` (TRADE plus
the REST reconciliation). Lessons built in: every request has a timeout and fits the
allowances (``allowance``: IG's trading window also paces the gateway, see ``pacer``); the
amendment carries the limit and the stop type the position has now; a guaranteed or
IG-trailing stop is never turned into a plain one unless configured; the deal reference is
always confirmed; a NOT_FOUND concerns one deal only; secrets never reach logs or errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Self

import trio
from loguru import logger

from traild.adapters.ig.allowance import TradingPacer
from traild.adapters.ig.lightstreamer import LightstreamerClient
from traild.adapters.ig.markets import MarketRules
from traild.adapters.ig.options import (
    IGCredentials,
    IGEvents,
    IGLimits,
    IGMarkets,
    IGRetry,
    IGStream,
    IGTakeOver,
    IGTimeouts,
)
from traild.adapters.ig.positions import IGPositions
from traild.adapters.ig.session import IGSession, StreamAuth, utcnow
from traild.adapters.ig.trade import TradeEvents
from traild.adapters.ig.wire import StopFlags, StreamScale, parse_confirmation
from traild.core.errors import BrokerError, BrokerRejected, BrokerTimeout
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.messages import Confirmation, OpenRequest, Position
from traild.ports import EventSink


class IGBroker:
    """The Broker port over IG's REST API (an async context manager owning its session).

    Amendments are by deal id only. The limit sent with a stop is IG's current limit for that
    deal (from the TRADE stream while it is live, else read just before): traild owns the
    stop, never the take-profit, so a differing ``limit`` argument is only logged.
    """

    def __init__(
        self,
        credentials: IGCredentials,
        *,
        instruments: InstrumentTable,
        timeouts: IGTimeouts | None = None,
        retry: IGRetry | None = None,
        limits: IGLimits | None = None,
        events: IGEvents | None = None,
        take_over: IGTakeOver | None = None,
        markets: IGMarkets | None = None,
        stream: IGStream | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        timeouts, stream = timeouts or IGTimeouts(), stream or IGStream()
        self._retry, self._limits = retry or IGRetry(), limits or IGLimits()
        self._confirm_wait = timeouts.confirm_stream_wait
        self._api_key = credentials.api_key
        self.clock = clock
        self.session = IGSession(
            credentials,
            timeout=timeouts.request,
            refresh_after=timeouts.session_refresh,
            stream_url=stream.url,
            login_backoff=self._retry.login_backoff,
            clock=clock,
        )
        self.session.allowance.window = self._limits.window
        self.markets = MarketRules(self.session, instruments, markets or IGMarkets())
        self.positions = IGPositions(self.session, self.markets, take_over or IGTakeOver())
        # The account's one Lightstreamer session: the TRADE events and the PRICE feed (and
        # `traild ig check`) all subscribe on it (IG streaming API guide: one connection).
        self.stream = LightstreamerClient(self.stream_auth, **stream.client_options())
        self.events = TradeEvents(self.positions, self.stream, events or IGEvents(), clock)

    def __repr__(self) -> str:
        return f"IGBroker({self.session!r})"

    async def __aenter__(self) -> Self:
        await self.session.__aenter__()
        await self._load_allowance()
        self.events.subscribe()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.session.__aexit__(*exc_info)

    @property
    def account_id(self) -> str:
        return self.session.account_id or ""

    async def stream_auth(self, refused: StreamAuth | None = None) -> StreamAuth:
        """For the Lightstreamer client: the endpoint and this session's credentials."""
        return await self.session.stream_auth(refused)

    async def stream_scale(self, epic: str) -> StreamScale:
        """For IGStreamFeed: how IG quotes ``epic`` (from /markets, never from its name)."""
        return await self.markets.stream_scale(epic)

    def min_stop_distance_pips(self, epic: str) -> float:
        return self.markets.min_stop_distance_pips(epic)

    # -- reads -----------------------------------------------------------------------------
    async def open_positions(self) -> list[Position]:
        return await self.positions.open_positions()

    async def get_position(self, deal_id: str) -> Position | None:
        return await self.positions.get_position(deal_id)

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

    def pacer(self) -> TradingPacer | None:
        """What paces amendments: IG's trading window (``allowance``), the one limiter of
        every amendment PUT; None while that allowance is unknown (the caller's own applies)."""
        if self.session.allowance.budget("trading") is None:
            return None
        return TradingPacer(self.session.allowance)

    async def _load_allowance(self) -> None:
        limits = self._limits
        trading, account, app = limits.trading, limits.account, limits.application
        if trading is None or account is None or app is None:
            try:
                response = await self.session.request("GET", "operations/application", version=1)
                assert response is not None
                apps = response.json()
                key = self._api_key.reveal()
                found = ([a for a in apps if a.get("apiKey") == key] or apps)[0]
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
        if self.events.live and deal_id in self.positions.deals:
            return self.positions.deals[deal_id]
        return await self.positions.get_position(deal_id)

    async def amend_stop(self, deal_id: str, stop: float, limit: float | None) -> Confirmation:
        """PUT the absolute stop (with IG's current limit and stop type), then confirm it."""
        book = self.positions
        known = await self._current(deal_id)
        if known is None:
            return Confirmation(False, None, "", "POSITION_NOT_FOUND")
        flags = book.flags.get(deal_id, StopFlags())
        why = book.refusal(flags)
        if why is not None:
            logger.bind(event="broker.amend_refused", deal_id=deal_id, reason=why).warning(
                "stop of {} not amended: {} (configure broker.ig to take it over)", deal_id, why
            )
            return Confirmation(False, None, "", why)
        inst = self.markets.instrument(known.epic)
        book.warn_limit_once(deal_id, known.epic, known.limit, limit)
        body = {
            "stopLevel": inst.to_broker(stop),
            "limitLevel": None if known.limit is None else inst.to_broker(known.limit),
            "guaranteedStop": flags.guaranteed,  # never silently a plain stop
            "trailingStop": False,
        }
        if flags.trailing:
            book.refuse_once(deal_id, "taken_over", f"IG trailing stop of {deal_id} taken over")
        book.note_sent(deal_id, stop)
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
            book.remember(replace(known, stop=confirmation.level), replace(flags, trailing=False))
        return confirmation

    async def _confirmation(self, reference: str, inst: Instrument) -> Confirmation:
        attempts, interval = self._retry.confirm_attempts, self._retry.confirm_interval
        pushed = await self.events.wait_confirm(reference, self._confirm_wait)
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

    # -- events ----------------------------------------------------------------------------
    async def run(self, emit: EventSink) -> None:
        """Report opened/closed positions: TRADE stream OPU plus a slow REST reconciliation."""
        await self.events.run(emit)
