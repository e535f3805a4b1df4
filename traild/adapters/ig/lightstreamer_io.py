"""One Lightstreamer session's bytes: create or bind, read lines until LOOP or an error, send
subscriptions. Owned by ``lightstreamer.LightstreamerClient``, which decides what an error means.

Silence is measured here, with trio deadlines rather than httpx's read timeout (fixed when a
response starts): until CONOK the request timeout applies, then the keep-alive the server
assigned in CONOK ("CONOK,<session>,<request limit>,<keep-alive ms>,<control link>", TLCP
2.4.0 specification; the server may assign another value than ``LS_keepalive_millis`` asked
for) plus the client's stall margin.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
import trio
from loguru import logger

from traild.adapters.ig.http import build_request
from traild.adapters.ig.session import StreamAuth
from traild.adapters.ig.tlcp import (
    LS_CID,
    Connected,
    ItemUpdate,
    LineSplitter,
    Rebind,
    StreamProtocol,
    Subscribed,
    Subscription,
    TLCPError,
    encode_params,
    parse_line,
)

_TEXT = "text/plain; charset=UTF-8"


@dataclass
class StreamState:
    """What the current stream connection has told so far."""

    base: str
    session_id: str | None = None
    idle_limit: float = 0.0  # seconds of silence before the connection counts as dead


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


class SessionOwner(Protocol):
    """What a session reads from and reports to its client (``LightstreamerClient``)."""

    name: str
    version: str
    keepalive_ms: int
    stall_margin: float
    timeout: float
    subs: list[Subscription]
    handlers: dict[str, Callable[[ItemUpdate], Awaitable[None]]]
    to_subscribe: list[Subscription]
    subscribed_session: str | None
    counts: dict[str, int]

    def connected(self, keepalive_ms: int) -> None: ...

    def subscribed(self, key: str) -> None: ...

    def refused_item(self, key: str | None, code: str, message: str) -> None: ...


class SessionIO:
    """One session of ``owner``: rebinding on LOOP until its stream ends or fails."""

    def __init__(self, owner: SessionOwner, client: httpx.AsyncClient, auth: StreamAuth) -> None:
        self._owner = owner
        self._client = client
        self._auth = auth
        self._protocol = StreamProtocol()

    async def run(self) -> None:
        owner, auth = self._owner, self._auth
        base = auth.endpoint.rstrip("/")
        request = "create_session"
        params = {
            "LS_cid": LS_CID,
            "LS_user": auth.user,
            "LS_password": auth.password,
            "LS_adapter_set": "DEFAULT",
            "LS_keepalive_millis": str(owner.keepalive_ms),
            "LS_supported_diffs": "",
            "LS_send_sync": "false",
        }
        while True:
            outgoing = build_request(
                self._client,
                "POST",
                f"{base}/lightstreamer/{request}.txt",
                encode_params(params).encode(),
                params={"LS_protocol": owner.version},
                headers={"Content-Type": _TEXT},
                timeout=httpx.Timeout(owner.timeout, read=None),  # silence: see _pump
            )
            response = await self._client.send(outgoing, stream=True)
            try:
                if response.status_code != 200:
                    raise TLCPError(f"lightstreamer {request}: HTTP {response.status_code}")
                rebind, base = await self._pump(response, base)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(owner.timeout):
                    await response.aclose()
            if rebind is None:
                return
            request, params = "bind_session", {"LS_session": rebind}

    async def _pump(self, response: httpx.Response, base: str) -> tuple[str | None, str]:
        """Read one stream connection: (session id to rebind, or None; the control base)."""
        splitter = LineSplitter()
        state = StreamState(base, idle_limit=self._owner.timeout)
        chunks = response.aiter_bytes()
        try:
            with trio.CancelScope() as silence:
                silence.deadline = trio.current_time() + state.idle_limit
                async for chunk in chunks:
                    for line in splitter.feed(chunk):
                        if await self._line(response, state, line):
                            return state.session_id, state.base
                    silence.deadline = trio.current_time() + state.idle_limit
        finally:
            await _finish(chunks)
        if silence.cancelled_caught:
            raise TLCPError(f"lightstreamer stream silent for {state.idle_limit:g}s")
        return None, state.base

    async def _line(self, response: httpx.Response, state: StreamState, line: str) -> bool:
        """Handle one line; True when the connection is done (LOOP: rebind)."""
        owner, protocol = self._owner, self._protocol
        sid = state.session_id
        if owner.to_subscribe and sid is not None and owner.subscribed_session == sid:
            self._take_new()
            await self._control(state.base, sid)
        event = protocol.handle(parse_line(line))
        if isinstance(event, Connected):
            state.session_id = event.session_id
            state.idle_limit = event.keepalive_ms / 1000 + owner.stall_margin
            if event.control_link:
                state.base = f"{response.url.scheme}://{event.control_link}"
            await self._on_connected(state.base, event)
        elif isinstance(event, ItemUpdate):
            owner.counts["updates"] += 1
            await owner.handlers[event.key](event)
        elif isinstance(event, Subscribed):
            owner.subscribed(event.key)
        elif isinstance(event, Rebind):
            return True
        return False

    async def _on_connected(self, base: str, event: Connected) -> None:
        owner = self._owner
        owner.connected(event.keepalive_ms)
        if owner.subscribed_session == event.session_id:
            return  # a rebind: the subscriptions live on in the session
        self._protocol.new_session()
        owner.subscribed_session = event.session_id
        owner.to_subscribe = list(owner.subs)
        self._take_new()
        logger.bind(event="feed.connected", items=len(owner.subs), stream=owner.name).info(
            "{} connected; subscribing {} items", owner.name, len(owner.subs)
        )
        await self._control(base, event.session_id)

    def _take_new(self) -> None:
        known = set(self._protocol.keys())
        for sub in self._owner.to_subscribe:
            if sub.key not in known:
                self._protocol.add(sub)
        self._owner.to_subscribe.clear()

    async def _control(self, base: str, sid: str) -> None:
        """Send the pending subscriptions; a refused one is logged, the others go on."""
        body = self._protocol.subscribe_body()
        if not body:
            return
        request = build_request(
            self._client,
            "POST",
            f"{base}/lightstreamer/control.txt",
            body.encode(),
            params={"LS_protocol": self._owner.version, "LS_session": sid},
            headers={"Content-Type": _TEXT},
        )
        response = await self._client.send(request)
        if response.status_code != 200:
            raise TLCPError(f"lightstreamer control: HTTP {response.status_code}")
        for note in map(parse_line, response.text.splitlines()):
            if note.tag == "REQERR":
                key = self._protocol.key_of_request(note.args[0])
                self._owner.refused_item(key, note.args[1], note.args[-1])
            elif note.tag == "ERROR":
                raise TLCPError(f"lightstreamer control refused: {','.join(note.args)}")
