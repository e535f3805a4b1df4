"""Tick files as backtest markets: accepted ticks as integer-tick columns, plus entry conditions.

A market is one tick file of one epic. Ticks go through the same acceptance rules as the
runtime's ``TickGuard`` (non-finite, non-positive and out-of-order ticks are rejected; crossed
quotes are accepted and counted), vectorised. Prices become integer ticks exactly the way
``Instrument.to_ticks`` does it (round half to even of ``price / tick``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from traild.adapters.tickfiles import epic_from_filename, load_ticks, ms_to_datetime
from traild.backtest.kernel import CrossingIndex, both_sides
from traild.core.calculator import MarketConditions
from traild.core.conditions import BarHistory, ConditionParams
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
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def epic(self) -> str:
        return self.source.epic

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

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

    def stream(self, start: int) -> Iterator[tuple[int, int, int]]:
        """Ticks from ``start`` on as ``(epoch_ms, bid_ticks, ask_ticks)`` for the event-driven
        core: plain integers, no object built per tick."""
        hit = self._cache.get("lists")
        if hit is None:
            hit = (self.ts_ms.tolist(), self.bid.tolist(), self.ask.tolist())
            self._cache["lists"] = hit
        assert isinstance(hit, tuple)
        ms, bid, ask = hit
        tails = []
        for column in (ms, bid, ask):
            it: Any = iter(column)
            it.__setstate__(start)  # a list iterator starts at ``start`` in O(1) (islice skips)
            tails.append(it)
        return zip(*tails, strict=True)


def load_market(source: TickSource, table: InstrumentTable) -> Market:
    """Read one tick file; raises DataError (unreadable, empty) or InstrumentError (epic)."""
    instrument = table.resolve(source.epic)
    if not source.path.is_file():
        raise DataError(f"tick file not found: {source.path}")
    cols = load_ticks(source.path)
    ms = np.asarray(cols.ts_ms, dtype=np.int64)
    keep = accepted_mask(ms, cols.bid, cols.ask)
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
    )


def accepted_mask(ts_ms: Ints, bid: Floats, ask: Floats) -> NDArray[np.bool_]:
    """The ticks ``TickGuard`` accepts, in one pass.

    A tick is accepted when its prices are finite and positive and its time is not before the
    last accepted tick. The latest accepted time equals the latest time of every *valid* tick
    so far (a valid tick rejected as out of order is older than that time), so a running
    maximum over valid ticks decides the order rule without a loop.
    """
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(bid) & np.isfinite(ask) & (bid > 0) & (ask > 0)
    floor = np.iinfo(np.int64).min
    latest = np.maximum.accumulate(np.where(valid, ts_ms, floor))
    before = np.concatenate(([floor], latest[:-1]))
    ok: NDArray[np.bool_] = valid & (ts_ms >= before)
    return ok


def entry_conditions(
    market: Market, entries: Sequence[int], params: ConditionParams
) -> dict[int, MarketConditions]:
    """Conditions of each entry tick as ``BarHistory`` sees them fed every earlier tick.

    Only the ticks that shape a bar are fed (each bar's first, highest, lowest and last mid),
    in time order: they give the same closed bars, at the same moments, as feeding all ticks.
    """
    history = BarHistory(float(market.instrument.pip_size), params)
    feed = bar_shaping_ticks(market.ts_ms, market.bid_px, market.ask_px, params.bar_minutes)
    out: dict[int, MarketConditions] = {}
    j = 0
    for entry in sorted(set(entries)):
        while j < feed.size and feed[j] < entry:
            i = int(feed[j])
            history.add(
                ms_to_datetime(int(market.ts_ms[i])),
                float(market.bid_px[i]),
                float(market.ask_px[i]),
            )
            j += 1
        out[entry] = history.conditions(market.epic, ms_to_datetime(int(market.ts_ms[entry])))
    return out


def bar_shaping_ticks(ts_ms: Ints, bid: Floats, ask: Floats, bar_minutes: int) -> Ints:
    """Sorted indices of each bar's first tick, first highest mid, first lowest mid, last tick."""
    n = ts_ms.size
    if n == 0:
        return np.empty(0, np.int64)
    keys = ts_ms // 1000 // (bar_minutes * 60)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    ends = np.concatenate((starts[1:], [n])) - 1
    mid = (bid + ask) / 2.0
    segment = np.repeat(np.arange(starts.size), np.diff(np.concatenate((starts, [n]))))
    picks = [starts, ends]
    for extreme in (np.maximum.reduceat(mid, starts), np.minimum.reduceat(mid, starts)):
        at = np.flatnonzero(mid == extreme[segment])
        _, first = np.unique(segment[at], return_index=True)
        picks.append(at[first])
    result: Ints = np.unique(np.concatenate(picks)).astype(np.int64)
    return result
