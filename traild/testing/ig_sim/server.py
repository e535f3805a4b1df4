"""The loopback IG server: a model of IG's REST API and Lightstreamer as IG documents them today.

It is written from IG's public documentation (and, where IG is silent, from what users report,
marked "assumption"), never from traild's adapters. REST under ``/gateway/deal``: session v2
(expiring tokens, forced 401), account switch, positions v2, amend v2 with deal references,
confirms (ACCEPTED / REJECTED with IG's reasons), markets v3 (scale and dealing rules),
history/activity v3, operations/application allowances, enforced per minute. Lightstreamer
under ``/lightstreamer`` (see ``stream``): PRICE and TRADE items, CONERR 65 for an unsupported
protocol version. Prices are driven by the caller (``set_price``, ``play``); a position closes
when the exit-side price crosses its stop or limit. Faults: ``fail_next``, ``delay``,
``expire_tokens``, allowance bursts, late confirms, refused stream logins.

Binds 127.0.0.1 on an ephemeral port; runs until its nursery is cancelled (``open_ig_sim``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import h11
import trio

from traild.testing.ig_sim import rest
from traild.testing.ig_sim.faults import Allowance, Fault, spend, take_fault, wait
from traild.testing.ig_sim.http import Dropped, ServerConnection, SimRequest
from traild.testing.ig_sim.market import SimMarket, SimPosition, SimTick
from traild.testing.ig_sim.sessions import SessionBook
from traild.testing.ig_sim.stream import LightstreamerSim

REST = "/gateway/deal/"
Reply = tuple[int, Any, dict[str, str]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IGSim:
    """The fake IG. Construct, ``await nursery.start(sim.serve)``, then use ``base_url``."""

    def __init__(
        self,
        *,
        api_key: str = "sim-api-key",
        identifier: str = "sim-user",
        password: str = "sim-password",
        account_id: str = "SIMACC1",
        other_accounts: Iterable[str] = ("SIMACC2",),
        markets: Iterable[SimMarket] = (),
        positions: Iterable[SimPosition] = (),
        token_ttl: float | None = None,
        trading_allowance: int | None = None,
        account_allowance: int | None = None,
        application_allowance: int | None = None,
        allowance_window: float = 60.0,
        confirm_delay_polls: int = 0,
        keepalive_ms: int = 500,
        keepalive_min_ms: int | None = None,
        stream_sessions_per_account: int | None = None,
        stream_session_policy: str = "refuse",
        lock_after_failures: int | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.api_key = api_key
        self.account_id = account_id
        self.accounts = [account_id, *other_accounts]
        self.sessions = SessionBook(
            identifier,
            password,
            account_id,
            self.accounts,
            token_ttl=token_ttl,
            lock_after_failures=lock_after_failures,
        )
        self.markets = {m.epic: m for m in markets}
        self.positions: dict[str, SimPosition] = {}
        self.confirm_delay_polls = confirm_delay_polls
        self.clock = clock
        self.port = 0
        self.requests: list[SimRequest] = []
        self.amendments: list[tuple[str, dict[str, Any]]] = []
        self.closed: list[tuple[str, float, str]] = []
        self.hidden: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._faults: list[Fault] = []
        self.allowances = {
            "trading": Allowance(trading_allowance),
            "account": Allowance(account_allowance),
            "app": Allowance(application_allowance),
        }
        self.allowance_window = allowance_window
        self.conversions: list[tuple[str, str]] = []  # (deal id, what the amendment removed)
        self._confirms: dict[str, list[Any]] = {}  # ref -> [payload, 404s left]
        self._activities: list[dict[str, Any]] = []
        self.stream = LightstreamerSim(
            self,
            keepalive_ms,
            keepalive_min_ms=keepalive_min_ms,
            sessions_per_account=stream_sessions_per_account,
            session_policy=stream_session_policy,
        )
        for position in positions:
            self.add_position(position)

    # -- addresses -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/gateway/deal"

    @property
    def stream_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (ephemeral port) until cancelled; ``started`` with the port."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            task_status.started(self.port)

    # -- knobs -----------------------------------------------------------------------------
    @property
    def logins(self) -> int:
        """Successful logins so far."""
        return self.sessions.logins

    @property
    def password(self) -> str:
        return self.sessions.password

    @password.setter
    def password(self, value: str) -> None:
        """The trader changes the password on IG's platform."""
        self.sessions.password = value

    def expire_tokens(self) -> None:
        """Invalidate every session token: the next request gets 401."""
        self.sessions.expire_all()

    def weekend_maintenance(self) -> None:
        """IG invalidates every token during its weekend maintenance (IG Labs FAQ); the
        streaming sessions end with it (assumption: IG does not say how they end)."""
        self.sessions.expire_all()
        self.stream.drop_all()

    def fail_next(self, method: str, prefix: str, status: int, code: str, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` {"errorCode": code}."""
        self._faults.append(Fault(method, prefix, times, status=status, code=code))

    def delay(
        self, method: str, prefix: str, seconds: float, times: int = 1, apply_first: bool = False
    ) -> None:
        """Delay matching requests (``math.inf``: never answer). ``apply_first``: the request
        takes effect at once and only its answer is late (a lost response)."""
        self._faults.append(Fault(method, prefix, times, seconds=seconds, apply_first=apply_first))

    def hide_in_list(self, deal_id: str, polls: int = 1) -> None:
        """Leave an open position out of the next ``polls`` GET /positions lists (a glitch)."""
        self.hidden[deal_id] = polls

    def allowance_limits(self) -> tuple[int | None, int | None, int | None]:
        a = self.allowances
        return a["trading"].limit, a["account"].limit, a["app"].limit

    def reset_allowances(self) -> None:
        for allowance in self.allowances.values():
            allowance.sent.clear()

    def add_position(self, position: SimPosition) -> str:
        position.deal_id = position.deal_id or self.new_deal_id()
        position.created = position.created or self.clock()
        self.markets.setdefault(
            position.epic, SimMarket(position.epic, position.level, position.level)
        )
        self.positions[position.deal_id] = position
        self.publish_opu(position, "OPEN")
        return position.deal_id

    def move_stop(self, deal_id: str, stop: float | None, limit: float | None = None) -> None:
        """The trader changes the stop (and limit) on IG's platform: an UPDATED OPU."""
        position = self.positions[deal_id]
        position.stop = stop
        position.limit = limit if limit is not None else position.limit
        self.publish_opu(position, "UPDATED")

    def publish_opu(self, position: SimPosition, status: str) -> None:
        self.stream.publish_trade("OPU", json.dumps(rest.opu(self, position, status)))

    def publish_confirm(self, payload: dict[str, Any]) -> None:
        self.stream.publish_trade("CONFIRMS", json.dumps(payload))

    def set_price(
        self,
        epic: str,
        bid: float,
        offer: float,
        update_time: str | None = None,
        state: str | None = None,
        ts: datetime | None = None,
    ) -> None:
        """Move the market, close positions whose stop/limit it crossed, stream the update
        (``ts``: the quote's time, TIMESTAMP on the stream; default the sim's clock)."""
        market = self.markets.setdefault(epic, SimMarket(epic, bid, offer))
        market.bid, market.offer = bid, offer
        now = ts or self.clock()
        market.update_time = update_time or now.strftime("%H:%M:%S")
        market.timestamp_ms = int(now.timestamp() * 1000)
        market.state = state or market.state
        for position in [p for p in self.positions.values() if p.epic == epic]:
            self._check_exit(position, market)
        self.stream.publish(market)

    def set_market_state(self, epic: str, state: str) -> None:
        market = self.markets[epic]
        market.state = state
        self.stream.publish(market)

    async def play(self, ticks: Iterable[SimTick], interval: float = 0.0) -> None:
        """Apply ``ticks`` in order, ``interval`` seconds apart (0: just yield)."""
        for tick in ticks:
            self.set_price(tick.epic, tick.bid, tick.offer, tick.update_time)
            await trio.sleep(interval)

    def close_position(self, deal_id: str, level: float | None = None) -> None:
        """Close as the trader would (at the exit-side price unless ``level`` is given)."""
        position = self.positions[deal_id]
        market = self.markets[position.epic]
        exit_price = market.bid if position.direction == "BUY" else market.offer
        self._close(position, exit_price if level is None else level, "manual")

    def drop_streams(self) -> None:
        self.stream.drop_all()

    def loop_streams(self) -> None:
        self.stream.loop_all()

    def requests_to(self, method: str, prefix: str) -> list[SimRequest]:
        return [r for r in self.requests if r.method == method and _rel(r.path).startswith(prefix)]

    # -- connection handling ---------------------------------------------------------------
    async def _connection(self, stream: trio.SocketStream) -> None:
        http = ServerConnection(stream)
        try:
            while (request := await http.next_request()) is not None:
                self.requests.append(request)
                if request.path.startswith("/lightstreamer/"):
                    await self.stream.handle(http, request)
                else:
                    await self._rest(http, request)
                if not http.reusable:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, Dropped):
            return  # the client went away or the sim cut the connection on purpose
        finally:
            await http.aclose()

    async def _rest(self, http: ServerConnection, request: SimRequest) -> None:
        rel = _rel(request.path)
        fault = take_fault(self._faults, request.method, rel)
        if fault is not None and fault.status:
            await http.respond_json(fault.status, {"errorCode": fault.code})
            return
        if fault is not None and not fault.apply_first:
            await wait(fault.seconds)
        status, payload, headers = self._route(request, rel)
        if fault is not None and fault.apply_first:
            await wait(fault.seconds)
        await http.respond_json(status, payload, headers)

    def _route(self, request: SimRequest, rel: str) -> Reply:
        if request.headers.get("x-ig-api-key") != self.api_key:
            return 403, {"errorCode": "error.security.api-key-invalid"}, {}
        if rel == "session" and request.method == "POST":
            return self.sessions.login(request.json() or {}, self.stream_url)
        cst = request.headers.get("cst", "")
        account = self.sessions.account_of(cst, request.headers.get("x-security-token"))
        if account is None:
            return 401, {"errorCode": "error.security.client-token-invalid"}, {}
        if rel == "session":
            return self.sessions.session_op(request.method, cst, request.json(), account)
        trading = rel.startswith("positions/otc") and request.method != "GET"
        limited = spend(self.allowances, self.allowance_window, trading)
        if limited:
            return 403, {"errorCode": limited}, {}
        return self._dispatch(request.method, rel, request, account)

    def _dispatch(self, method: str, rel: str, request: SimRequest, account: str) -> Reply:
        parts = rel.split("/")
        if method == "GET" and rel == "positions":
            return 200, rest.positions(self, account), {}
        if method == "GET" and parts[0] == "positions" and len(parts) == 2:
            return rest.position(self, parts[1])
        if method == "PUT" and parts[:2] == ["positions", "otc"] and len(parts) == 3:
            return rest.amend(self, parts[2], request.json())
        if method == "GET" and parts[0] == "confirms" and len(parts) == 2:
            return rest.confirm(self, parts[1])
        if method == "GET" and parts[0] == "markets" and len(parts) == 2:
            return rest.market(self, parts[1])
        if method == "GET" and rel == "history/activity":
            return 200, {"activities": list(reversed(self._activities))}, {}
        if method == "GET" and rel == "operations/application":
            return 200, rest.applications(self), {}
        return 404, {"errorCode": "error.sim.unknown-endpoint"}, {}

    # -- sessions and allowances -----------------------------------------------------------
    def account_for_stream(self, user: str, password: str) -> bool:
        """Lightstreamer credentials: the account id and ``CST-<cst>|XST-<xst>``."""
        return self.sessions.account_for_stream(user, password)

    # -- positions -------------------------------------------------------------------------
    def new_deal_id(self) -> str:
        return f"DIAAAA{next(self._ids):06d}"

    def new_reference(self) -> str:
        return f"SIMREF{next(self._ids):06d}"

    def store_confirm(self, reference: str, payload: dict[str, Any]) -> None:
        self._confirms[reference] = [payload, self.confirm_delay_polls]

    def take_confirm(self, reference: str) -> dict[str, Any] | None:
        entry = self._confirms.get(reference)
        if entry is None or entry[1] > 0:
            if entry is not None:
                entry[1] -= 1
            return None
        payload: dict[str, Any] = entry[0]
        return payload

    def _check_exit(self, position: SimPosition, market: SimMarket) -> None:
        buy = position.direction == "BUY"
        price = market.bid if buy else market.offer
        sign = 1 if buy else -1
        if position.stop is not None and sign * (price - position.stop) <= 0:
            self._close(position, price, "stop")
        elif position.limit is not None and sign * (price - position.limit) >= 0:
            self._close(position, position.limit, "limit")

    def _close(self, position: SimPosition, level: float, reason: str) -> None:
        del self.positions[position.deal_id]
        self.closed.append((position.deal_id, level, reason))
        self.publish_opu(position, "DELETED")
        self._activities.append(rest.closed_activity(self, position, level, reason))


def _rel(path: str) -> str:
    return path.removeprefix(REST).strip("/") if path.startswith(REST) else path.strip("/")


@asynccontextmanager
async def open_ig_sim(**options: Any) -> AsyncIterator[IGSim]:
    """Run an IGSim for the duration of the block (stopped by cancelling its nursery)."""
    sim = IGSim(**options)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        try:
            yield sim
        finally:
            nursery.cancel_scope.cancel()
