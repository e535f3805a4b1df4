"""M1 OHLC bars as a backtest market (``--bars FILE[=EPIC]``, SPEC §8).

Bars are bid bars (``ts_utc,open,high,low,close``, ts = the bar's open time, as in
``../shared/data/fx/bars_m1``); the ask is a paired ask-bar file or bid + a fixed spread. Each
bar becomes four points 15 s apart that the unchanged trailing core walks like ticks, in the
pessimistic order for each side: the BUY side (bids) open -> low -> high -> close, the SELL side
(asks) open -> high -> low -> close. So a stop inside the bar is hit before the bar's best price
can raise it, and a take-profit only counts after that. Entries fill at a bar's open point only.
A stop or take-profit reached inside a bar fills at its level (``inside_bar_fill``); only a
bar's open can gap through it.
The two sides of one point are not one quote (a BUY never reads the ask after its entry, a SELL
never the bid), so crossed points are expected and not counted.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from traild.backtest.kernel import PathResult
from traild.backtest.markets import Floats, Ints, Market, TickSource
from traild.core.errors import DataError
from traild.core.instruments import InstrumentTable

POINT_MS = 15_000  # the four points of a bar at +0, +15, +30, +45 s
_COLUMNS = ("ts_utc", "open", "high", "low", "close")
BUY_ORDER = [0, 2, 1, 3]  # open, low, high, close (columns of the [n, 4] OHLC array)
SELL_ORDER = [0, 1, 2, 3]  # open, high, low, close


def read_bars(path: Path) -> tuple[Ints, Floats]:
    """(bar open times in epoch ms, [n, 4] open/high/low/close); DataError names the line."""
    try:
        data = path.read_bytes()
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except OSError as exc:
        raise DataError(f"{path}: cannot read bar file: {exc.strerror or exc}") from None
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data: {exc}") from None
    text = raw.decode("utf-8-sig", "replace").replace("\r\n", "\n").strip()
    head, _, body = text.partition("\n")
    header = [h.strip().lower() for h in head.split(",")]
    if header != list(_COLUMNS):
        raise DataError(f"{path.name}:1: bar file header must be {','.join(_COLUMNS)}")
    if not body.strip():
        raise DataError(f"{path.name}: no bars")
    flat = body.replace("Z,", ",").replace("\n", ",").split(",")
    try:  # whole columns at once; a bad row (field count, text) fails here
        if len(flat) != (body.count("\n") + 1) * 5:
            raise ValueError("field count")
        ts = np.array(flat[0::5], dtype="datetime64[ms]")
        ohlc = np.array(flat[1::5] + flat[2::5] + flat[3::5] + flat[4::5], dtype=np.float64)
        ohlc = np.ascontiguousarray(ohlc.reshape(4, -1).T)
    except ValueError:
        raise _first_bad(path, [line.split(",") for line in body.split("\n")]) from None
    ms = ts.astype(np.int64)
    o, h, lo, c = ohlc.T
    bad = ~np.isfinite(ohlc).all(1) | (ohlc <= 0).any(1) | (h < lo)
    bad |= (o > h) | (o < lo) | (c > h) | (c < lo)
    bad[1:] |= ms[1:] <= ms[:-1]
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 2
        raise DataError(f"{path.name}:{line}: bad bar (order, prices or high < low)")
    return ms, ohlc


def _first_bad(path: Path, rows: list[list[str]]) -> DataError:
    for i, r in enumerate(rows):
        try:
            if len(r) < 5:
                raise ValueError("fields")
            np.datetime64(r[0].strip().rstrip("Z"), "ms")
            [float(x) for x in r[1:5]]
        except ValueError:
            return DataError(f"{path.name}:{i + 2}: not a bar: {','.join(r)[:80]!r}")
    return DataError(f"{path.name}: unreadable bar file")


def load_bar_market(
    source: TickSource,
    table: InstrumentTable,
    spread_pips: float,
    ask_path: Path | None = None,
) -> Market:
    """A market of four points per bar (see the module docstring)."""
    inst = table.resolve(source.epic)
    if not source.path.is_file():
        raise DataError(f"bar file not found: {source.path}")
    ms, bid = read_bars(source.path)
    rejected = 0
    if ask_path is None:
        ask = bid + spread_pips * float(inst.pip_size)
    else:
        ask_ms, ask_all = read_bars(ask_path)
        both, i, j = np.intersect1d(ms, ask_ms, assume_unique=True, return_indices=True)
        if both.size == 0:
            raise DataError(f"{ask_path.name}: no bar at the times of {source.path.name}")
        rejected = int(ms.size + ask_ms.size - 2 * both.size)  # bars without a partner
        ms, bid, ask = both, bid[i], ask_all[j]
    n = ms.size
    inv_tick = float(1 / inst.tick_size)
    bid_px = np.ascontiguousarray(bid[:, BUY_ORDER].ravel())
    ask_px = np.ascontiguousarray(ask[:, SELL_ORDER].ravel())
    mid = ((bid[:, BUY_ORDER] + ask[:, BUY_ORDER]) / 2.0).ravel()
    points = (ms[:, None] + POINT_MS * np.arange(4, dtype=np.int64)).ravel()
    return Market(
        source=source,
        instrument=inst,
        ts_ms=points,
        bid_px=bid_px,
        ask_px=ask_px,
        bid=np.rint(bid_px * inv_tick).astype(np.int64),
        ask=np.rint(ask_px * inv_tick).astype(np.int64),
        rejected=rejected,
        crossed=int(np.count_nonzero((ask < bid).any(1))),
        entry_points=np.arange(0, 4 * n, 4, dtype=np.int64),
        mid=mid,
        kind="bars",
    )


def inside_bar_fill(result: PathResult, limit: int | None) -> PathResult:
    """Bars: a stop or take-profit reached inside a bar fills at its level.

    The core fills at the point's price when the point is beyond the level (a gap), which is
    right for ticks. Inside a bar the price moved continuously from one point to the next, so
    it traded at the level: only a bar's open can gap past it (and keeps the core's fill).
    """
    if result.exit_idx % 4 == 0 or result.exit_reason not in ("stop", "limit"):
        return result
    level = result.exit_stop if result.exit_reason == "stop" else limit
    if level is None or not result.gap:
        return result
    return replace(result, exit_price=level, gap=False)
