"""IG streaming prices: ``PRICE:{accountId}:{epic}`` items of the ``Pricing`` data adapter.

IG switched the ``MARKET:{epic}`` item off on 2026-05-08 (IG's "MARKET to PRICE subscription
migration guide"; trading-ig issue #357 and ``sample/stream_ig.py``). The feed subscribes
``BIDPRICE1 ASKPRICE1 TIMESTAMP DLG_FLAG`` in MERGE mode with ``LS_data_adapter=Pricing`` on the
account's one Lightstreamer session (``LightstreamerClient``, shared with the TRADE stream),
turns updates into ticks dated by ``TIMESTAMP`` (epoch ms; one that is not a number is logged,
``feed.bad_timestamp``, and the tick dated by the local clock), keeps each epic's dealing state
(``DLG_FLAG``, see ``tlcp.DEALING_STATES``) and logs ``feed.stale`` when an epic goes quiet.
Prices of epics quoted in points (CEEM, spread bets) are divided by the scale IG's
``/markets`` gives (``scale``), never guessed from the epic's name.

The stream reader never waits on I/O: a new epic's scale is read from ``/markets`` by a task of
its own (its prices meanwhile wait, the latest one kept), and ticks reach ``emit`` through an
emitter task with one slot per epic: when the tick pipeline is slower than the stream, an
epic's older tick is replaced by its newer one (what MERGE mode does on the server too),
counted as ``coalesced`` and logged (``feed.backpressure``), and the reader goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import trio
from loguru import logger

from traild.adapters.ig.lightstreamer import LightstreamerClient, SubscriptionLimit
from traild.adapters.ig.prices import (
    DEALING_STATES,
    PRICE_ADAPTER,
    PRICE_FIELDS,
    PriceUpdate,
    StaleTracker,
    price_of,
)
from traild.adapters.ig.tlcp import ItemUpdate, Subscription
from traild.adapters.ig.wire import StreamScale, unscale_stream
from traild.core.errors import BrokerConfigRefused, BrokerError
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
    coalesced: int = 0
    bad_timestamps: int = 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _unscaled(epic: str) -> StreamScale:
    return StreamScale(1, None)


class IGStreamFeed:
    """PriceFeed over IG's Lightstreamer: ticks for ``epics``, reconnecting until cancelled.

    ``stream`` is the account's Lightstreamer session (``IGBroker.stream``) and ``account_id``
    names the PRICE items. ``scale(epic)`` tells how IG quotes an epic (from ``GET
    /markets``); ``clock`` dates ticks that arrive without a usable TIMESTAMP.
    """

    def __init__(
        self,
        epics: Sequence[str],
        stream: LightstreamerClient,
        *,
        account_id: str,
        scale: ScaleProvider = _unscaled,
        stale_after: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not epics:
            raise ValueError("IGStreamFeed needs at least one epic")
        self.client = stream
        self._epics: list[str] = []
        self._account = account_id
        self._scale_of = scale
        self._scales: dict[str, StreamScale] = {}
        self._scale_retry: dict[str, float] = {}
        self._unscaled: dict[str, PriceUpdate] = {}  # latest update waiting for its scale
        self._stale_after = stale_after
        self._clock = clock
        self._states: dict[str, str] = {}
        self._seen_states: dict[str, list[str]] = {}
        self._tracker: StaleTracker | None = None
        self._emit: TickSink | None = None
        self._nursery: trio.Nursery | None = None
        self._slots: dict[str, Tick] = {}  # the next tick of each epic, not yet emitted
        self._wake = trio.Event()
        self._pressure = False
        self._bad_ts: dict[str, str] = {}
        self._counts = dict.fromkeys(
            ("ticks", "dropped", "updates", "coalesced", "bad_timestamps"), 0
        )
        for epic in epics:  # at start, too many epics for IG's limit refuse the configuration
            self._subscribe(epic)

    # -- PriceFeed -------------------------------------------------------------------------
    def epics(self) -> list[str]:
        return list(self._epics)

    async def run(self, emit: TickSink) -> None:
        """Stream ticks into ``emit`` until cancelled; drops are retried with backoff."""
        self._emit = emit
        self._tracker = StaleTracker(self._epics, self._stale_after, trio.current_time())
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watch_stale)
                nursery.start_soon(self._emit_forever)
                await self.client.run()
        except* BrokerConfigRefused as group:  # one clear error, not a group, for the caller
            raise group.exceptions[0] from None
        finally:
            self._nursery = None

    def add_epics(self, epics: Iterable[str]) -> None:
        """Quote more epics (a trade on a new market): subscribed on the live session at its
        next line (PROBE keepalives bound the delay), or with the next connection. An epic
        beyond IG's subscription limit is refused and logged (``feed.subscription_limit``)."""
        for epic in epics:
            try:
                added = self._subscribe(epic)
            except SubscriptionLimit as exc:
                logger.bind(event="feed.subscription_limit", epic=epic).error(
                    "no IG prices for {}: {}", epic, exc
                )
                continue
            if added and self._tracker is not None:
                self._tracker.touch(epic, trio.current_time())

    def _subscribe(self, epic: str) -> bool:
        if epic in self._epics:
            return False
        item = f"PRICE:{self._account}:{epic}"
        sub = Subscription(epic, item, PRICE_FIELDS, "MERGE", PRICE_ADAPTER)
        self.client.add(sub, self._on_update)
        self._epics.append(epic)
        return True

    # -- state for the runtime -------------------------------------------------------------
    def market_state(self, epic: str) -> str | None:
        """The last DLG_FLAG seen for ``epic`` (None before the first update)."""
        return self._states.get(epic)

    def states_seen(self, epic: str) -> list[str]:
        """Every DLG_FLAG value seen for ``epic``, in order of first appearance."""
        return list(self._seen_states.get(epic, ()))

    def bad_timestamp(self, epic: str) -> str | None:
        """The last TIMESTAMP of ``epic`` that was not epoch milliseconds (None: none was)."""
        return self._bad_ts.get(epic)

    def scale(self, epic: str) -> StreamScale | None:
        return self._scales.get(epic)

    def market_open(self, epic: str) -> bool:
        """False while IG would refuse a stop amendment (CLOSED, AUCTION, SUSPEND, ...).

        Unknown (no update yet) counts as open: a refused amendment is harmless, a skipped
        one may leave a stop behind. A state missing from DEALING_STATES counts as closed.
        """
        state = self._states.get(epic)
        return state is None or DEALING_STATES.get(state, False)

    def statistics(self) -> FeedStatistics:
        c, n = self.client.counts, self._counts
        stale = self._tracker.stale() if self._tracker else frozenset()
        return FeedStatistics(
            c["connects"],
            c["disconnects"],
            n["updates"],
            n["ticks"],
            n["dropped"],
            stale,
            n["coalesced"],
            n["bad_timestamps"],
        )

    # -- the reader's side: never waits ----------------------------------------------------
    async def _on_update(self, item: ItemUpdate) -> None:
        epic = item.key
        update = price_of(item)
        assert self._tracker is not None
        self._counts["updates"] += 1
        if self._tracker.touch(epic, trio.current_time()):
            logger.bind(event="feed.resumed", epic=epic).info("IG prices for {} resumed", epic)
        self._note_state(epic, update)
        if not update.price_changed:
            return
        if update.bid is None or update.offer is None:
            self._counts["dropped"] += 1
            return
        if update.bad_ts is not None:
            self._note_bad_timestamp(epic, update.bad_ts)
        scale = self._scales.get(epic)
        if scale is None:
            self._await_scale(epic, update)
            return
        self._offer(self._tick(epic, update, scale))

    def _tick(self, epic: str, update: PriceUpdate, scale: StreamScale) -> Tick:
        assert update.bid is not None and update.offer is not None
        bid, offer = unscale_stream(update.bid, scale), unscale_stream(update.offer, scale)
        return Tick(epic, update.ts or self._clock(), bid, offer)

    def _offer(self, tick: Tick) -> None:
        """Into the epic's slot for the emitter (a tick still there is replaced: coalesced)."""
        if tick.epic in self._slots:
            self._counts["coalesced"] += 1
            if not self._pressure:
                self._pressure = True
                logger.bind(event="feed.backpressure", epic=tick.epic).warning(
                    "ticks arrive faster than traild takes them; older ones are replaced"
                )
        self._slots[tick.epic] = tick
        self._wake.set()

    def _await_scale(self, epic: str, update: PriceUpdate) -> None:
        """Keep the latest update until the epic's scale is read, by a task of its own."""
        now = trio.current_time()
        if self._scale_retry.get(epic, now) > now or self._nursery is None:
            self._counts["dropped"] += 1
            return
        if epic in self._unscaled:
            self._counts["dropped"] += 1  # replaced by this newer one
        else:
            self._nursery.start_soon(self._read_scale, epic)
        self._unscaled[epic] = update

    def _note_state(self, epic: str, update: PriceUpdate) -> None:
        state = update.state
        if state is None or self._states.get(epic) == state:
            return
        self._states[epic] = state
        seen = self._seen_states.setdefault(epic, [])
        if state not in seen:
            seen.append(state)
        known = state in DEALING_STATES
        logger.bind(
            event="feed.market_state",
            epic=epic,
            state=state,
            amendable=DEALING_STATES.get(state, False),
            known=known,
        ).log("INFO" if known else "WARNING", "{} dealing state {}", epic, state)

    def _note_bad_timestamp(self, epic: str, raw: str) -> None:
        self._counts["bad_timestamps"] += 1
        if epic not in self._bad_ts:
            logger.bind(event="feed.bad_timestamp", epic=epic, timestamp=raw).warning(
                "IG TIMESTAMP of {} is not epoch milliseconds ({!r}): dated by the local clock",
                epic,
                raw,
            )
        self._bad_ts[epic] = raw

    # -- tasks -----------------------------------------------------------------------------
    async def _read_scale(self, epic: str) -> None:
        try:
            scale = await self._scale_of(epic)
        except BrokerError as exc:
            self._scale_retry[epic] = trio.current_time() + _SCALE_RETRY_S
            self._unscaled.pop(epic, None)
            self._counts["dropped"] += 1
            logger.bind(event="feed.scale_unknown", epic=epic).warning(
                "IG price scale of {} unknown ({}); its prices are dropped", epic, exc
            )
            return
        self._scales[epic] = scale
        pending = self._unscaled.pop(epic, None)
        if pending is not None:
            self._offer(self._tick(epic, pending, scale))

    async def _emit_forever(self) -> None:
        assert self._emit is not None
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._slots:
                epic = next(iter(self._slots))
                tick = self._slots.pop(epic)
                self._counts["ticks"] += 1
                await self._emit(tick)
            if self._pressure:
                self._pressure = False
                logger.bind(event="feed.backpressure_cleared").info("tick backlog cleared")

    async def _watch_stale(self) -> None:
        assert self._tracker is not None
        interval = max(self._stale_after / 4, 0.01)
        while True:
            await trio.sleep(interval)
            for epic, silent in self._tracker.check(trio.current_time()):
                logger.bind(event="feed.stale", epic=epic, silent_s=round(silent, 1)).warning(
                    "no IG price for {} for {:.1f}s", epic, silent
                )
