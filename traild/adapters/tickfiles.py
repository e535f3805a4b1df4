"""Tick files -> numpy columns, fast, with malformed rows reported by file and line.

Formats, told apart by the header (or, without one, by the first timestamp):

* ``ts_utc,bid,ask`` — ISO-8601 UTC (``Z``, an offset, or naive = UTC); traild's own format.
* HistData tick CSV, no header: ``YYYYMMDD HHMMSSfff,bid,ask,vol`` in EST without daylight
  saving (UTC-5 all year, as HistData documents it); converted to UTC.
* Dukascopy exports: ``Gmt time,Ask,Bid,...`` (``DD.MM.YYYY HH:MM:SS.fff``, UTC) and
  ``timestamp,askPrice,bidPrice,...`` (epoch milliseconds).

Plain or gzip'd (detected by magic bytes). The fast path parses whole columns with numpy; only
when that fails does a row-by-row pass run, to name the first bad line. Prices are not
filtered: NaN, zero or crossed quotes pass through for the runtime's tick guard to count.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from traild.adapters import tickcache
from traild.adapters.tickcache import open_cache
from traild.core.conditions import GuardParams, TickGuard
from traild.core.errors import DataError, InstrumentError
from traild.core.instruments import symbol_of
from traild.core.messages import Tick

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HISTDATA_UTC_OFFSET_MS = 5 * 3_600_000  # HistData quotes EST with no DST: UTC = EST + 5 h

TimeArray = NDArray[np.datetime64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class TickColumns:
    """A tick file as columns: ``ts`` datetime64[ms] (UTC), ``bid`` and ``ask`` float64."""

    ts: TimeArray
    bid: FloatArray
    ask: FloatArray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def ts_ms(self) -> NDArray[np.int64]:
        """Timestamps as int64 milliseconds since the Unix epoch (a view, no copy)."""
        return self.ts.view(np.int64)

    def ticks(self, epic: str, start: int = 0, stop: int | None = None) -> Iterator[Tick]:
        """Rows ``start:stop`` as traild Ticks of ``epic``."""
        return iter_ticks(self, epic, start, stop)


def empty_columns() -> TickColumns:
    return TickColumns(
        np.empty(0, dtype="datetime64[ms]"), np.empty(0, np.float64), np.empty(0, np.float64)
    )


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds -> aware UTC datetime (exact: no float seconds involved)."""
    return EPOCH + timedelta(milliseconds=ms)


def iter_ticks(
    columns: TickColumns, epic: str, start: int = 0, stop: int | None = None
) -> Iterator[Tick]:
    """Yield rows ``start:stop`` of ``columns`` as Ticks of ``epic``."""
    ms = columns.ts_ms[start:stop].tolist()
    bids = columns.bid[start:stop].tolist()
    asks = columns.ask[start:stop].tolist()
    for m, b, a in zip(ms, bids, asks, strict=True):
        yield Tick(epic, EPOCH + timedelta(milliseconds=m), b, a)


def epic_from_filename(path: str | os.PathLike[str]) -> str:
    """The currency pair that starts a file name: ``GBPJPY_dukascopy_....csv.gz`` -> GBPJPY."""
    name = Path(path).name
    token = re.split(r"[^A-Za-z]", name, maxsplit=1)[0].upper()
    with contextlib.suppress(InstrumentError):
        if len(token) == 6 and symbol_of(token) == token:
            return token
    raise DataError(
        f"{name}: the file name does not start with a currency pair; give the epic explicitly"
    )


# -- timestamp flavours -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Flavour:
    """One timestamp format: a per-row parser (ValueError on bad text) and a column parser."""

    name: str
    row: Callable[[str], int]
    column: Callable[[list[bytes]], NDArray[np.int64]]


def _iso_row(text: str) -> int:
    if len(text) < 19 or text[10] not in "Tt ":
        raise ValueError("not an ISO-8601 date and time")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)  # a ts_utc column without an offset is UTC by name
    return (dt - EPOCH) // _MS


def _iso_column(values: list[bytes]) -> NDArray[np.int64]:
    """ISO timestamps whose ``Z`` was already removed (see ``_strip_utc_designator``)."""
    arr = np.array(values)  # fixed-width bytes, NUL-padded
    chars = arr.view("S1").reshape(len(values), arr.dtype.itemsize)
    if arr.dtype.itemsize < 19 or (chars[:, 18] == b"").any():
        raise ValueError("short timestamp")  # numpy would read "2014" or "now" as a date
    tail = chars[:, 19:]
    if ((tail == b"+") | (tail == b"-")).any():
        raise ValueError("UTC offset")  # numpy would only warn; the row pass converts them
    out = arr.astype("datetime64[ms]")
    if np.isnat(out).any():
        raise ValueError("NaT")
    return out.view(np.int64)


def _chars(values: list[bytes], width: int, separators: dict[int, bytes]) -> NDArray[np.bytes_]:
    """Fixed-width values as an (n, width) matrix of characters; separators must be in place."""
    if min(map(len, values), default=width) != width or max(map(len, values), default=0) > width:
        raise ValueError("timestamp width differs")
    chars = np.array(values, dtype=f"S{width}").view("S1").reshape(len(values), width)
    for pos, char in separators.items():
        if not (chars[:, pos] == char).all():
            raise ValueError("separator missing")
    return chars


def _iso_from(*fields: NDArray[np.bytes_]) -> NDArray[np.int64]:
    """Character columns year, month, day, hour, minute, second[, fraction] -> epoch ms."""
    n = fields[0].shape[0]
    parts: list[NDArray[np.bytes_]] = []
    for sep, field in zip((b"", b"-", b"-", b"T", b":", b":", b"."), fields, strict=False):
        if sep:
            parts.append(np.full((n, 1), sep, "S1"))
        parts.append(field)
    iso = np.ascontiguousarray(np.hstack(parts))
    out = iso.view(f"S{iso.shape[1]}").ravel().astype("datetime64[ms]")
    if np.isnat(out).any():
        raise ValueError("NaT")
    return out.view(np.int64)


def _histdata_row(text: str) -> int:
    dt = datetime.strptime(text, "%Y%m%d %H%M%S%f").replace(tzinfo=UTC)
    return (dt - EPOCH) // _MS + _HISTDATA_UTC_OFFSET_MS


def _histdata_column(values: list[bytes]) -> NDArray[np.int64]:
    c = _chars(values, 18, {8: b" "})  # YYYYMMDD HHMMSSfff
    ms = _iso_from(c[:, 0:4], c[:, 4:6], c[:, 6:8], c[:, 9:11], c[:, 11:13], c[:, 13:15], c[:, 15:])
    return ms + _HISTDATA_UTC_OFFSET_MS


def _dukascopy_row(text: str) -> int:
    fmt = "%d.%m.%Y %H:%M:%S.%f" if "." in text[11:] else "%d.%m.%Y %H:%M:%S"
    dt = datetime.strptime(text, fmt).replace(tzinfo=UTC)
    return (dt - EPOCH) // _MS


def _dukascopy_column(values: list[bytes]) -> NDArray[np.int64]:
    width = len(values[0])  # DD.MM.YYYY HH:MM:SS[.fff]
    c = _chars(values, width, {2: b".", 5: b".", 10: b" ", 13: b":", 16: b":"})
    date_time = (c[:, 6:10], c[:, 3:5], c[:, 0:2], c[:, 11:13], c[:, 14:16], c[:, 17:19])
    return _iso_from(*date_time, c[:, 20:]) if width > 20 else _iso_from(*date_time)


def _epoch_flavour(scale: int) -> _Flavour:
    def row(text: str) -> int:
        if not text.strip().isdigit():
            raise ValueError("not an integer epoch timestamp")
        return int(text) * scale

    def column(values: list[bytes]) -> NDArray[np.int64]:
        return np.array(values, dtype=np.int64) * scale

    return _Flavour(f"epoch x{scale}", row, column)


_ISO = _Flavour("ISO-8601", _iso_row, _iso_column)
_HISTDATA = _Flavour("HistData", _histdata_row, _histdata_column)
_DUKASCOPY = _Flavour("Dukascopy", _dukascopy_row, _dukascopy_column)
_PATTERNS: list[tuple[re.Pattern[str], _Flavour]] = [
    (re.compile(r"\d{8} \d{9}"), _HISTDATA),
    (re.compile(r"\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}:\d{2}(\.\d{1,3})?"), _DUKASCOPY),
    (re.compile(r"\d{12,13}"), _epoch_flavour(1)),
    (re.compile(r"\d{9,10}"), _epoch_flavour(1000)),
    (re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}.*"), _ISO),
]


def _flavour_of(value: str) -> _Flavour | None:
    for pattern, flavour in _PATTERNS:
        if pattern.fullmatch(value.strip()):
            return flavour
    return None


# -- layout and loading --------------------------------------------------------------------

_TS_NAMES = {"ts_utc", "ts", "timestamp", "time", "gmt time", "datetime", "date_time", "utc"}
_BID_NAMES = {"bid", "bidprice", "bid_price"}
_ASK_NAMES = {"ask", "askprice", "ask_price"}


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the columns are. ``flavour`` None: decided from the first data row."""

    header: bool
    ncols: int
    ts: int
    bid: int
    ask: int
    flavour: _Flavour | None


def load_ticks(path: str | os.PathLike[str], *, cache: bool = True) -> TickColumns:
    """Read a tick file (plain or gzip'd CSV) into columns; raises DataError on bad input.

    A file read before is not parsed again: its columns come from the tick cache
    (``traild.adapters.tickcache``, keyed by the file's bytes); ``cache=False`` bypasses it."""
    p = Path(path)
    data = _read_file(p)
    store = open_cache(cache)
    key = store.key(data) if store is not None else ""
    if store is not None:
        hit = store.get(key)
        if hit is not None:
            return TickColumns(*hit)
    raw = _decompress(data, p)
    columns = _parse(raw, p)
    if store is not None and len(raw) >= tickcache.MIN_TEXT_BYTES:
        store.put(key, columns.ts, columns.bid, columns.ask)
    return columns


def _parse(raw: bytes, p: Path) -> TickColumns:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    raw = raw.rstrip()
    if not raw:
        raise DataError(f"{p.name}: empty tick file")
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    nl = raw.find(b"\n")
    layout = _detect(raw if nl < 0 else raw[:nl], p.name)
    body = raw
    if layout.header:
        body = raw[nl + 1 :] if nl >= 0 else b""
    first_line = 2 if layout.header else 1
    if not body:
        return empty_columns()
    flavour = layout.flavour or _data_flavour(body, layout, p.name, first_line)
    text = _strip_utc_designator(body) if flavour is _ISO else body
    flat = text.replace(b"\n", b",").split(b",")
    k = layout.ncols
    try:
        # A row with a wrong field count either changes the total or shifts a price into the
        # timestamp column further on; both fail here and the row pass names the line.
        if len(flat) != (body.count(b"\n") + 1) * k:
            raise ValueError("field count")
        ms = flavour.column(flat[layout.ts :: k])
        bid = np.array(flat[layout.bid :: k], dtype=np.float64)
        ask = np.array(flat[layout.ask :: k], dtype=np.float64)
    except (ValueError, OverflowError):
        ms, bid, ask = _parse_rows(body, layout, flavour, p.name, first_line)
    _check_order(ms, p.name)
    return TickColumns(ms.view("datetime64[ms]"), bid, ask)


def _check_order(ms: NDArray[np.int64], name: str) -> None:
    """A file whose times mostly go backwards is in reverse order: an error, not a trade."""
    if ms.size < 3:
        return
    steps = np.diff(ms.astype(np.int64))
    backwards = int(np.count_nonzero(steps < 0))
    if backwards * 2 > steps.size:
        raise DataError(
            f"{name}: {backwards} of {steps.size} timestamps go backwards: the ticks are in "
            "reverse (newest-first) order; sort the file by time, oldest first"
        )


def _all_accepted(columns: TickColumns, p: GuardParams) -> bool:
    """True when ``TickGuard(p)`` accepts every row: prices finite and positive, times in
    order without a gap above ``max_gap_s``, no exact duplicate, and no mid move above the spike
    floor (the guard's allowance is never below it). Vectorised: exact, not an estimate."""
    ms, bid, ask = columns.ts_ms, columns.bid, columns.ask
    with np.errstate(invalid="ignore"):
        if not (np.isfinite(bid).all() and np.isfinite(ask).all()):
            return False
        if not ((bid > 0).all() and (ask > 0).all()):
            return False
    step = np.diff(ms)
    if (step < 0).any() or (step > p.max_gap_s * 1000).any():
        return False
    if (np.abs(np.diff((bid + ask) / 2.0)) > p.spike_floor).any():
        return False
    return not ((step == 0) & (bid[1:] == bid[:-1]) & (ask[1:] == ask[:-1])).any()


def guard_columns(
    columns: TickColumns, guard: TickGuard
) -> tuple[NDArray[np.bool_], dict[str, int]]:
    """The rows ``guard`` accepts (fed in file order) and its rejections by reason.

    Exact, and column-wise where it can be: a tick that passes against the tick before it
    whatever the guard's state (``_plain_steps``), when that tick was accepted, is accepted;
    such stretches go to the guard at once (``TickGuard.accept_steps``), and only the other
    ticks are checked one by one (a file with one duplicate tick is not walked tick by tick)."""
    if _all_accepted(columns, guard.p):  # the usual clean file: no need to walk it
        return np.ones(len(columns), dtype=np.bool_), {}
    n = len(columns)
    ms, bid, ask = columns.ts_ms, columns.bid, columns.ask
    plain = _plain_steps(columns, guard.p)
    others = np.flatnonzero(~plain).tolist()  # tick 0 is one: it has no tick before it
    if len(others) * 4 > n:  # mostly odd ticks: the plain walk is quicker
        return _walk(columns, guard)
    mids = (bid + ask) / 2.0
    keep = np.zeros(n, dtype=np.bool_)
    check = guard.check_ms
    i, k = 0, 0  # k: the first of ``others`` at or after i
    while i < n:
        while k < len(others) and others[k] < i:
            k += 1
        if i and keep[i - 1] and plain[i]:  # a stretch of plain ticks up to the next other one
            j = others[k] if k < len(others) else n
            guard.accept_steps(
                np.abs(mids[i:j] - mids[i - 1 : j - 1]).tolist(),
                int(ms[j - 1]),
                float(mids[j - 1]),
                (float(bid[j - 1]), float(ask[j - 1])),
                int(np.count_nonzero(bid[i:j] > ask[i:j])),
            )
            keep[i:j] = True
            i = j
        else:
            keep[i] = check(int(ms[i]), float(bid[i]), float(ask[i])) is None
            i += 1
    return keep, dict(guard.by_reason)


def _walk(columns: TickColumns, guard: TickGuard) -> tuple[NDArray[np.bool_], dict[str, int]]:
    """Every tick through ``guard.check_ms``, one by one."""
    ms = columns.ts_ms.astype(np.int64).tolist()
    check = guard.check_ms
    keep = [
        check(m, b, a) is None
        for m, b, a in zip(ms, columns.bid.tolist(), columns.ask.tolist(), strict=True)
    ]
    return np.array(keep, dtype=np.bool_), dict(guard.by_reason)


def _plain_steps(columns: TickColumns, p: GuardParams) -> NDArray[np.bool_]:
    """Per tick: True when it passes the guard against the tick before it as the last
    accepted one, whatever else the guard has seen: finite positive prices, a time step from 0
    to ``max_gap_s`` (a millisecond to spare), a mid move within the smallest allowance, and
    not the same time and quote. False for the first tick."""
    ms, bid, ask = columns.ts_ms, columns.bid, columns.ask
    out = np.zeros(len(columns), dtype=np.bool_)
    if len(columns) < 2:
        return out
    with np.errstate(invalid="ignore"):
        good = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > 0)
        step = np.diff(ms)
        move = np.abs(np.diff((bid + ask) / 2.0))
        same = (step == 0) & (bid[1:] == bid[:-1]) & (ask[1:] == ask[:-1])
        out[1:] = (
            good[1:]
            & (step >= 0)
            & (step < p.max_gap_s * 1000 - 1)
            & (move <= min(p.spike_floor, p.max_jump))
            & ~same
        )
    return out


def _strip_utc_designator(body: bytes) -> bytes:
    """Drop the ``Z`` of ISO timestamps in one pass over the text (no price contains a Z)."""
    body = body.replace(b"Z,", b",").replace(b"Z\n", b"\n")
    return body[:-1] if body.endswith(b"Z") else body


def _read_file(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read tick file: {exc.strerror or exc}") from None


def _decompress(data: bytes, p: Path) -> bytes:
    try:
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except OSError as exc:  # gzip.BadGzipFile
        raise DataError(f"{p}: cannot read tick file: {exc.strerror or exc}") from None
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{p}: corrupt gzip data: {exc}") from None


def _detect(first: bytes, name: str) -> _Layout:
    text = first.decode("utf-8", "replace")
    fields = [f.strip().strip('"').lower() for f in text.split(",")]
    flavour = _flavour_of(fields[0])
    if flavour is not None:
        if len(fields) < 3:
            raise _row_error(name, 1, "expected at least time,bid,ask", first)
        return _Layout(False, len(fields), 0, 1, 2, flavour)
    columns = [_index(fields, names) for names in (_TS_NAMES, _BID_NAMES, _ASK_NAMES)]
    ts, bid, ask = columns
    if ts is None or bid is None or ask is None:
        raise _row_error(name, 1, "unrecognised header (need a time, bid and ask column)", first)
    return _Layout(True, len(fields), ts, bid, ask, None)


def _index(fields: list[str], names: set[str]) -> int | None:
    return next((i for i, f in enumerate(fields) if f in names), None)


def _data_flavour(body: bytes, layout: _Layout, name: str, first_line: int) -> _Flavour:
    line = body.split(b"\n", 1)[0]
    fields = line.split(b",")
    value = fields[layout.ts].decode("utf-8", "replace") if layout.ts < len(fields) else ""
    flavour = _flavour_of(value)
    if flavour is None:
        raise _row_error(name, first_line, "unrecognised timestamp format", line)
    return flavour


def _parse_rows(
    body: bytes, layout: _Layout, flavour: _Flavour, name: str, first_line: int
) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
    """Row by row: slow, but names the first line that does not parse."""
    lines = body.split(b"\n")
    ms = np.empty(len(lines), np.int64)
    bid = np.empty(len(lines), np.float64)
    ask = np.empty(len(lines), np.float64)
    for i, line in enumerate(lines):
        fields = line.split(b",")
        if len(fields) != layout.ncols:
            problem = f"expected {layout.ncols} fields, found {len(fields)}"
            raise _row_error(name, first_line + i, problem, line)
        what = f"timestamp ({flavour.name})"
        try:
            ms[i] = flavour.row(fields[layout.ts].decode("utf-8").strip())
            what = "bid"
            bid[i] = float(fields[layout.bid])
            what = "ask"
            ask[i] = float(fields[layout.ask])
        except (ValueError, OverflowError):
            raise _row_error(name, first_line + i, f"cannot parse the {what}", line) from None
    return ms, bid, ask


def _row_error(name: str, line_no: int, problem: str, line: bytes) -> DataError:
    text = line.decode("utf-8", "replace")
    if len(text) > 160:
        text = text[:160] + "..."
    return DataError(f"{name}:{line_no}: {problem}: {text!r}")
