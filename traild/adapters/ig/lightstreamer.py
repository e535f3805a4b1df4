"""A trio-native Lightstreamer client (TLCP over HTTP streaming through httpx), IG flavoured.

One client is one Lightstreamer session for the IG account, shared by everything that streams
(the PRICE feed, the TRADE events, ``traild ig check``): IG allows one connection per account
and 40 subscriptions on it ("connecting more than once is a breach of IG's terms and
conditions", IG streaming API guide; trading-ig's ``sample/stream_ig.py`` streams PRICE,
ACCOUNT and TRADE through one client). Each user calls ``run``; the first runs the session,
the others wait and take over if it is cancelled.

It only moves bytes; the protocol is sans-IO in ``tlcp``. It creates a session
(``create_session.txt``), sends subscriptions (``control.txt``), hands every item update to its
subscription's handler (handlers never wait on I/O: see ``stream`` and ``trade``), rebinds on
``LOOP`` and reconnects with exponential backoff when the stream drops or goes silent for longer
than the keep-alive the server assigned in CONOK (plus a margin). CONERR is handled by its code
(``tlcp``): an authentication refusal (1) asks for fresh IG tokens (one login per refusal,
shared with the REST session), a refusal of what traild asks for (65, the protocol version
most often) ends ``run`` with TLCPUnsupported (exit 78: no retry can cure it), IG's own limits
(code <= 0) and END 35 (another session for this account took over) wait the longest backoff.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import httpx
import trio
from loguru import logger

from traild.adapters.ig.lightstreamer_io import SessionIO
from traild.adapters.ig.options import STALL_MARGIN_S
from traild.adapters.ig.session import StreamAuth, StreamAuthProvider
from traild.adapters.ig.tlcp import (
    DEFAULT_TLCP_VERSION,
    MAX_SUBSCRIPTIONS,
    ItemUpdate,
    Subscription,
    TLCPEnded,
    TLCPRefused,
    TLCPUnsupported,
)
from traild.core.errors import BrokerConfigRefused, BrokerError

UpdateHandler = Callable[[ItemUpdate], Awaitable[None]]
StateHandler = Callable[[bool], None]


class SubscriptionLimit(BrokerConfigRefused):
    """More subscriptions than IG allows on the account's one streaming connection."""


class LightstreamerClient:
    """One reconnecting Lightstreamer session with up to ``max_subscriptions`` subscriptions.

    ``auth(refused)`` supplies the endpoint and credentials (``IGSession.stream_auth``).
    """

    def __init__(
        self,
        auth: StreamAuthProvider,
        *,
        name: str = "IG stream",
        keepalive_ms: int = 5000,
        stall_margin: float = STALL_MARGIN_S,
        timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        tlcp_version: str = DEFAULT_TLCP_VERSION,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
    ) -> None:
        self._auth = auth
        self.name = name
        self.keepalive_ms = keepalive_ms
        self.stall_margin = stall_margin
        self.timeout = timeout
        self._backoff = (backoff_initial, backoff_max)
        self.version = f"TLCP-{tlcp_version.removeprefix('TLCP-')}"
        self.max_subscriptions = max_subscriptions
        self.subs: list[Subscription] = []
        self.handlers: dict[str, UpdateHandler] = {}
        self._listeners: dict[str, StateHandler] = {}
        self.to_subscribe: list[Subscription] = []
        self.subscribed_session: str | None = None
        self.assigned_keepalive_ms: int | None = None
        self._may_relogin = True
        self._runner: trio.Event | None = None  # set when the running task stops
        self._failure: BrokerConfigRefused | None = None
        self.counts = dict.fromkeys(("connects", "disconnects", "updates", "logins"), 0)
        self.rejected: deque[str] = deque(maxlen=MAX_SUBSCRIPTIONS)  # the latest refused items

    def add(
        self, sub: Subscription, handler: UpdateHandler, on_state: StateHandler | None = None
    ) -> None:
        """Subscribe ``sub`` (at the stream's next line if connected, else on connect);
        ``on_state(True/False)``: it is subscribed / the session is lost. SubscriptionLimit
        when the session already carries ``max_subscriptions``."""
        if sub.key in self.handlers:
            return
        if len(self.subs) >= self.max_subscriptions:
            raise SubscriptionLimit(
                f"IG allows {self.max_subscriptions} subscriptions on the account's one "
                f"streaming connection; {sub.item} would be one more (fewer epics)"
            )
        self.subs.append(sub)
        self.handlers[sub.key] = handler
        if on_state is not None:
            self._listeners[sub.key] = on_state
        self.to_subscribe.append(sub)

    def has_room(self) -> bool:
        return len(self.subs) < self.max_subscriptions

    # -- running (shared) ------------------------------------------------------------------
    async def run(self) -> None:
        """Stream until cancelled (every user calls it; one session runs for all of them).

        Raises BrokerConfigRefused (TLCPUnsupported, a refused login) in every caller."""
        while True:
            if self._failure is not None:
                raise self._failure
            if self._runner is None:
                break
            await self._runner.wait()  # the running user stopped: take over, or share its fate
        self._runner = trio.Event()
        try:
            timeout = httpx.Timeout(self.timeout)
            async with httpx.AsyncClient(timeout=timeout) as client:
                await self._reconnect_forever(client)
        except BrokerConfigRefused as exc:
            self._failure = exc
            raise
        finally:
            runner, self._runner = self._runner, None
            runner.set()

    async def _reconnect_forever(self, client: httpx.AsyncClient) -> None:
        delay = self._backoff[0]
        refused: StreamAuth | None = None
        while True:
            updates = self.counts["updates"]
            wait_longest = False
            try:
                auth = await self._auth(refused)
                if refused is not None:
                    self.counts["logins"] += 1
                    self._may_relogin = False  # once, until a session is accepted again
                refused = None
                await SessionIO(self, client, auth).run()
                reason = "stream closed by the server"
            except TLCPUnsupported as exc:  # the caller reports it (traild run: exit 78)
                self._lost()
                raise TLCPUnsupported(exc.code, exc.server_message, self.version) from None
            except TLCPRefused as exc:
                # Only an authentication refusal justifies a new IG login (and only one until
                # a session is accepted again): any other CONERR would spend the allowance.
                if exc.needs_login and self._may_relogin:
                    refused = auth
                wait_longest = self._note_refusal(exc)
                reason = str(exc)
            except TLCPEnded as exc:
                wait_longest = self._note_end(exc)
                reason = str(exc)
            except BrokerConfigRefused:
                self._lost()
                raise
            except (httpx.HTTPError, BrokerError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            self._lost()
            self.counts["disconnects"] += 1
            if self.counts["updates"] > updates:  # it worked for a while: start backoff again
                delay = self._backoff[0]
            wait = self._backoff[1] if wait_longest else delay
            logger.bind(event="feed.disconnected", reason=reason, retry_in=wait).warning(
                "{} disconnected ({}); reconnecting in {:.1f}s", self.name, reason, wait
            )
            await trio.sleep(wait)
            delay = min(delay * 2, self._backoff[1])

    def _note_refusal(self, exc: TLCPRefused) -> bool:
        """Log a refusal that is not about the tokens; True: wait the longest backoff."""
        if exc.by_ig or exc.code in (7, 8, 9, 10):
            logger.bind(
                event="feed.refused", code=exc.code, server_message=exc.server_message
            ).error(
                "IG Lightstreamer refused the session: CONERR {} ({}); a per-user or server "
                "limit (is another traild or `traild ig check` streaming for this account?)",
                exc.code,
                exc.server_message,
            )
            return True
        return False

    def _note_end(self, exc: TLCPEnded) -> bool:
        if not exc.displaced:
            return False
        logger.bind(event="feed.displaced", code=exc.code).error(
            "IG ended this streaming session: another one for the same account took its place "
            "(END 35); IG allows one per account: stop the other traild or `traild ig check`"
        )
        return True

    # -- what SessionIO reports ------------------------------------------------------------
    def connected(self, keepalive_ms: int) -> None:
        self.counts["connects"] += 1
        self._may_relogin = True
        if keepalive_ms != self.assigned_keepalive_ms:
            self.assigned_keepalive_ms = keepalive_ms
            logger.bind(
                event="feed.keepalive", requested_ms=self.keepalive_ms, assigned_ms=keepalive_ms
            ).info("IG streaming keep-alive {} ms (asked {} ms)", keepalive_ms, self.keepalive_ms)

    def subscribed(self, key: str) -> None:
        listener = self._listeners.get(key)
        if listener is not None:
            listener(True)
        logger.bind(event="feed.subscribed", item=key).info("{} subscribed to {}", self.name, key)

    def refused_item(self, key: str | None, code: str, message: str) -> None:
        self.rejected.append(str(key))
        logger.bind(event="feed.subscription_rejected", item=key, code=code).error(
            "{} refused {}: {}", self.name, key, message
        )

    def _lost(self) -> None:
        for listener in self._listeners.values():
            listener(False)
