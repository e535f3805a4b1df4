"""IG streaming prices: Lightstreamer TLCP over HTTP streaming, trio-native through httpx.

The protocol is sans-IO in ``tlcp`` (pure functions and small state machines, unit tested
without a socket). ``IGStreamFeed`` only moves bytes: it creates a session
(``create_session.txt``), subscribes ``MARKET:{epic}`` with ``BID OFFER UPDATE_TIME
MARKET_STATE`` in MERGE mode (``control.txt``), turns ``U`` lines into ticks, rebinds on
``LOOP``, reconnects with exponential backoff when the stream drops, and logs ``feed.stale``
when an epic has had no update for ``stale_after`` seconds.

Lightstreamer prices are normal prices, also for CEEM epics (only IG's REST levels are
scaled), so nothing is scaled here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import httpx
import trio
from loguru import logger

from traild.adapters.ig.session import StreamAuth, StreamAuthProvider, build_request
from traild.adapters.ig.tlcp import (
    AMENDABLE_STATES,
    LS_CID,
    TLCP_VERSION,
    Connected,
    LineSplitter,
    MarketStreamProtocol,
    MarketUpdate,
    Rebind,
    StaleTracker,
    Subscribed,
    TLCPError,
    TLCPRefused,
    encode_params,
    parse_line,
    update_time_to_utc,
)
from traild.core.errors import BrokerError
from traild.core.messages import Tick
from traild.ports import TickSink

_TEXT = "text/plain; charset=UTF-8"

# -- the feed ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    """A snapshot of the feed's counters and of the epics currently stale."""

    connects: int
    disconnects: int
    updates: int
    ticks: int
    dropped_updates: int
    stale_epics: frozenset[str]


@dataclass
class _Pump:
    """What one stream connection has told so far."""

    base: str
    session_id: str | None = None


async def _finish(chunks: AsyncIterator[bytes]) -> None:
    """End httpx's nested body iterators by cancellation at their next read.

    Leaving the stream early (LOOP, an error, our own cancellation) abandons a chain of async
    generators mid-iteration; resuming them in a shielded, already-cancelled scope lets each
    one exit through its own cleanup instead of being finalised by the garbage collector.
    """
    with trio.CancelScope(shield=True) as scope:
        scope.cancel()
        with contextlib.suppress(StopAsyncIteration, httpx.HTTPError):
            while True:
                await anext(chunks)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IGStreamFeed:
    """PriceFeed over IG's Lightstreamer: ticks for ``epics``, reconnecting until cancelled.

    ``auth(refresh)`` supplies the endpoint and credentials (``IGSession.stream_auth``); it is
    called with ``refresh=True`` after the server refused a session, so expired tokens are
    renewed. UPDATE_TIME is UK wall time on IG (``update_time_zone``); ``clock`` supplies the
    date around it and the time of ticks without an UPDATE_TIME.
    """

    def __init__(
        self,
        epics: Sequence[str],
        auth: StreamAuthProvider,
        *,
        stale_after: float = 30.0,
        keepalive_ms: int = 5000,
        read_timeout: float | None = None,
        timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        update_time_zone: str | tzinfo = "Europe/London",
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not epics:
            raise ValueError("IGStreamFeed needs at least one epic")
        self._epics = list(dict.fromkeys(epics))
        self._auth = auth
        self._stale_after = stale_after
        self._keepalive_ms = keepalive_ms
        self._read_timeout = read_timeout or max(3 * keepalive_ms / 1000, 1.0)
        self._timeout = timeout
        self._backoff = (backoff_initial, backoff_max)
        zone = update_time_zone
        self._zone: tzinfo = ZoneInfo(zone) if isinstance(zone, str) else zone
        self._clock = clock
        self._states: dict[str, str] = {}
        self._tracker: StaleTracker | None = None
        self._subscribed_session: str | None = None
        self._to_subscribe: list[str] = []
        self._counts = dict.fromkeys(("connects", "disconnects", "updates", "ticks", "dropped"), 0)

    # -- PriceFeed -------------------------------------------------------------------------
    def epics(self) -> list[str]:
        return list(self._epics)

    async def run(self, emit: TickSink) -> None:
        """Stream ticks into ``emit`` until cancelled; drops are retried with backoff."""
        self._tracker = StaleTracker(self._epics, self._stale_after, trio.current_time())
        timeout = httpx.Timeout(self._timeout, read=self._read_timeout)
        async with httpx.AsyncClient(timeout=timeout) as client, trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_stale)
            await self._reconnect_forever(client, emit)

    def add_epics(self, epics: Iterable[str]) -> None:
        """Quote more epics (a trade on a new market): subscribed on the live session at its
        next line (PROBE keepalives bound the delay), or with the next connection."""
        for epic in epics:
            if epic not in self._epics:
                self._epics.append(epic)
                self._to_subscribe.append(epic)
                if self._tracker is not None:
                    self._tracker.touch(epic, trio.current_time())

    # -- state for the runtime -------------------------------------------------------------
    def market_state(self, epic: str) -> str | None:
        """The last MARKET_STATE seen for ``epic`` (None before the first update)."""
        return self._states.get(epic)

    def market_open(self, epic: str) -> bool:
        """False while IG would refuse a stop amendment (CLOSED, OFFLINE, SUSPENDED, ...).

        Unknown (no update yet) counts as open: a refused amendment is harmless, a skipped
        one may leave a stop behind.
        """
        state = self._states.get(epic)
        return state is None or state in AMENDABLE_STATES

    def statistics(self) -> FeedStatistics:
        c = self._counts
        stale = self._tracker.stale() if self._tracker else frozenset()
        return FeedStatistics(
            c["connects"], c["disconnects"], c["updates"], c["ticks"], c["dropped"], stale
        )

    # -- internals -------------------------------------------------------------------------
    async def _reconnect_forever(self, client: httpx.AsyncClient, emit: TickSink) -> None:
        delay = self._backoff[0]
        refresh = False
        while True:
            updates = self._counts["updates"]
            try:
                auth = await self._auth(refresh)
                refresh = False
                await self._session(client, auth, emit)
                reason = "stream closed by the server"
            except TLCPRefused as exc:
                refresh, reason = True, str(exc)
            except (httpx.HTTPError, BrokerError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self._counts["disconnects"] += 1
            if self._counts["updates"] > updates:  # it worked for a while: start backoff again
                delay = self._backoff[0]
            logger.bind(event="feed.disconnected", reason=reason, retry_in=delay).warning(
                "IG stream disconnected ({}); reconnecting in {:.1f}s", reason, delay
            )
            await trio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _session(self, client: httpx.AsyncClient, auth: StreamAuth, emit: TickSink) -> None:
        """One Lightstreamer session, rebinding on LOOP, until its stream ends or fails."""
        protocol = MarketStreamProtocol(self._epics)
        base = auth.endpoint.rstrip("/")
        request = "create_session"
        params = {
            "LS_cid": LS_CID,
            "LS_user": auth.user,
            "LS_password": auth.password,
            "LS_adapter_set": "DEFAULT",
            "LS_keepalive_millis": str(self._keepalive_ms),
            "LS_supported_diffs": "",
            "LS_send_sync": "false",
        }
        while True:
            url = f"{base}/lightstreamer/{request}.txt"
            outgoing = build_request(
                client,
                "POST",
                url,
                encode_params(params).encode(),
                params={"LS_protocol": TLCP_VERSION},
                headers={"Content-Type": _TEXT},
            )
            response = await client.send(outgoing, stream=True)
            try:
                if response.status_code != 200:
                    raise TLCPError(f"lightstreamer {request}: HTTP {response.status_code}")
                rebind, base = await self._pump(client, response, protocol, base, emit)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(self._timeout):
                    await response.aclose()
            if rebind is None:
                return
            request, params = "bind_session", {"LS_session": rebind}

    async def _pump(
        self,
        client: httpx.AsyncClient,
        response: httpx.Response,
        protocol: MarketStreamProtocol,
        base: str,
        emit: TickSink,
    ) -> tuple[str | None, str]:
        """Read one stream connection: (session id to rebind, or None; the control base)."""
        splitter = LineSplitter()
        state = _Pump(base)
        chunks = response.aiter_bytes()
        try:
            async for chunk in chunks:
                for line in splitter.feed(chunk):
                    if await self._line(client, response, protocol, state, line, emit):
                        return state.session_id, state.base
        finally:
            await _finish(chunks)
        return None, state.base

    async def _line(
        self,
        client: httpx.AsyncClient,
        response: httpx.Response,
        protocol: MarketStreamProtocol,
        state: _Pump,
        line: str,
        emit: TickSink,
    ) -> bool:
        """Handle one line; True when the connection is done (LOOP: rebind)."""
        sid = state.session_id
        if self._to_subscribe and sid is not None and self._subscribed_session == sid:
            self._take_new_epics(protocol)
            await self._control(client, protocol, state.base, sid)
        event = protocol.handle(parse_line(line))
        if isinstance(event, Connected):
            state.session_id = event.session_id
            if event.control_link:
                state.base = f"{response.url.scheme}://{event.control_link}"
            await self._on_connected(client, protocol, state.base, event.session_id)
        elif isinstance(event, MarketUpdate):
            await self._on_update(event, emit)
        elif isinstance(event, Subscribed):
            logger.bind(event="feed.subscribed", epic=event.epic).info(
                "IG stream subscribed to {}", event.epic
            )
        elif isinstance(event, Rebind):
            return True
        return False

    async def _on_connected(
        self, client: httpx.AsyncClient, protocol: MarketStreamProtocol, base: str, sid: str
    ) -> None:
        self._counts["connects"] += 1
        if self._subscribed_session == sid:
            return  # a rebind: the subscriptions live on in the session
        protocol.new_session()
        self._subscribed_session = sid
        self._take_new_epics(protocol)
        logger.bind(event="feed.connected", epics=len(self._epics)).info(
            "IG stream connected; subscribing {} epics", len(self._epics)
        )
        await self._control(client, protocol, base, sid)

    def _take_new_epics(self, protocol: MarketStreamProtocol) -> None:
        known = set(protocol.epics())
        for epic in self._to_subscribe:
            if epic not in known:
                protocol.add(epic)
        self._to_subscribe.clear()

    async def _control(
        self, client: httpx.AsyncClient, protocol: MarketStreamProtocol, base: str, sid: str
    ) -> None:
        """Send the pending subscriptions; a refused one is logged, the others go on."""
        request = build_request(
            client,
            "POST",
            f"{base}/lightstreamer/control.txt",
            protocol.subscribe_body().encode(),
            params={"LS_protocol": TLCP_VERSION, "LS_session": sid},
            headers={"Content-Type": _TEXT},
        )
        response = await client.send(request)
        if response.status_code != 200:
            raise TLCPError(f"lightstreamer control: HTTP {response.status_code}")
        for note in map(parse_line, response.text.splitlines()):
            if note.tag == "REQERR":
                epic = protocol.epic_of_request(note.args[0])
                logger.bind(event="feed.subscription_rejected", epic=epic, code=note.args[1]).error(
                    "IG stream refused {}: {}", epic, note.args[-1]
                )
            elif note.tag == "ERROR":
                raise TLCPError(f"lightstreamer control refused: {','.join(note.args)}")

    async def _on_update(self, update: MarketUpdate, emit: TickSink) -> None:
        self._counts["updates"] += 1
        assert self._tracker is not None
        if self._tracker.touch(update.epic, trio.current_time()):
            logger.bind(event="feed.resumed", epic=update.epic).info(
                "IG prices for {} resumed", update.epic
            )
        state = update.market_state
        if state is not None and self._states.get(update.epic) != state:
            self._states[update.epic] = state
            logger.bind(event="feed.market_state", epic=update.epic, state=state).info(
                "{} market state {}", update.epic, state
            )
        if not update.price_changed:
            return
        if update.bid is None or update.offer is None:
            self._counts["dropped"] += 1
            return
        now = self._clock()
        ts = update_time_to_utc(update.update_time, now, self._zone) if update.update_time else None
        self._counts["ticks"] += 1
        await emit(Tick(update.epic, ts or now, update.bid, update.offer))

    async def _watch_stale(self) -> None:
        assert self._tracker is not None
        interval = max(self._stale_after / 4, 0.01)
        while True:
            await trio.sleep(interval)
            for epic, silent in self._tracker.check(trio.current_time()):
                logger.bind(event="feed.stale", epic=epic, silent_s=round(silent, 1)).warning(
                    "no IG price for {} for {:.1f}s", epic, silent
                )
