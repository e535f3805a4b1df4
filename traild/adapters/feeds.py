"""Price feeds: replay of tick files and a seeded synthetic market.

Both push ticks into ``emit`` and await it: the consumer's pace is the feed's back-pressure.
Neither filters ticks; the runtime's tick guard does.
"""

from __future__ import annotations

import heapq
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import trio
from numpy.typing import NDArray

from traild.adapters.tickfiles import EPOCH, TickColumns, load_ticks
from traild.core.conditions import GuardParams, TickGuard, session_of
from traild.core.errors import ConfigError
from traild.core.instruments import Instrument, InstrumentTable
from traild.core.messages import Tick
from traild.ports import TickSink

CHECKPOINT_EVERY = 64  # unpaced feeds still let other tasks (and cancellation) in, often
# A checkpoint alone does not let the database's worker threads in: the GIL stays with the
# busy feed, and every store call needs several thread round trips. So an unpaced feed that
# has run for YIELD_AFTER_S also sleeps YIELD_FOR_S (the event loop then blocks in the OS and
# the threads run): heartbeats, the store poll and adoption keep going in a speed-0 replay.
YIELD_AFTER_S = 0.02
YIELD_FOR_S = 0.002
# An unpaced replay outruns the store: the writer needs several event-loop cycles per write,
# and the feed makes every cycle long. Past BACKLOG_HIGH queued writes the replay waits until
# they are down to BACKLOG_LOW, at most BACKLOG_WAIT_S at a time (an outage slows it, never
# freezes it), so a speed-0 replay runs as fast as the daemon keeps its records durable.
BACKLOG_HIGH = 2_000
BACKLOG_LOW = 500
BACKLOG_WAIT_S = 1.0


class _Yielder:
    """Lets other tasks and threads in now and then (see YIELD_AFTER_S)."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = trio.current_time()

    async def __call__(self) -> None:
        now = trio.current_time()
        if now - self._since >= YIELD_AFTER_S:
            await trio.sleep(YIELD_FOR_S)
            self._since = trio.current_time()
        else:
            await trio.lowlevel.checkpoint()


@dataclass(frozen=True, slots=True)
class FeedStatistics:
    """A snapshot of a feed's progress."""

    emitted: int
    total: int | None  # None: endless
    last_ts: datetime | None


class ReplayFeed:
    """Replays tick files (or loaded ``TickColumns``), one per epic, merged by timestamp.

    ``speed`` 0 replays as fast as the consumer takes ticks; ``k`` > 0 replays at k times
    real time (tick-time gaps divided by k, slept with ``trio.sleep_until`` from a fixed
    anchor so waiting on the consumer does not accumulate drift). Ticks with equal times keep
    the order of the files; a file's own order is never changed, even where it goes back in
    time (the tick guard rejects such ticks and must see them). ``run`` returns when every
    file is exhausted.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str] | TickColumns],
        epics: Sequence[str],
        speed: float = 0.0,
    ) -> None:
        problems = []
        if not files:
            problems.append("feed.files: a replay needs at least one tick file")
        if len(files) != len(epics):
            problems.append(f"feed.epics: {len(epics)} epics for {len(files)} files")
        if not (math.isfinite(speed) and speed >= 0):
            problems.append(f"feed.speed: must be 0 or positive, not {speed}")
        if problems:
            raise ConfigError(problems)
        self._files = list(files)
        self._epics = list(epics)
        self._speed = speed
        self._columns: list[TickColumns] | None = None
        self._merge: tuple[list[int], list[float], list[float], list[int]] | None = None
        self._emitted = 0
        self._total: int | None = None
        self._last: datetime | None = None
        self._backlog: Callable[[], int] | None = None
        self.held_s = 0.0  # time spent waiting for the consumer's backlog (a statistic)

    def epics(self) -> list[str]:
        return list(dict.fromkeys(self._epics))

    def hold_while(self, backlog: Callable[[], int]) -> None:
        """Unpaced (speed 0): wait whenever ``backlog()`` (e.g. the store's queued writes)
        exceeds BACKLOG_HIGH, until it is down to BACKLOG_LOW or BACKLOG_WAIT_S passed."""
        self._backlog = backlog

    async def _hold(self) -> None:
        backlog = self._backlog
        if backlog is None or self._speed > 0 or backlog() <= BACKLOG_HIGH:
            return
        start = trio.current_time()
        for _ in range(round(BACKLOG_WAIT_S / YIELD_FOR_S)):  # polled: the store has no event
            await trio.sleep(YIELD_FOR_S)
            if backlog() <= BACKLOG_LOW:
                break
        self.held_s += trio.current_time() - start

    def load(self) -> None:
        """Read and merge every file now (DataError on a bad one), so neither stalls the
        running daemon; ``run`` does it if not done before."""
        if self._columns is None:
            self._columns = [
                f if isinstance(f, TickColumns) else load_ticks(f) for f in self._files
            ]
        if self._merge is None:
            self._merge = self._merged()

    def _merged(self) -> tuple[list[int], list[float], list[float], list[int]]:
        assert self._columns is not None
        cols = self._columns
        ms = np.concatenate([c.ts_ms for c in cols])
        src = np.concatenate([np.full(len(c), i, np.int64) for i, c in enumerate(cols)])
        # Sort by each file's running maximum of the times the tick guard accepts: a stable
        # sort then merges the files by time while keeping every file's own sequence, bad
        # ticks included (the daemon's guard rejects them), and one tick far in the future
        # never holds the rest of its file back.
        key = np.concatenate([merge_key(c.ts_ms) for c in cols])
        order = np.argsort(key, kind="stable")
        bid = np.concatenate([c.bid for c in cols])[order]
        ask = np.concatenate([c.ask for c in cols])[order]
        return ms[order].tolist(), bid.tolist(), ask.tolist(), src[order].tolist()

    async def run(self, emit: TickSink) -> None:
        self.load()
        assert self._merge is not None
        ms, bids, asks, src = self._merge
        self._merge = None  # the lists are consumed once; a second run merges again
        self._total = len(ms)
        epics = self._epics
        anchor_wall = trio.current_time()
        anchor_ms = ms[0] if ms else 0
        pause = _Yielder()
        for i in range(len(ms)):
            if self._speed > 0:
                due = anchor_wall + (ms[i] - anchor_ms) / 1000.0 / self._speed
                if due > trio.current_time():
                    await trio.sleep_until(due)
            if i % CHECKPOINT_EVERY == 0:
                await pause()
                await self._hold()
            tick = Tick(epics[src[i]], EPOCH + timedelta(milliseconds=ms[i]), bids[i], asks[i])
            await emit(tick)
            self._emitted += 1
            self._last = tick.ts

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(self._emitted, self._total, self._last)


def merge_key(ts_ms: NDArray[np.int64]) -> NDArray[np.int64]:
    """Each row's time for merging files: the latest time ``TickGuard`` accepted so far."""
    guard = TickGuard(GuardParams())  # timestamps only: every price the same
    keys: list[int] = []
    key = 0
    for ms in ts_ms.tolist():
        if guard.check_ms(ms, 1.0, 1.0) in (None, "duplicate"):
            key = ms
        keys.append(key)
    return np.array(keys, dtype=np.int64)


# -- synthetic ------------------------------------------------------------------------------

# Typical levels and spreads (pips) of a few majors; anything else gets a generic profile.
_START = {
    "EURUSD": 1.0850, "GBPUSD": 1.2650, "USDJPY": 149.50, "AUDUSD": 0.6550, "NZDUSD": 0.6050,
    "USDCAD": 1.3600, "USDCHF": 0.8800, "EURGBP": 0.8580, "EURJPY": 162.20, "GBPJPY": 189.10,
    "XAUUSD": 2030.0,
}  # fmt: skip
_SPREAD = {"EURUSD": 0.6, "GBPUSD": 0.9, "USDJPY": 0.7, "AUDUSD": 0.8, "USDCAD": 1.2}
_VOL = {"XAUUSD": 12.0}  # gold moves ~10x more pips (0.1) than a major moves pips (0.0001)
# Session factors: (volatility, spread, tick-rate). Asia is quiet and wide; the overlap busy.
_SESSION = {
    "asian": (0.55, 1.8, 0.5),
    "london": (1.15, 1.0, 1.2),
    "overlap": (1.4, 0.9, 1.5),
    "new_york": (1.0, 1.1, 1.0),
}
_REGIMES = (("low", 0.6, 0.9), ("normal", 1.0, 1.0), ("high", 1.6, 1.3), ("extreme", 2.6, 1.9))
_REGIME_WEIGHTS = (0.25, 0.45, 0.2, 0.1)


class _Walker:
    """One epic's market: a random walk in ticks with sessions, regimes and news spikes."""

    def __init__(
        self, epic: str, inst: Instrument, rng: random.Random, start_ms: int, start: float
    ) -> None:
        self.epic, self.inst, self.rng = epic, inst, rng
        symbol = inst.symbol
        jpy_cross = symbol.endswith("JPY") and symbol != "USDJPY"
        self.spread_pips = _SPREAD.get(symbol, 2.0 if jpy_cross else 1.5)
        self.sigma_pips = 0.12 * _VOL.get(symbol, 1.4 if jpy_cross else 1.0)  # per sqrt(second)
        self.mid = start / float(inst.tick_size)  # in ticks, kept as a float
        self.anchor = self.mid
        self.ms = start_ms
        self.regime = 1
        self.news_until = -1
        self.news_spread = 1.0

    def step(self, mean_interval_ms: float, news_per_day: float) -> Tick:
        """Advance to the next tick of this epic and return it."""
        rng, tpp = self.rng, self.inst.ticks_per_pip
        ts = EPOCH + timedelta(milliseconds=self.ms)
        vol_f, spread_f, rate_f = _SESSION[session_of(ts)]
        dt_ms = max(1, round(rng.expovariate(rate_f / mean_interval_ms)))
        self.ms += dt_ms
        dt = dt_ms / 1000.0
        if rng.random() < dt / 2700.0:  # regimes last ~45 minutes on average
            self.regime = rng.choices(range(len(_REGIMES)), _REGIME_WEIGHTS)[0]
        _, regime_vol, regime_spread = _REGIMES[self.regime]
        news = self.ms < self.news_until
        if not news and rng.random() < dt * news_per_day / 86400.0:
            self.news_until = self.ms + rng.randint(60_000, 300_000)
            self.news_spread = rng.uniform(3.0, 8.0)
            self.mid += rng.gauss(0.0, 80.0 * self.sigma_pips * tpp)  # the release jump
            news = True
        sigma = self.sigma_pips * vol_f * regime_vol * (3.0 if news else 1.0) * math.sqrt(dt)
        self.mid += rng.gauss(0.0, sigma * tpp) + (self.anchor - self.mid) * 1e-5 * dt
        self.mid = max(self.mid, self.anchor * 0.2)
        spread = self.spread_pips * spread_f * regime_spread * (self.news_spread if news else 1)
        spread_ticks = max(1, round(spread * tpp * math.exp(rng.gauss(0.0, 0.15))))
        bid = math.floor(self.mid - spread_ticks / 2)
        to_price = self.inst.to_price
        return Tick(
            self.epic,
            EPOCH + timedelta(milliseconds=self.ms),
            to_price(bid),
            to_price(bid + spread_ticks),
        )


class SyntheticFeed:
    """A seeded synthetic market for demos and tests; deterministic for a seed and start.

    Per epic: a random walk on the instrument's tick grid whose volatility and spread depend
    on the session (Asia quiet and wide), on a volatility regime that changes every ~45
    minutes, and on random news spikes (a jump, then minutes of wide spreads and fast moves).
    Timestamps start at ``start`` and advance by random millisecond intervals (feed time);
    ``ticks_per_second`` paces the stream in wall time (None or 0: unpaced), ``max_ticks``
    ends it (None: endless).
    """

    def __init__(
        self,
        epics: Sequence[str],
        seed: int = 0,
        *,
        ticks_per_second: float | None = 10.0,
        start: datetime | None = None,
        mean_interval_ms: float | None = None,
        max_ticks: int | None = None,
        news_per_day: float = 6.0,
        instruments: InstrumentTable | None = None,
        start_prices: Mapping[str, float] | None = None,
    ) -> None:
        if not epics:
            raise ConfigError(["feed.synthetic_epics: at least one epic is needed"])
        table = instruments or InstrumentTable()
        self._epics = list(dict.fromkeys(epics))
        self._rate = ticks_per_second or 0.0
        begin = start or datetime.now(UTC)
        if begin.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        start_ms = (begin - EPOCH) // timedelta(milliseconds=1)
        paced_interval = len(self._epics) * 1000.0 / self._rate if self._rate else 250.0
        self._interval = mean_interval_ms or paced_interval  # default: feed time ~ wall time
        self._news = news_per_day
        self._max = max_ticks
        prices = {k.upper(): v for k, v in (start_prices or {}).items()}
        self._walkers = []
        for epic in self._epics:
            inst = table.resolve(epic)
            level = prices.get(epic.upper()) or prices.get(inst.symbol) or _default_start(inst)
            rng = random.Random(f"{seed}:{epic}")
            self._walkers.append(_Walker(epic, inst, rng, start_ms, level))
        self._emitted = 0
        self._last: datetime | None = None

    def epics(self) -> list[str]:
        return list(self._epics)

    def ticks(self) -> Iterator[Tick]:
        """The tick stream, unpaced (tests, benchmarks); endless unless ``max_ticks``."""
        pending = {i: w.step(self._interval, self._news) for i, w in enumerate(self._walkers)}
        heap = [(pending[i].ts, i) for i in pending]
        heapq.heapify(heap)
        count = 0
        while self._max is None or count < self._max:
            _, i = heapq.heappop(heap)
            tick = pending[i]
            pending[i] = self._walkers[i].step(self._interval, self._news)
            heapq.heappush(heap, (pending[i].ts, i))
            count += 1
            yield tick

    async def run(self, emit: TickSink) -> None:
        anchor = trio.current_time()
        pause = _Yielder()
        for n, tick in enumerate(self.ticks()):
            if self._rate > 0:
                await trio.sleep_until(anchor + n / self._rate)
            elif n % CHECKPOINT_EVERY == 0:
                await pause()
            await emit(tick)
            self._emitted += 1
            self._last = tick.ts

    def statistics(self) -> FeedStatistics:
        return FeedStatistics(self._emitted, self._max, self._last)


def _default_start(inst: Instrument) -> float:
    if inst.symbol in _START:
        return _START[inst.symbol]
    return 100.0 if inst.symbol.endswith("JPY") else 1.0
