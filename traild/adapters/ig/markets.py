"""IG's dealing rules per epic: ``GET /markets/{epic}`` v3, cached, and the instrument scaled
as IG quotes it (levels are scaled by what ``/markets`` says at this boundary only, never
guessed from an epic's name)."""

from __future__ import annotations

import math
from dataclasses import replace

import trio
from loguru import logger

from traild.adapters.ig.options import IGMarkets
from traild.adapters.ig.session import IGSession
from traild.adapters.ig.wire import MarketInfo, StreamScale, market_info, point_size
from traild.core.errors import BrokerError, BrokerUnavailable, InstrumentError
from traild.core.instruments import Instrument, InstrumentTable


class MarketRules:
    """The /markets cache of one IG session (one entry per epic traild has met)."""

    def __init__(
        self, session: IGSession, instruments: InstrumentTable, options: IGMarkets
    ) -> None:
        self._session = session
        self._instruments = instruments
        self._options = options
        self._markets: dict[str, MarketInfo] = {}
        self._market_due: dict[str, float] = {}

    async def market(self, epic: str, *, fresh: bool = False) -> MarketInfo:
        """``GET /markets/{epic}`` v3 parsed (cached ``rules_ttl``); raises BrokerError."""
        now = trio.current_time()
        cached = self._markets.get(epic)
        if cached is not None and not fresh and self._market_due.get(epic, 0.0) > now:
            return cached
        base = self._instruments.resolve(epic)
        response = await self._session.request("GET", f"markets/{epic}", version=3)
        assert response is not None
        try:
            scale = point_size(base, self._options.point_sizes)
            info = market_info(response.json(), epic, base, scale)
        except (KeyError, TypeError, ValueError) as exc:
            raise BrokerUnavailable(f"IG market {epic}: malformed answer ({exc})") from exc
        self._markets[epic] = info
        self._market_due[epic] = now + self._options.rules_ttl
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
                self._market_due[epic] = now + self._options.rules_retry
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
