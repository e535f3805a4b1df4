"""IG streaming prices: Lightstreamer TLCP over HTTP streaming, trio-native through httpx.

The protocol half is sans-IO (``parse_line``, ``apply_update``, ``update_time_to_utc``,
``MarketStreamProtocol``, ``StaleTracker``): pure functions and small state machines, unit
tested without a socket. ``IGStreamFeed`` only moves bytes: it creates a session
(``create_session.txt``), subscribes ``MARKET:{epic}`` with ``BID OFFER UPDATE_TIME
MARKET_STATE`` in MERGE mode (``control.txt``), turns ``U`` lines into ticks, rebinds on
``LOOP``, reconnects with exponential backoff when the stream drops, and logs ``feed.stale``
when an epic has had no update for ``stale_after`` seconds.

Lightstreamer prices are normal prices, also for CEEM epics (only IG's REST levels are
scaled), so nothing is scaled here.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

import httpx
import trio
from loguru import logger

from traild.core.errors import BrokerError
from traild.core.messages import Tick
from traild.ports import TickSink

TLCP_VERSION = "TLCP-2.5.0"
# The client id the TLCP specification prescribes for custom clients (decoded form).
LS_CID = "mgQkwtwdysogQz2BJ4Ji kOj2Bg"
FIELDS = ("BID", "OFFER", "UPDATE_TIME", "MARKET_STATE")
# States in which IG accepts a stop amendment (EDIT = edits only, no new deals).
AMENDABLE_STATES = frozenset({"TRADEABLE", "EDIT"})
# How many comma-separated arguments a tag has at most (the last one may contain commas).
_MAX_ARGS = {"U": 3, "CONERR": 2, "END": 2, "ERROR": 2, "REQERR": 3, "SERVNAME": 1}


class TLCPError(BrokerError):
    """The stream broke the protocol or the server ended the session."""


@dataclass(frozen=True, slots=True)
class StreamAuth:
    """Where and how to open a Lightstreamer session (IG: account id and CST/XST tokens)."""

    endpoint: str
    user: str
    password: str = field(repr=False)


StreamAuthProvider = Callable[[bool], Awaitable[StreamAuth]]


# -- sans-IO: lines, values, times ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """One TLCP line: ``TAG,arg1,...``."""

    tag: str
    args: tuple[str, ...]


def parse_line(line: str) -> Notification:
    """Split a TLCP line into its tag and arguments (values of ``U`` stay encoded)."""
    tag, sep, rest = line.partition(",")
    if not sep:
        return Notification(tag, ())
    limit = _MAX_ARGS.get(tag)
    args = rest.split(",", limit - 1) if limit else rest.split(",")
    return Notification(tag, tuple(args))


class LineSplitter:
    """Bytes in, complete CR-LF terminated text lines out (incremental, UTF-8)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        *complete, self._buffer = self._buffer.split(b"\n")
        return [raw.rstrip(b"\r").decode("utf-8") for raw in complete if raw.strip()]


Values = tuple[str | None, ...]


def apply_update(previous: Values | None, raw: str, width: int) -> Values:
    """Apply the value list of a ``U`` line to an item's previous values (MERGE decoding).

    Tokens: empty = unchanged, ``#`` = null, ``$`` = empty string, ``^N`` = N unchanged fields,
    anything else is a percent-encoded new value. Diff formats (``^T``/``^P``) are refused:
    traild declares ``LS_supported_diffs`` empty, so a server never sends them.
    """
    values: list[str | None] = list(previous) if previous is not None else [None] * width
    pointer = 0
    for token in raw.split("|"):
        if pointer >= width:
            raise TLCPError(f"update has more values than the {width} subscribed fields")
        if token in ("", "#", "$"):
            if token == "" and previous is None:
                raise TLCPError("first update of an item leaves a field unchanged")
            if token != "":
                values[pointer] = None if token == "#" else ""
            pointer += 1
        elif token.startswith("^"):
            count = token[1:]
            if not count.isdigit():
                raise TLCPError(f"unsupported value directive {token[:2]!r}")
            if previous is None or pointer + int(count) > width:
                raise TLCPError(f"unchanged run {token!r} does not fit the item")
            pointer += int(count)
        else:
            values[pointer] = unquote(token, errors="strict")
            pointer += 1
    if pointer != width:
        raise TLCPError(f"update covers {pointer} of {width} fields")
    return tuple(values)


def encode_params(params: Mapping[str, str]) -> str:
    """A TLCP request line: ``k=v&...`` with every reserved character percent-encoded."""
    return "&".join(f"{key}={quote(value, safe='')}" for key, value in params.items())


def update_time_to_utc(text: str, now: datetime, zone: tzinfo) -> datetime | None:
    """IG's ``UPDATE_TIME`` (``HH:MM:SS`` wall time in ``zone``) -> aware UTC datetime.

    The date is not on the wire: of the candidates yesterday, today and tomorrow (and both
    sides of a DST fold) the one closest to ``now`` wins, which handles midnight and the
    autumn clock change. None when the text is not a time.
    """
    try:
        wall = time.fromisoformat(text.strip())
    except ValueError:
        return None
    local_today = now.astimezone(zone).date()
    candidates = (
        datetime.combine(local_today + timedelta(days=offset), wall, tzinfo=zone)
        .replace(fold=fold)
        .astimezone(UTC)
        for offset in (-1, 0, 1)
        for fold in (0, 1)
    )
    return min(candidates, key=lambda ts: abs(ts - now))


def _price(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


# -- sans-IO: the subscription state machine -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    session_id: str
    keepalive_ms: int
    control_link: str | None


@dataclass(frozen=True, slots=True)
class Subscribed:
    epic: str


@dataclass(frozen=True, slots=True)
class MarketUpdate:
    """The merged state of one market after a ``U`` line."""

    epic: str
    bid: float | None
    offer: float | None
    update_time: str | None
    market_state: str | None
    price_changed: bool


@dataclass(frozen=True, slots=True)
class Rebind:
    """``LOOP``: the stream ends by design; bind the same session to a new connection."""


StreamEvent = Connected | Subscribed | MarketUpdate | Rebind | None


class MarketStreamProtocol:
    """Interprets the notifications of one Lightstreamer session subscribed to MARKET items.

    Subscription ids are 1..n in the order of ``epics``; item values survive a rebind (the
    server continues the same MERGE stream) but not a new session (a new snapshot arrives).
    """

    def __init__(self, epics: Sequence[str]) -> None:
        self._epics = {str(i): epic for i, epic in enumerate(epics, start=1)}
        self._values: dict[str, Values] = {}

    def subscribe_body(self, first_request_id: int = 1) -> str:
        """The ``control.txt`` body: one ``LS_op=add`` line per epic."""
        lines = [
            encode_params(
                {
                    "LS_reqId": str(first_request_id + int(sub_id) - 1),
                    "LS_op": "add",
                    "LS_subId": sub_id,
                    "LS_group": f"MARKET:{epic}",
                    "LS_schema": " ".join(FIELDS),
                    "LS_mode": "MERGE",
                    "LS_snapshot": "true",
                }
            )
            for sub_id, epic in self._epics.items()
        ]
        return "\r\n".join(lines)

    def epic_of_request(self, request_id: str, first_request_id: int = 1) -> str | None:
        return self._epics.get(str(int(request_id) - first_request_id + 1))

    def new_session(self) -> None:
        """Forget merged values: a new session starts with fresh snapshots."""
        self._values.clear()

    def handle(self, note: Notification) -> StreamEvent:
        """One notification in, at most one event out; errors raise TLCPError."""
        tag, args = note.tag, note.args
        if tag == "CONOK":
            link = args[3] if len(args) > 3 and args[3] != "*" else None
            return Connected(args[0], int(args[2]), link)
        if tag == "U":
            return self._update(args)
        if tag == "SUBOK":
            epic = self._epics.get(args[0])
            return Subscribed(epic) if epic else None
        if tag == "LOOP":
            return Rebind()
        if tag in ("CONERR", "END", "ERROR"):
            code = args[0] if args else "?"
            message = args[1] if len(args) > 1 else ""
            raise TLCPError(f"lightstreamer {tag} {code}: {message}")
        return None  # PROBE, SYNC, NOOP, CONS, SERVNAME, CLIENTIP, PROG, EOS, CS, ...

    def _update(self, args: tuple[str, ...]) -> MarketUpdate | None:
        if len(args) != 3:
            raise TLCPError("malformed U line")
        sub_id, _item, raw = args
        epic = self._epics.get(sub_id)
        if epic is None:
            return None
        before = self._values.get(sub_id)
        after = apply_update(before, raw, len(FIELDS))
        self._values[sub_id] = after
        bid, offer, update_time, state = after
        price_changed = before is None or before[:3] != after[:3]
        return MarketUpdate(epic, _price(bid), _price(offer), update_time, state, price_changed)


class StaleTracker:
    """Per-epic freshness on a monotonic clock: which epics just went stale or came back."""

    def __init__(self, epics: Iterable[str], stale_after: float, now: float) -> None:
        self.stale_after = stale_after
        self._last = dict.fromkeys(epics, now)
        self._stale: set[str] = set()

    def touch(self, epic: str, now: float) -> bool:
        """Record an update; True when the epic was stale until now."""
        self._last[epic] = now
        if epic in self._stale:
            self._stale.discard(epic)
            return True
        return False

    def check(self, now: float) -> list[tuple[str, float]]:
        """Epics that became stale since the last check, with their silence in seconds."""
        fresh = [
            (epic, now - last)
            for epic, last in self._last.items()
            if epic not in self._stale and now - last >= self.stale_after
        ]
        self._stale.update(epic for epic, _ in fresh)
        return fresh

    def stale(self) -> frozenset[str]:
        return frozenset(self._stale)


# -- IO ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    connects: int
    disconnects: int
    updates: int
    ticks: int
    dropped_updates: int
    stale_epics: frozenset[str]


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
            delivered = False
            try:
                auth = await self._auth(refresh)
                refresh = False
                delivered = await self._session(client, auth, emit)
                reason = "stream closed by the server"
            except TLCPError as exc:
                refresh, reason = True, str(exc)
            except (httpx.HTTPError, BrokerError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self._counts["disconnects"] += 1
            if delivered:
                delay = self._backoff[0]
            logger.bind(event="feed.disconnected", reason=reason, retry_in=delay).warning(
                "IG stream disconnected ({}); reconnecting in {:.1f}s", reason, delay
            )
            await trio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _session(self, client: httpx.AsyncClient, auth: StreamAuth, emit: TickSink) -> bool:
        """One Lightstreamer session, rebinding on LOOP; True when it delivered data."""
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
        delivered = False
        while True:
            url = f"{base}/lightstreamer/{request}.txt"
            async with client.stream(
                "POST",
                url,
                params={"LS_protocol": TLCP_VERSION},
                content=encode_params(params),
                headers={"Content-Type": "text/plain; charset=UTF-8"},
            ) as response:
                if response.status_code != 200:
                    raise TLCPError(f"lightstreamer {request}: HTTP {response.status_code}")
                outcome = await self._pump(client, response, protocol, base, emit)
            delivered = delivered or outcome[1]
            if outcome[0] is None:
                return delivered
            base = outcome[2]
            request, params = "bind_session", {"LS_session": outcome[0]}

    async def _pump(
        self,
        client: httpx.AsyncClient,
        response: httpx.Response,
        protocol: MarketStreamProtocol,
        base: str,
        emit: TickSink,
    ) -> tuple[str | None, bool, str]:
        """Read one stream connection: (session id to rebind or None, delivered, control base)."""
        splitter = LineSplitter()
        session_id: str | None = None
        delivered = False
        async for chunk in response.aiter_bytes():
            for line in splitter.feed(chunk):
                event = protocol.handle(parse_line(line))
                if isinstance(event, Connected):
                    session_id = event.session_id
                    if event.control_link:
                        base = f"{response.url.scheme}://{event.control_link}"
                    await self._on_connected(client, protocol, base, session_id)
                elif isinstance(event, MarketUpdate):
                    delivered = True
                    await self._on_update(event, emit)
                elif isinstance(event, Subscribed):
                    logger.bind(event="feed.subscribed", epic=event.epic).info(
                        "IG stream subscribed to {}", event.epic
                    )
                elif isinstance(event, Rebind):
                    return session_id, delivered, base
        return None, delivered, base

    async def _on_connected(
        self, client: httpx.AsyncClient, protocol: MarketStreamProtocol, base: str, sid: str
    ) -> None:
        self._counts["connects"] += 1
        if self._counts["connects"] > 1 and self._subscribed_session == sid:
            return  # a rebind: the subscriptions live on in the session
        protocol.new_session()
        self._subscribed_session = sid
        logger.bind(event="feed.connected", epics=len(self._epics)).info(
            "IG stream connected; subscribing {} epics", len(self._epics)
        )
        response = await client.post(
            f"{base}/lightstreamer/control.txt",
            params={"LS_protocol": TLCP_VERSION, "LS_session": sid},
            content=protocol.subscribe_body(),
            headers={"Content-Type": "text/plain; charset=UTF-8"},
        )
        if response.status_code != 200:
            raise TLCPError(f"lightstreamer control: HTTP {response.status_code}")
        for note in map(parse_line, response.text.splitlines()):
            if note.tag == "REQERR":
                epic = protocol.epic_of_request(note.args[0])
                logger.bind(event="feed.subscription_rejected", epic=epic, code=note.args[1]).error(
                    "IG stream refused {}: {}", epic, note.args[-1]
                )
            elif note.tag == "ERROR":
                protocol.handle(note)

    _subscribed_session: str | None = None

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
