"""The IG sim's Lightstreamer, as IG runs it today: TLCP over HTTP streaming.

Items:
* ``PRICE:{accountId}:{epic}`` with ``LS_data_adapter=Pricing`` (MERGE): BIDPRICE1, ASKPRICE1,
  TIMESTAMP (epoch ms), DLG_FLAG (read with ``.strip()``). Source: IG's "MARKET to PRICE
  subscription migration guide" (2026-05), trading-ig issue #357 and ``sample/stream_ig.py`` at
  commit d1069b0 (2026-08-18), which subscribes exactly these with ``setDataAdapter("Pricing")``.
* ``MARKET:{epic}`` is refused: IG switched it off on 2026-05-08 (same sources). The REQERR
  code and text are an assumption (IG's exact answer is not published).
* ``TRADE:{accountId}`` (DISTINCT): CONFIRMS and OPU as JSON text, WOU never (the sim has no
  working orders). Source: IG streaming API reference (labs.ig.com/streaming-api-reference) and
  the same trading-ig sample (DISTINCT, fields CONFIRMS OPU WOU). The OPU field names follow
  IG's reference; the sim sends every event whole (assumption).
* Protocol: only ``TLCP-2.4.0``; any other version gets ``CONERR,65,Unsupported protocol
  version`` (reported for 2.5.0 in Lightstreamer-lib-client-haxe issues #5/#6 and
  bennycode/ig-trading-api PR #514; trading-ig pins lightstreamer-client-lib 1.0.3, a 2.4.0
  client, in pyproject.toml at d1069b0, 2026-08-18). Bad credentials: CONERR 1 (TLCP spec).

* Keep-alive: CONOK carries the keep-alive the server assigns, which may differ from the
  ``LS_keepalive_millis`` asked for (TLCP 2.4.0 specification, CONOK). With
  ``keepalive_min_ms`` the sim honours the request but never goes below that minimum; without
  it, it assigns ``keepalive_ms`` whatever was asked. IG's own values are not published
  (assumption; the 20 s minimum of issue #21's model of IG is the usual test value).
* One connection per account, 40 subscriptions on it (IG streaming API guide,
  labs.ig.com/streaming-api-guide, read 2026-12: "up to 40 simultaneous subscriptions per
  connection", connecting more than once "is a breach of IG's terms and conditions"). The sim
  counts concurrent sessions per account (``peak_sessions``); with ``sessions_per_account``
  set, one more is refused (``CONERR,-1,...``: a Metadata Adapter refusal, code <= 0 in the
  TLCP specification) or, with ``session_policy = "displace"``, the older one is ended with
  ``END,35`` (the Lightstreamer code for "closed upon opening of a new session for the same
  user"). Which of the two IG does, and its codes and texts, are assumptions. A 41st
  subscription on one session is refused with ``REQERR,<id>,-2,...`` (code: assumption).

create_session / bind_session open a chunked stream (CONOK, then SUBOK, U lines and PROBE
keepalives); control adds subscriptions (snapshot first, then only changed fields: empty
token for one unchanged field, ``^N`` for a run). ``drop_all`` cuts every stream mid-body
and forgets the sessions; ``loop_all`` ends them with LOOP so clients rebind; ``stall_all``
leaves them open and silent (no data, no PROBE). A session whose stream ends without LOOP is
forgotten (assumption: Lightstreamer keeps it a short while for a rebind).
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from urllib.parse import quote

import trio

from traild.testing.ig_sim.http import Dropped, ServerConnection, SimRequest
from traild.testing.ig_sim.market import SimMarket, SimView

_DROP = "\x00drop"
_LOOP = "\x00loop"
_STALL = "\x00stall"
MAX_SUBSCRIPTIONS = 40
_TEXT = "text/enriched; charset=UTF-8"


def encode_values(previous: list[str | None] | None, values: list[str | None]) -> str:
    """A MERGE value list: changed values encoded, unchanged ones as '' or a ``^N`` run."""
    tokens: list[str] = []
    run = 0
    for index, value in enumerate(values):
        if previous is not None and previous[index] == value:
            run += 1
            continue
        tokens += _run(run)
        run = 0
        if value is None:
            tokens.append("#")
        else:
            tokens.append(quote(value, safe=".:-_ ") if value else "$")
    tokens += _run(run)
    return "|".join(tokens)


def _run(count: int) -> list[str]:
    if count == 0:
        return []
    return [""] if count == 1 else [f"^{count}"]


SUPPORTED_PROTOCOLS = frozenset({"TLCP-2.4.0"})
PRICE_FIELDS = frozenset({"BIDPRICE1", "ASKPRICE1", "TIMESTAMP", "DLG_FLAG"})


def field_value(market: SimMarket, name: str) -> str | None:
    """A PRICE field. Prices in the same units as REST levels (assumption: IG does not
    document it). DLG_FLAG is space-padded, as users of the PRICE item report (assumption on
    the width)."""
    values = {
        "BIDPRICE1": repr(market.wire(market.bid)) if market.quoted else None,
        "ASKPRICE1": repr(market.wire(market.offer)) if market.quoted else None,
        "TIMESTAMP": market.timestamp_text or str(market.timestamp_ms),
        "DLG_FLAG": market.state.ljust(12),
    }
    return values.get(name)


@dataclass
class _Subscription:
    items: list[str]
    fields: list[str]
    last: dict[int, list[str | None]] = field(default_factory=dict)


@dataclass
class _Session:
    sid: str
    user: str
    keepalive_ms: int
    send: trio.MemorySendChannel[str]
    receive: trio.MemoryReceiveChannel[str]
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)


class LightstreamerSim:
    """Lightstreamer sessions of the sim; ``created`` and ``binds`` count stream openings."""

    def __init__(
        self,
        sim: SimView,
        keepalive_ms: int,
        *,
        keepalive_min_ms: int | None = None,
        sessions_per_account: int | None = None,
        session_policy: str = "refuse",
    ) -> None:
        self._sim = sim
        self.keepalive_ms = keepalive_ms
        self.keepalive_min_ms = keepalive_min_ms
        self.sessions_per_account = sessions_per_account
        self.session_policy = session_policy
        self.sessions: dict[str, _Session] = {}
        self.created = 0
        self.binds = 0
        self.protocols: list[str] = []
        self.refused_items: list[str] = []
        self.refused_sessions = 0
        self.peak_sessions: dict[str, int] = {}
        self.keepalives: list[tuple[str, int]] = []  # (asked, assigned) per created session
        self.refuse_auth = 0  # answer the next N create_session with CONERR 1

    async def handle(self, http: ServerConnection, request: SimRequest) -> None:
        name = request.path.removeprefix("/lightstreamer/")
        params = (request.form() or [{}])[0]
        if name == "create_session.txt":
            await self._create(http, params, request.query.get("LS_protocol", ""))
        elif name == "bind_session.txt":
            session = self.sessions.get(params.get("LS_session", ""))
            if session is None:
                await _text(http, "CONERR,20,Specified session not found")
                return
            self.binds += 1
            await self._stream(http, session)
        elif name == "control.txt":
            await self._control(http, request)
        else:
            await http.respond(404, b"", "text/plain")

    def publish(self, market: SimMarket) -> None:
        """Queue a U line for every subscription to this market's PRICE item."""
        for session in self.sessions.values():
            for sub_id, sub in session.subscriptions.items():
                for index, name in enumerate(sub.items, start=1):
                    if self._price_market(name) is market:
                        _queue(session, self._update(sub_id, sub, index, market))

    def publish_trade(self, name: str, payload: str) -> None:
        """Queue a TRADE event (``OPU`` or ``CONFIRMS``, JSON text) on every TRADE item."""
        item = f"TRADE:{self._sim.account_id}"
        for session in self.sessions.values():
            for sub_id, sub in session.subscriptions.items():
                if item not in sub.items:
                    continue
                values = [payload if f == name else None for f in sub.fields]
                # DISTINCT: every event is sent whole (no "unchanged" tokens), so a repeat of
                # an identical event still arrives.
                tokens = encode_values(None, values)
                _queue(session, f"U,{sub_id},{sub.items.index(item) + 1},{tokens}")

    def drop_all(self) -> None:
        for session in self.sessions.values():
            _queue(session, _DROP)
        self.sessions.clear()

    def loop_all(self) -> None:
        for session in self.sessions.values():
            _queue(session, _LOOP)

    def stall_all(self) -> None:
        for session in self.sessions.values():
            _queue(session, _STALL)

    # -- requests --------------------------------------------------------------------------
    async def _create(self, http: ServerConnection, params: dict[str, str], protocol: str) -> None:
        self.protocols.append(protocol)
        if protocol not in SUPPORTED_PROTOCOLS:
            await _text(http, "CONERR,65,Unsupported protocol version")
            return
        user, password = params.get("LS_user", ""), params.get("LS_password", "")
        if self.refuse_auth > 0:
            self.refuse_auth -= 1
            await _text(http, "CONERR,1,User/password check failed")
            return
        if not params.get("LS_cid") or not self._sim.account_for_stream(user, password):
            await _text(http, "CONERR,1,User/password check failed")
            return
        if not self._room_for(user):
            self.refused_sessions += 1
            await _text(http, "CONERR,-1,Too many sessions for this account")
            return
        asked = params.get("LS_keepalive_millis", "")
        send, receive = trio.open_memory_channel[str](1000)
        session = _Session(
            f"S{secrets.token_hex(8)}", user, self._assign_keepalive(asked), send, receive
        )
        self.keepalives.append((asked, session.keepalive_ms))
        self.sessions[session.sid] = session
        self.created += 1
        live = sum(s.user == user for s in self.sessions.values())
        self.peak_sessions[user] = max(self.peak_sessions.get(user, 0), live)
        await self._stream(http, session)

    def _assign_keepalive(self, asked: str) -> int:
        if self.keepalive_min_ms is None:
            return self.keepalive_ms
        requested = int(asked) if asked.isdigit() else self.keepalive_ms
        return max(requested, self.keepalive_min_ms)

    def _room_for(self, user: str) -> bool:
        """Whether one more session of ``user`` is allowed (displacing an older one if so)."""
        limit = self.sessions_per_account
        mine = [s for s in self.sessions.values() if s.user == user]
        if limit is None or len(mine) < limit:
            return True
        if self.session_policy != "displace":
            return False
        oldest = mine[0]
        _queue(oldest, "END,35,Session closed upon opening of a new session for the same user")
        del self.sessions[oldest.sid]
        return True

    async def _stream(self, http: ServerConnection, session: _Session) -> None:
        looped = False
        try:
            looped = await self._lines(http, session)
        finally:
            if not looped:
                self.sessions.pop(session.sid, None)

    async def _lines(self, http: ServerConnection, session: _Session) -> bool:
        """Stream a session's lines; True when it ended with LOOP (it lives on for a bind)."""
        await http.start_stream(_TEXT)
        head = f"CONOK,{session.sid},50000,{session.keepalive_ms},*\r\nSERVNAME,IG sim\r\n"
        await http.chunk(head + "CLIENTIP,127.0.0.1\r\n")
        while True:
            line = "PROBE"
            with trio.move_on_after(session.keepalive_ms / 1000):
                line = await session.receive.receive()
            if line == _DROP:
                raise Dropped
            if line == _STALL:
                await trio.sleep_forever()
            if line == _LOOP:
                await http.chunk("LOOP,0\r\n")
                await http.end_stream()
                return True
            await http.chunk(line + "\r\n")
            if line.startswith("END,"):
                await http.end_stream()
                return False

    async def _control(self, http: ServerConnection, request: SimRequest) -> None:
        session = self.sessions.get(request.query.get("LS_session", ""))
        if session is None:
            await _text(http, "ERROR,20,Specified session not found")
            return
        answers = [self._operation(session, params) for params in request.form()]
        await _text(http, "\r\n".join(answers))

    def _operation(self, session: _Session, params: dict[str, str]) -> str:
        req_id, sub_id = params.get("LS_reqId", "?"), params.get("LS_subId", "")
        if params.get("LS_op") == "delete":
            session.subscriptions.pop(sub_id, None)
            return f"REQOK,{req_id}"
        items = params.get("LS_group", "").split()
        fields = params.get("LS_schema", "").split()
        refused = self._refusal(items, fields, params)
        if len(session.subscriptions) >= MAX_SUBSCRIPTIONS:
            refused = f"-2,Maximum number of subscriptions ({MAX_SUBSCRIPTIONS}) reached"
        if params.get("LS_op") != "add" or refused:
            self.refused_items += items
            return f"REQERR,{req_id},{refused or '21,Invalid request'}"
        sub = _Subscription(items, fields)
        session.subscriptions[sub_id] = sub
        _queue(session, f"SUBOK,{sub_id},{len(items)},{len(fields)}")
        if params.get("LS_snapshot", "false") == "true":
            for index, item in enumerate(items, start=1):
                market = self._price_market(item)
                if market is not None:
                    _queue(session, self._update(sub_id, sub, index, market))
        return f"REQOK,{req_id}"

    def _price_market(self, item: str) -> SimMarket | None:
        kind, _, rest = item.partition(":")
        account, _, epic = rest.partition(":")
        if kind != "PRICE" or account not in self._sim.accounts:
            return None
        return self._sim.markets.get(epic)

    def _refusal(self, items: list[str], fields: list[str], params: dict[str, str]) -> str:
        """Why IG would refuse this subscription ('' when it would not). Codes: assumption."""
        if not items or not fields:
            return "21,Invalid group or schema"
        trades = {f"TRADE:{account}" for account in self._sim.accounts}
        for item in items:
            if item.startswith("MARKET:"):
                return "21,MARKET items are no longer available; use PRICE"
            if item in trades:
                continue
            if params.get("LS_data_adapter") != "Pricing":
                return "17,Data adapter not found"
            if self._price_market(item) is None or not set(fields) <= PRICE_FIELDS:
                return "21,Invalid group or schema"
        return ""

    @staticmethod
    def _update(sub_id: str, sub: _Subscription, index: int, market: SimMarket) -> str:
        values = [field_value(market, name) for name in sub.fields]
        line = f"U,{sub_id},{index},{encode_values(sub.last.get(index), values)}"
        sub.last[index] = values
        return line


def _queue(session: _Session, line: str) -> None:
    # A full buffer drops the line: a MERGE stream may coalesce, the next update carries all.
    with contextlib.suppress(trio.WouldBlock):
        session.send.send_nowait(line)


async def _text(http: ServerConnection, text: str) -> None:
    await http.respond(200, (text + "\r\n").encode(), "text/plain; charset=UTF-8")
