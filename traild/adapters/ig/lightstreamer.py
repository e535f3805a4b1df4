"""A trio-native Lightstreamer client (TLCP over HTTP streaming through httpx), IG flavoured.

It only moves bytes; the protocol is sans-IO in ``tlcp``. It creates a session
(``create_session.txt``), sends subscriptions (``control.txt``), hands every item update to its
subscription's handler, rebinds on ``LOOP`` and reconnects with exponential backoff when the
stream drops. CONERR is handled by its code: only an authentication refusal (code 1) asks for
fresh IG tokens (one new login), an unsupported protocol version (60/65) ends ``run`` with
TLCPUnsupported (no retry can cure it), anything else is retried with backoff on the same tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import trio
from loguru import logger

from traild.adapters.ig.session import StreamAuth, StreamAuthProvider, build_request
from traild.adapters.ig.tlcp import (
    DEFAULT_TLCP_VERSION,
    LS_CID,
    Connected,
    ItemUpdate,
    LineSplitter,
    Rebind,
    StreamProtocol,
    Subscribed,
    Subscription,
    TLCPError,
    TLCPRefused,
    TLCPUnsupported,
    encode_params,
    parse_line,
)
from traild.core.errors import BrokerError

_TEXT = "text/plain; charset=UTF-8"
UpdateHandler = Callable[[ItemUpdate], Awaitable[None]]
StateHandler = Callable[[bool], None]


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


class LightstreamerClient:
    """One reconnecting Lightstreamer session with any number of subscriptions.

    ``auth(refresh)`` supplies the endpoint and credentials (``IGSession.stream_auth``);
    ``on_state(True/False)`` is told when the session is subscribed / lost.
    """

    def __init__(
        self,
        auth: StreamAuthProvider,
        *,
        name: str = "stream",
        keepalive_ms: int = 5000,
        read_timeout: float | None = None,
        timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        tlcp_version: str = DEFAULT_TLCP_VERSION,
        on_state: StateHandler | None = None,
    ) -> None:
        self._auth = auth
        self.name = name
        self._keepalive_ms = keepalive_ms
        self._read_timeout = read_timeout or max(3 * keepalive_ms / 1000, 1.0)
        self._timeout = timeout
        self._backoff = (backoff_initial, backoff_max)
        self._version = f"TLCP-{tlcp_version.removeprefix('TLCP-')}"
        self._on_state = on_state or (lambda _: None)
        self._subs: list[Subscription] = []
        self._handlers: dict[str, UpdateHandler] = {}
        self._to_subscribe: list[Subscription] = []
        self._subscribed_session: str | None = None
        self._may_relogin = True
        self.counts = dict.fromkeys(("connects", "disconnects", "updates", "logins"), 0)
        self.rejected: list[str] = []

    def add(self, sub: Subscription, handler: UpdateHandler) -> None:
        """Subscribe ``sub`` (now if connected: at the stream's next line; else on connect)."""
        if sub.key in self._handlers:
            return
        self._subs.append(sub)
        self._handlers[sub.key] = handler
        self._to_subscribe.append(sub)

    async def run(self) -> None:
        """Stream until cancelled; raises TLCPUnsupported when the server refuses our version."""
        timeout = httpx.Timeout(self._timeout, read=self._read_timeout)
        async with httpx.AsyncClient(timeout=timeout) as client:
            await self._reconnect_forever(client)

    async def _reconnect_forever(self, client: httpx.AsyncClient) -> None:
        delay = self._backoff[0]
        refresh = False
        while True:
            updates = self.counts["updates"]
            try:
                auth = await self._auth(refresh)
                if refresh:
                    self.counts["logins"] += 1
                    self._may_relogin = False  # once, until a session is accepted again
                refresh = False
                await self._session(client, auth)
                reason = "stream closed by the server"
            except TLCPUnsupported as exc:
                self._on_state(False)
                logger.bind(event="feed.protocol_refused", code=exc.code, stream=self.name).error(
                    "IG Lightstreamer refused protocol {} ({}); set broker.ig.tlcp_version",
                    self._version,
                    exc,
                )
                raise
            except TLCPRefused as exc:
                # Only an authentication refusal justifies a new IG login (and only one per
                # refusal): any other CONERR would just spend the API key's allowance.
                # Refused again right after a fresh login: the credentials, not the tokens,
                # are wrong; retry on the same tokens instead of logging in every time.
                refresh, reason = exc.needs_login and self._may_relogin, str(exc)
            except (httpx.HTTPError, BrokerError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self._on_state(False)
            self.counts["disconnects"] += 1
            if self.counts["updates"] > updates:  # it worked for a while: start backoff again
                delay = self._backoff[0]
            logger.bind(event="feed.disconnected", reason=reason, retry_in=delay).warning(
                "IG {} disconnected ({}); reconnecting in {:.1f}s", self.name, reason, delay
            )
            await trio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _session(self, client: httpx.AsyncClient, auth: StreamAuth) -> None:
        """One Lightstreamer session, rebinding on LOOP, until its stream ends or fails."""
        protocol = StreamProtocol()
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
                params={"LS_protocol": self._version},
                headers={"Content-Type": _TEXT},
            )
            response = await client.send(outgoing, stream=True)
            try:
                if response.status_code != 200:
                    raise TLCPError(f"lightstreamer {request}: HTTP {response.status_code}")
                rebind, base = await self._pump(client, response, protocol, base)
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
        protocol: StreamProtocol,
        base: str,
    ) -> tuple[str | None, str]:
        """Read one stream connection: (session id to rebind, or None; the control base)."""
        splitter = LineSplitter()
        state = _Pump(base)
        chunks = response.aiter_bytes()
        try:
            async for chunk in chunks:
                for line in splitter.feed(chunk):
                    if await self._line(client, response, protocol, state, line):
                        return state.session_id, state.base
        finally:
            await _finish(chunks)
        return None, state.base

    async def _line(
        self,
        client: httpx.AsyncClient,
        response: httpx.Response,
        protocol: StreamProtocol,
        state: _Pump,
        line: str,
    ) -> bool:
        """Handle one line; True when the connection is done (LOOP: rebind)."""
        sid = state.session_id
        if self._to_subscribe and sid is not None and self._subscribed_session == sid:
            self._take_new(protocol)
            await self._control(client, protocol, state.base, sid)
        event = protocol.handle(parse_line(line))
        if isinstance(event, Connected):
            state.session_id = event.session_id
            if event.control_link:
                state.base = f"{response.url.scheme}://{event.control_link}"
            await self._on_connected(client, protocol, state.base, event.session_id)
        elif isinstance(event, ItemUpdate):
            self.counts["updates"] += 1
            await self._handlers[event.key](event)
        elif isinstance(event, Subscribed):
            self._on_state(True)
            logger.bind(event="feed.subscribed", item=event.key).info(
                "IG {} subscribed to {}", self.name, event.key
            )
        elif isinstance(event, Rebind):
            return True
        return False

    async def _on_connected(
        self, client: httpx.AsyncClient, protocol: StreamProtocol, base: str, sid: str
    ) -> None:
        self.counts["connects"] += 1
        if self._subscribed_session == sid:
            return  # a rebind: the subscriptions live on in the session
        protocol.new_session()
        self._subscribed_session = sid
        self._to_subscribe = list(self._subs)
        self._take_new(protocol)
        logger.bind(event="feed.connected", items=len(self._subs), stream=self.name).info(
            "IG {} connected; subscribing {} items", self.name, len(self._subs)
        )
        await self._control(client, protocol, base, sid)

    def _take_new(self, protocol: StreamProtocol) -> None:
        known = set(protocol.keys())
        for sub in self._to_subscribe:
            if sub.key not in known:
                protocol.add(sub)
        self._to_subscribe.clear()

    async def _control(
        self, client: httpx.AsyncClient, protocol: StreamProtocol, base: str, sid: str
    ) -> None:
        """Send the pending subscriptions; a refused one is logged, the others go on."""
        body = protocol.subscribe_body()
        if not body:
            return
        request = build_request(
            client,
            "POST",
            f"{base}/lightstreamer/control.txt",
            body.encode(),
            params={"LS_protocol": self._version, "LS_session": sid},
            headers={"Content-Type": _TEXT},
        )
        response = await client.send(request)
        if response.status_code != 200:
            raise TLCPError(f"lightstreamer control: HTTP {response.status_code}")
        for note in map(parse_line, response.text.splitlines()):
            if note.tag == "REQERR":
                key = protocol.key_of_request(note.args[0])
                self.rejected.append(str(key))
                logger.bind(event="feed.subscription_rejected", item=key, code=note.args[1]).error(
                    "IG {} refused {}: {}", self.name, key, note.args[-1]
                )
            elif note.tag == "ERROR":
                raise TLCPError(f"lightstreamer control refused: {','.join(note.args)}")
