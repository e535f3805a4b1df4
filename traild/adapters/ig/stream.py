"""IG streaming prices: ``PRICE:{accountId}:{epic}`` items of the ``Pricing`` data adapter.

IG switched the ``MARKET:{epic}`` item off on 2026-05-08 (IG's "MARKET to PRICE subscription
migration guide"; trading-ig issue #357 and ``sample/stream_ig.py``). The feed subscribes
``BIDPRICE1 ASKPRICE1 TIMESTAMP DLG_FLAG`` in MERGE mode with ``LS_data_adapter=Pricing``,
turns updates into ticks dated by ``TIMESTAMP`` (epoch ms), keeps each epic's dealing state
(``DLG_FLAG``, see ``tlcp.DEALING_STATES``) and logs ``feed.stale`` when an epic goes quiet.
Prices of epics quoted in points (CEEM, spread bets) are divided by the scale IG's
``/markets`` gives (``scale``), never guessed from the epic's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import trio
from loguru import logger

from traild.adapters.ig.lightstreamer import LightstreamerClient
from traild.adapters.ig.session import StreamAuthProvider
from traild.adapters.ig.tlcp import (
    DEALING_STATES,
    DEFAULT_TLCP_VERSION,
    PRICE_ADAPTER,
    PRICE_FIELDS,
    ItemUpdate,
    PriceUpdate,
    StaleTracker,
    Subscription,
    TLCPUnsupported,
    price_of,
)
from traild.adapters.ig.wire import StreamScale, unscale_stream
from traild.core.errors import BrokerError
from traild.core.messages import Tick
from traild.ports import TickSink

ScaleProvider = Callable[[str], Awaitable[StreamScale]]
_SCALE_RETRY_S = 60.0  # a failed /markets read is retried at most once a minute per epic


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    """A snapshot of the feed's counters and of the epics currently stale."""

    connects: int
    disconnects: int
    updates: int
    ticks: int
    dropped_updates: int
    stale_epics: frozenset[str]


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _unscaled(epic: str) -> StreamScale:
    return StreamScale(1, None)


class IGStreamFeed:
    """PriceFeed over IG's Lightstreamer: ticks for ``epics``, reconnecting until cancelled.

    ``auth(refresh)`` supplies the endpoint and credentials (``IGSession.stream_auth``) and
    ``account_id`` names the PRICE items. ``scale(epic)`` tells how IG quotes an epic (from
    ``GET /markets``); ``clock`` dates ticks that arrive without a TIMESTAMP.
    """

    def __init__(
        self,
        epics: Sequence[str],
        auth: StreamAuthProvider,
        *,
        account_id: str,
        scale: ScaleProvider = _unscaled,
        stale_after: float = 30.0,
        keepalive_ms: int = 5000,
        read_timeout: float | None = None,
        timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        tlcp_version: str = DEFAULT_TLCP_VERSION,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not epics:
            raise ValueError("IGStreamFeed needs at least one epic")
        self._epics: list[str] = []
        self._account = account_id
        self._scale_of = scale
        self._scales: dict[str, StreamScale] = {}
        self._scale_retry: dict[str, float] = {}
        self._stale_after = stale_after
        self._clock = clock
        self._states: dict[str, str] = {}
        self._tracker: StaleTracker | None = None
        self._emit: TickSink | None = None
        self._counts = dict.fromkeys(("ticks", "dropped"), 0)
        self.client = LightstreamerClient(
            auth,
            name="price stream",
            keepalive_ms=keepalive_ms,
            read_timeout=read_timeout,
            timeout=timeout,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            tlcp_version=tlcp_version,
        )
        self.add_epics(epics)

    # -- PriceFeed -------------------------------------------------------------------------
    def epics(self) -> list[str]:
        return list(self._epics)

    async def run(self, emit: TickSink) -> None:
        """Stream ticks into ``emit`` until cancelled; drops are retried with backoff."""
        self._emit = emit
        self._tracker = StaleTracker(self._epics, self._stale_after, trio.current_time())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stale)
                await self.client.run()
        except* TLCPUnsupported as group:  # one clear error, not a group, for the caller
            raise group.exceptions[0] from None

    def add_epics(self, epics: Iterable[str]) -> None:
        """Quote more epics (a trade on a new market): subscribed on the live session at its
        next line (PROBE keepalives bound the delay), or with the next connection."""
        for epic in epics:
            if epic in self._epics:
                continue
            self._epics.append(epic)
            item = f"PRICE:{self._account}:{epic}"
            sub = Subscription(epic, item, PRICE_FIELDS, "MERGE", PRICE_ADAPTER)
            self.client.add(sub, self._on_update)
            if self._tracker is not None:
                self._tracker.touch(epic, trio.current_time())

    # -- state for the runtime -------------------------------------------------------------
    def market_state(self, epic: str) -> str | None:
        """The last DLG_FLAG seen for ``epic`` (None before the first update)."""
        return self._states.get(epic)

    def market_open(self, epic: str) -> bool:
        """False while IG would refuse a stop amendment (CLOSED, AUCTION, SUSPEND, ...).

        Unknown (no update yet) counts as open: a refused amendment is harmless, a skipped
        one may leave a stop behind. A state missing from DEALING_STATES counts as closed.
        """
        state = self._states.get(epic)
        return state is None or DEALING_STATES.get(state, False)

    def statistics(self) -> FeedStatistics:
        c = self.client.counts
        stale = self._tracker.stale() if self._tracker else frozenset()
        return FeedStatistics(
            c["connects"],
            c["disconnects"],
            c["updates"],
            self._counts["ticks"],
            self._counts["dropped"],
            stale,
        )

    # -- internals -------------------------------------------------------------------------
    async def _on_update(self, item: ItemUpdate) -> None:
        epic = item.key
        update = price_of(item)
        assert self._tracker is not None and self._emit is not None
        if self._tracker.touch(epic, trio.current_time()):
            logger.bind(event="feed.resumed", epic=epic).info("IG prices for {} resumed", epic)
        self._note_state(epic, update)
        if not update.price_changed:
            return
        if update.bid is None or update.offer is None:
            self._counts["dropped"] += 1
            return
        scale = await self._scale(epic)
        if scale is None:
            self._counts["dropped"] += 1
            return
        bid = unscale_stream(update.bid, scale)
        offer = unscale_stream(update.offer, scale)
        self._counts["ticks"] += 1
        await self._emit(Tick(epic, update.ts or self._clock(), bid, offer))

    def _note_state(self, epic: str, update: PriceUpdate) -> None:
        state = update.state
        if state is None or self._states.get(epic) == state:
            return
        self._states[epic] = state
        known = state in DEALING_STATES
        logger.bind(
            event="feed.market_state",
            epic=epic,
            state=state,
            amendable=DEALING_STATES.get(state, False),
            known=known,
        ).log("INFO" if known else "WARNING", "{} dealing state {}", epic, state)

    async def _scale(self, epic: str) -> StreamScale | None:
        known = self._scales.get(epic)
        if known is not None:
            return known
        now = trio.current_time()
        if self._scale_retry.get(epic, now) > now:
            return None
        try:
            known = await self._scale_of(epic)
        except BrokerError as exc:
            self._scale_retry[epic] = now + _SCALE_RETRY_S
            logger.bind(event="feed.scale_unknown", epic=epic).warning(
                "IG price scale of {} unknown ({}); its prices are dropped", epic, exc
            )
            return None
        self._scales[epic] = known
        return known

    async def _watch_stale(self) -> None:
        assert self._tracker is not None
        interval = max(self._stale_after / 4, 0.01)
        while True:
            await trio.sleep(interval)
            for epic, silent in self._tracker.check(trio.current_time()):
                logger.bind(event="feed.stale", epic=epic, silent_s=round(silent, 1)).warning(
                    "no IG price for {} for {:.1f}s", epic, silent
                )
