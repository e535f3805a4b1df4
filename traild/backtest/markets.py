"""Tick files as backtest markets: accepted ticks as integer-tick columns, plus entry conditions.

A market is one tick file of one epic. Ticks go through the same acceptance rules as the
runtime's ``TickGuard`` (``Settings.guard_params``: bad prices and timestamps, duplicates and
spikes are rejected and counted by reason; crossed quotes are accepted and counted). Prices
become integer ticks exactly the way ``Instrument.to_ticks`` does it (round half to even of
``price / tick``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from traild.adapters.tickfiles import (
    epic_from_filename,
    guard_columns,
    load_ticks,
    ms_to_datetime,
)
from traild.backtest.kernel import CrossingIndex, both_sides
from traild.core.calculator import MarketConditions
from traild.core.conditions import BarHistory, ConditionParams, GuardParams, TickGuard
from traild.core.errors import DataError
from traild.core.instruments import Instrument, InstrumentTable

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TickSource:
    """A tick file and the epic its prices belong to."""

    path: Path
    epic: str

    @classmethod
    def parse(cls, text: str) -> TickSource:
        """``PATH=EPIC``, or a path whose file name starts with the currency pair."""
        if not Path(text).exists():
            path, sep, epic = text.rpartition("=")
            if sep and path:
                if not epic.strip():
                    raise DataError(f"--ticks {text!r}: empty epic after '='")
                return cls(Path(path), epic.strip())
        return cls(Path(text), epic_from_filename(text))


@dataclass(eq=False)
class Market:
    """The accepted ticks of one file: epoch-ms times, float prices and integer ticks."""

    source: TickSource
    instrument: Instrument
    ts_ms: Ints
    bid_px: Floats
    ask_px: Floats
    bid: Ints
    ask: Ints
    rejected: int
    crossed: int
    rejected_by: dict[str, int] = field(default_factory=dict)
    # Bars (``traild.backtest.bars``): entries fill only at a bar's open point, and conditions
    # come from the bars' mid prices; a tick market has neither (every tick, and bid/ask mid).
    entry_points: Ints | None = None
    mid: Floats | None = None
    kind: str = "ticks"
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def epic(self) -> str:
        return self.source.epic

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def mid_px(self) -> Floats:
        """The mid price of every point (what bars and conditions are built from)."""
        if self.mid is not None:
            return self.mid
        mid: Floats = (self.bid_px + self.ask_px) / 2.0
        return mid

    def entry_index(self, ts_ms: int) -> int:
        """The first point at/after ``ts_ms`` where an entry can fill (len(self) if none)."""
        if self.entry_points is None:
            return int(np.searchsorted(self.ts_ms, ts_ms, side="left"))
        times = self._cache.get("entry_ts")
        if times is None:
            times = self._cache["entry_ts"] = self.ts_ms[self.entry_points]
        assert isinstance(times, np.ndarray)
        pos = int(np.searchsorted(times, ts_ms, side="left"))
        return int(self.entry_points[pos]) if pos < self.entry_points.size else len(self)

    def last_entry_index(self) -> int:
        """The last point an entry can fill at that still has a point after it."""
        if self.entry_points is None:
            return max(len(self) - 2, 0)
        ok = self.entry_points[self.entry_points <= len(self) - 2]
        return int(ok[-1]) if ok.size else 0

    def both_sides(self) -> Ints:
        """Directional exit-side ticks of both directions (see ``kernel.both_sides``)."""
        hit = self._cache.get("x")
        if hit is None:
            hit = both_sides(self.bid, self.ask)
            self._cache["x"] = hit
        assert isinstance(hit, np.ndarray)
        return hit

    def index(self) -> CrossingIndex:
        """Block minima/maxima of ``both_sides()`` (built once, shared by every trade)."""
        hit = self._cache.get("index")
        if hit is None:
            hit = CrossingIndex(self.both_sides())
            self._cache["index"] = hit
        assert isinstance(hit, CrossingIndex)
        return hit

    def columns(self) -> tuple[memoryview, memoryview, memoryview]:
        """``(epoch_ms, bid_ticks, ask_ticks)`` for the event-driven core: views of the
        columns that index to plain integers, with nothing copied or built per tick."""
        return self.ts_ms.data, self.bid.data, self.ask.data


def load_market(
    source: TickSource,
    table: InstrumentTable,
    guard: Callable[[float], GuardParams] = GuardParams.for_pip,
    *,
    cache: bool = True,
) -> Market:
    """Read one tick file; raises DataError (unreadable, empty) or InstrumentError (epic).

    Ticks pass the same ``TickGuard`` as in ``simulate`` and the daemon (``guard``: its
    params for the instrument's pip size, e.g. ``Settings.guard_params``). ``cache``: use the
    parsed-tick cache (``traild.adapters.tickcache``).
    """
    instrument = table.resolve(source.epic)
    if not source.path.is_file():
        raise DataError(f"tick file not found: {source.path}")
    cols = load_ticks(source.path, cache=cache)
    ms = np.asarray(cols.ts_ms, dtype=np.int64)
    keep, rejected_by = guard_columns(cols, TickGuard(guard(float(instrument.pip_size))))
    if not keep.any():
        raise DataError(f"{source.path}: no usable ticks")
    bid_px = np.ascontiguousarray(cols.bid[keep])
    ask_px = np.ascontiguousarray(cols.ask[keep])
    inv_tick = float(1 / instrument.tick_size)  # the factor Instrument.to_ticks uses
    return Market(
        source=source,
        instrument=instrument,
        ts_ms=np.ascontiguousarray(ms[keep]),
        bid_px=bid_px,
        ask_px=ask_px,
        bid=np.rint(bid_px * inv_tick).astype(np.int64),
        ask=np.rint(ask_px * inv_tick).astype(np.int64),
        rejected=int(keep.size - np.count_nonzero(keep)),
        crossed=int(np.count_nonzero(bid_px > ask_px)),
        rejected_by=rejected_by,
    )


def entry_conditions(
    market: Market, entries: Sequence[int], params: ConditionParams
) -> dict[int, MarketConditions]:
    """Conditions of each entry tick as ``BarHistory`` sees them fed every earlier tick:
    exactly what the daemon and ``simulate`` would know at that moment, market regime included
    (the regime of the last closed bars, ``traild.core.regime.market_regime_of_bars``).

    Only the ticks that shape a bar are fed (each bar's first, highest, lowest and last mid),
    in time order: they give the same closed bars, at the same moments, as feeding all ticks.
    """
    history = BarHistory(float(market.instrument.pip_size), params)
    mid = market.mid_px()
    feed = bar_shaping_ticks(market.ts_ms, mid, params.bar_minutes)
    out: dict[int, MarketConditions] = {}
    j = 0
    for entry in sorted(set(entries)):
        while j < feed.size and feed[j] < entry:
            i = int(feed[j])
            history.add(ms_to_datetime(int(market.ts_ms[i])), float(mid[i]), float(mid[i]))
            j += 1
        out[entry] = history.conditions(market.epic, ms_to_datetime(int(market.ts_ms[entry])))
    return out


@dataclass(frozen=True, slots=True)
class MidBars:
    """Closed mid-price bars of a market: end time (epoch ms), high, low, close."""

    end_ms: Ints
    high: Floats
    low: Floats
    close: Floats


def mid_bars(market: Market, bar_minutes: int) -> MidBars:
    """The market's mid-price bars of ``bar_minutes`` (bars without a tick do not exist)."""
    cached = market._cache.get(f"bars{bar_minutes}")
    if isinstance(cached, MidBars):
        return cached
    mid = market.mid_px()
    feed = bar_shaping_ticks(market.ts_ms, mid, bar_minutes)
    period = bar_minutes * 60_000
    keys = market.ts_ms[feed] // period
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    x = mid[feed]
    bars = MidBars(
        (keys[starts] + 1) * period,
        np.maximum.reduceat(x, starts) if starts.size else x[:0],
        np.minimum.reduceat(x, starts) if starts.size else x[:0],
        x[np.concatenate((starts[1:], [feed.size])) - 1] if starts.size else x[:0],
    )
    market._cache[f"bars{bar_minutes}"] = bars
    return bars


def bar_shaping_ticks(ts_ms: Ints, mid: Floats, bar_minutes: int) -> Ints:
    """Sorted indices of each bar's first tick, first highest mid, first lowest mid, last tick."""
    n = ts_ms.size
    if n == 0:
        return np.empty(0, np.int64)
    keys = ts_ms // 1000 // (bar_minutes * 60)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    ends = np.concatenate((starts[1:], [n])) - 1
    segment = np.repeat(np.arange(starts.size), np.diff(np.concatenate((starts, [n]))))
    picks = [starts, ends]
    for extreme in (np.maximum.reduceat(mid, starts), np.minimum.reduceat(mid, starts)):
        at = np.flatnonzero(mid == extreme[segment])
        _, first = np.unique(segment[at], return_index=True)
        picks.append(at[first])
    result: Ints = np.unique(np.concatenate(picks)).astype(np.int64)
    return result
