"""Lightstreamer TLCP for IG's MARKET items, sans-IO: lines, values, times, state machines.

Pure functions and small state machines, unit tested without a socket: ``parse_line`` splits a
notification, ``apply_update`` decodes a MERGE value list (unchanged, null, empty, ``^N`` runs,
percent-encoding), ``update_time_to_utc`` dates IG's ``UPDATE_TIME``, ``MarketStreamProtocol``
turns notifications into events and ``StaleTracker`` tells which epics went quiet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from urllib.parse import quote, unquote

from traild.core.errors import BrokerError

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


class TLCPRefused(TLCPError):
    """CONERR: the server refused to create or bind the session (e.g. expired tokens)."""


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

    Subscription ids are 1, 2, ... in the order epics are added; item values survive a rebind
    (the server continues the same MERGE stream) but not a new session (fresh snapshots).
    """

    def __init__(self, epics: Sequence[str]) -> None:
        self._epics: dict[str, str] = {}
        self._requests: dict[str, str] = {}  # LS_reqId -> epic
        self._values: dict[str, Values] = {}
        self._pending: list[str] = []
        for epic in epics:
            self.add(epic)

    def epics(self) -> list[str]:
        return list(self._epics.values())

    def add(self, epic: str) -> str:
        """Allocate the subscription id of ``epic`` (sent with the next ``subscribe_body``)."""
        sub_id = str(len(self._epics) + 1)
        self._epics[sub_id] = epic
        self._pending.append(sub_id)
        return sub_id

    def subscribe_body(self) -> str:
        """The ``control.txt`` body adding every subscription not requested yet, one a line."""
        lines = []
        for sub_id in self._pending:
            request_id = str(len(self._requests) + 1)
            self._requests[request_id] = self._epics[sub_id]
            params = {
                "LS_reqId": request_id,
                "LS_op": "add",
                "LS_subId": sub_id,
                "LS_group": f"MARKET:{self._epics[sub_id]}",
                "LS_schema": " ".join(FIELDS),
                "LS_mode": "MERGE",
                "LS_snapshot": "true",
            }
            lines.append(encode_params(params))
        self._pending = []
        return "\r\n".join(lines)

    def epic_of_request(self, request_id: str) -> str | None:
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
            epic = self._epics.get(args[0])
            return Subscribed(epic) if epic else None
        if tag == "LOOP":
            return Rebind()
        if tag in ("CONERR", "END", "ERROR"):
            code = args[0] if args else "?"
            message = args[1] if len(args) > 1 else ""
            kind = TLCPRefused if tag == "CONERR" else TLCPError
            raise kind(f"lightstreamer {tag} {code}: {message}")
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
