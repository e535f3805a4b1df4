"""Lightstreamer TLCP as IG speaks it, sans-IO: lines, MERGE values, subscriptions, CONERR codes.

Pure functions and small state machines, unit tested without a socket: ``parse_line`` splits a
notification, ``apply_update`` decodes a value list (unchanged, null, empty, ``^N`` runs,
percent-encoding), ``StreamProtocol`` turns notifications into events for any set of
subscriptions (IG's ``PRICE:{accountId}:{epic}`` items and ``TRADE:{accountId}``),
and ``refusal`` names a CONERR. IG's PRICE items (fields, dealing states, ``price_of``,
``StaleTracker``) are in ``prices``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from traild.core.errors import BrokerConfigRefused, BrokerError

# IG's Lightstreamer answers TLCP-2.5.0 with CONERR 65 (Lightstreamer-lib-client-haxe issues
# #5/#6, bennycode/ig-trading-api PR #514; trading-ig pins lightstreamer-client-lib 1.0.3,
# which speaks 2.4.0 "to match IG's install"): 2.4.0 is the default, a setting can change it.
DEFAULT_TLCP_VERSION = "2.4.0"
# The client id the TLCP specification prescribes for custom clients (decoded form).
LS_CID = "mgQkwtwdysogQz2BJ4Ji kOj2Bg"
TRADE_FIELDS = ("CONFIRMS", "OPU", "WOU")
# CONERR codes (TLCP 2.4.0 specification, "CONERR" table; the same list in Lightstreamer's
# client SDKs, ClientListener.onServerError): 1 = user/password check failed (IG: expired or
# invalid CST/XST), the only one a fresh IG login can cure; 2 = adapter set not available,
# 11 = streaming not available by licence, 60 = client version not allowed, 65 = syntax error
# or invalid values (IG answers it to TLCP-2.5.0), 71 = client type not allowed: what traild
# asks for is refused and no retry cures it; 7-10 = the server's session or load limits;
# <= 0 = the Metadata Adapter (IG's own rules, e.g. per-user limits) refused the session.
AUTH_CONERR = frozenset({1})
CONFIG_CONERR = frozenset({2, 11, 60, 65, 71})
# END 35: "the Metadata Adapter imposes limits on the overall open sessions for the current
# user and has requested the closure of the current session upon opening of a new session for
# the same user" (Lightstreamer ClientListener.onServerError, codes 30-41).
DISPLACED_END = 35
# IG: "up to 40 simultaneous subscriptions per connection"; connecting more than once is "a
# breach of IG's terms and conditions" (IG streaming API guide, labs.ig.com/streaming-api-guide).
MAX_SUBSCRIPTIONS = 40
# How many comma-separated arguments a tag has at most (the last one may contain commas).
_MAX_ARGS = {"U": 3, "CONERR": 2, "END": 2, "ERROR": 2, "REQERR": 3, "SERVNAME": 1}


class TLCPError(BrokerError):
    """The stream broke the protocol or the server ended the session."""


class TLCPRefused(TLCPError):
    """CONERR: the server refused to create or bind the session; ``code`` says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"lightstreamer CONERR {code}: {message}")
        self.code = code
        self.server_message = message

    @property
    def needs_login(self) -> bool:
        return self.code in AUTH_CONERR

    @property
    def by_ig(self) -> bool:
        """Refused by IG's Metadata Adapter (code <= 0): IG's own limits, e.g. per user."""
        return self.code <= 0


class TLCPUnsupported(TLCPRefused, BrokerConfigRefused):
    """CONERR 2/11/60/65/71: the server refuses what traild asks for (the protocol version,
    most often); no retry cures it, the configuration must change."""

    def __init__(self, code: int, message: str, version: str = "") -> None:
        super().__init__(code, message)
        asked = f" {version}" if version else ""
        self.args = (
            f"IG Lightstreamer refused the session: CONERR {code} ({message}); the TLCP "
            f"version{asked} is the usual cause: set broker.ig.tlcp_version (IG speaks 2.4.0)",
        )


class TLCPEnded(TLCPError):
    """END: the server closed the session; ``code`` says why (35: another session for the
    same user took its place)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"lightstreamer END {code}: {message}")
        self.code = code

    @property
    def displaced(self) -> bool:
        return self.code == DISPLACED_END


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


# -- sans-IO: the subscription state machine -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscription:
    """One TLCP subscription: an item, its fields, the mode and (IG PRICE) the data adapter."""

    key: str
    item: str
    fields: tuple[str, ...]
    mode: str = "MERGE"
    adapter: str | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    session_id: str
    keepalive_ms: int
    control_link: str | None


@dataclass(frozen=True, slots=True)
class Subscribed:
    key: str


@dataclass(frozen=True, slots=True)
class ItemUpdate:
    """The state of one subscribed item after a ``U`` line (``before``: None on the first)."""

    key: str
    values: Mapping[str, str | None]
    before: Mapping[str, str | None] | None


@dataclass(frozen=True, slots=True)
class Rebind:
    """``LOOP``: the stream ends by design; bind the same session to a new connection."""


StreamEvent = Connected | Subscribed | ItemUpdate | Rebind | None


class StreamProtocol:
    """Interprets the notifications of one Lightstreamer session.

    Subscription ids are 1, 2, ... in the order subscriptions are added; item values survive a
    rebind (the server continues the same stream) but not a new session (fresh snapshots).
    """

    def __init__(self, subscriptions: Iterable[Subscription] = ()) -> None:
        self._subs: dict[str, Subscription] = {}
        self._requests: dict[str, str] = {}  # LS_reqId -> subscription key
        self._values: dict[str, tuple[str | None, ...]] = {}
        self._pending: list[str] = []
        for sub in subscriptions:
            self.add(sub)

    def keys(self) -> list[str]:
        return [sub.key for sub in self._subs.values()]

    def add(self, sub: Subscription) -> str:
        """Allocate the subscription id of ``sub`` (sent with the next ``subscribe_body``)."""
        sub_id = str(len(self._subs) + 1)
        self._subs[sub_id] = sub
        self._pending.append(sub_id)
        return sub_id

    def subscribe_body(self) -> str:
        """The ``control.txt`` body adding every subscription not requested yet, one a line."""
        lines = []
        for sub_id in self._pending:
            sub = self._subs[sub_id]
            request_id = str(len(self._requests) + 1)
            self._requests[request_id] = sub.key
            params = {
                "LS_reqId": request_id,
                "LS_op": "add",
                "LS_subId": sub_id,
                "LS_group": sub.item,
                "LS_schema": " ".join(sub.fields),
                "LS_mode": sub.mode,
                "LS_snapshot": "true",
            }
            if sub.adapter:
                params["LS_data_adapter"] = sub.adapter
            lines.append(encode_params(params))
        self._pending = []
        return "\r\n".join(lines)

    def key_of_request(self, request_id: str) -> str | None:
        return self._requests.get(request_id)

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
            sub = self._subs.get(args[0])
            return Subscribed(sub.key) if sub else None
        if tag == "LOOP":
            return Rebind()
        if tag == "CONERR":
            raise refusal(args)
        if tag == "END":
            raise TLCPEnded(_code(args), args[1] if len(args) > 1 else "")
        if tag == "ERROR":
            code = args[0] if args else "?"
            message = args[1] if len(args) > 1 else ""
            raise TLCPError(f"lightstreamer {tag} {code}: {message}")
        return None  # PROBE, SYNC, NOOP, CONS, SERVNAME, CLIENTIP, PROG, EOS, CS, ...

    def _update(self, args: tuple[str, ...]) -> ItemUpdate | None:
        if len(args) != 3:
            raise TLCPError("malformed U line")
        sub_id, _item, raw = args
        sub = self._subs.get(sub_id)
        if sub is None:
            return None
        previous = self._values.get(sub_id)
        # DISTINCT items are events: an empty token repeats the previous event's value.
        after = apply_update(previous, raw, len(sub.fields))
        self._values[sub_id] = after
        before = None if previous is None else dict(zip(sub.fields, previous, strict=True))
        return ItemUpdate(sub.key, dict(zip(sub.fields, after, strict=True)), before)


def _code(args: tuple[str, ...]) -> int:
    try:
        return int(args[0]) if args else 0
    except ValueError:
        return 0


def refusal(args: tuple[str, ...]) -> TLCPRefused:
    """The exception for a ``CONERR,<code>,<message>`` line, by code."""
    code = _code(args)
    message = args[1] if len(args) > 1 else ""
    if code in CONFIG_CONERR:
        return TLCPUnsupported(code, message)
    return TLCPRefused(code, message)
