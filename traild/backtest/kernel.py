"""The vectorised fast path: many trades of one market and direction through the ladder at once.

Why it is exact. Every floor of the ladder is a function of the best price alone (SPEC §2) and,
with immediate confirmation, a trade's whole state between ticks is (best, confirmed stop). The
stop can only change on a tick that makes a new best *and* reaches a level at which the floor
moves the stop: a rung trigger whose lock lies beyond the stop, the profit-lock trigger, or the
stage-3 level where the trail clears the stop by the minimum step. Every other tick is a no-op
for the ladder except as a possible exit. So the kernel jumps, per trade, from one such event to
the next with one query: "the first tick at or through the stop, or at or beyond the next level
(or the limit)". At an event tick it applies the ladder's rules exactly: the floor from the
compiled ``LadderPlan``, rung exemption, minimum step, minimum-distance cap, and the one-tick
confirmation delay (a move made on tick k protects from tick k+1). The queries of all trades run
together over a tree of block minima/maxima, so a trade costs (events x log ticks), not its length.

Minimum-distance capping: a move that would sit closer to the market than the minimum distance
is capped and retried on later ticks at prices this kernel does not visit. Such trades are
returned as ``None`` and the engine replays them through the event-driven core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from traild.core.instruments import CENTI
from traild.core.ladder import LadderPlan
from traild.core.messages import Direction, Reason

Ints = NDArray[np.int64]
NONE = -(1 << 62)  # "no level": below every price (as in the ladder)
BIG = 1 << 62  # "never": above every price
_REASONS = (Reason.PROFIT_LOCK, Reason.EARLY_BE, Reason.STAGE1, Reason.STAGE2, Reason.STAGE3)
_CODE = {reason: code for code, reason in enumerate(_REASONS)}
_STAGE3 = _CODE[Reason.STAGE3]
_RUNGS = 4  # early BE, stage 1, stage 2 and (optionally) the profit lock


class CrossingIndex:
    """Minima and maxima of aligned power-of-two blocks of one integer series (a flat tree)."""

    __slots__ = ("maxs", "mins", "n", "offsets", "top")

    def __init__(self, x: Ints) -> None:
        mins, maxs = [x], [x]
        while mins[-1].size > 1:
            lo, hi = mins[-1], maxs[-1]
            if lo.size % 2:  # pad with the last value: a block's extremes stay its own
                lo, hi = np.append(lo, lo[-1]), np.append(hi, hi[-1])
            mins.append(np.minimum(lo[0::2], lo[1::2]))
            maxs.append(np.maximum(hi[0::2], hi[1::2]))
        sizes = np.array([a.size for a in mins], dtype=np.int64)
        self.offsets: Ints = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.mins: Ints = np.concatenate(mins)
        self.maxs: Ints = np.concatenate(maxs)
        self.n = int(x.size)
        self.top = int(sizes.size - 1)

    def first_crossing(self, start: Ints, lo: Ints, hi: Ints) -> Ints:
        """Per query i: the first k >= start[i] with x[k] <= lo[i] or x[k] >= hi[i] (else n).

        All queries advance together: first each climbs right and up past blocks without a
        crossing until its block has one, then each descends into the first child with one.
        """
        n, offsets, mins, maxs = self.n, self.offsets, self.mins, self.maxs
        out = np.full(start.size, n, dtype=np.int64)
        live = np.flatnonzero(start < n)
        p, lo, hi = start[live].astype(np.int64), lo[live], hi[live]
        lvl = np.zeros(live.size, dtype=np.int64)
        while live.size:  # climb: skip whole blocks without a crossing
            at = offsets[lvl] + (p >> lvl)
            miss = (mins[at] > lo) & (maxs[at] < hi)
            if not miss.any():
                break
            p += miss.astype(np.int64) << lvl
            lvl += miss & (((p >> lvl) & 1) == 0) & (lvl < self.top)
            gone = p >= n
            if gone.any():
                keep = ~gone
                live, p, lvl, lo, hi = live[keep], p[keep], lvl[keep], lo[keep], hi[keep]
        while live.size and lvl.any():  # descend: left child if it has a crossing, else right
            down = lvl > 0
            lvl -= down
            at = offsets[lvl] + (p >> lvl)
            miss = (mins[at] > lo) & (maxs[at] < hi)
            p += (miss & down).astype(np.int64) << lvl
        out[live] = p
        return out


@dataclass(frozen=True, slots=True)
class KernelTrade:
    """One trade for the kernel: ``start`` is the first tick after the entry; prices in ticks."""

    start: int
    entry: int
    stop: int
    limit: int | None
    plan: LadderPlan
    lock_trigger: int  # profit-lock trigger, centipips x ticks per pip (as run_trade takes it)


@dataclass(frozen=True, slots=True)
class PathResult:
    """What one trade did, identical whichever path computed it. Prices in ticks, times in ms.

    ``exit_stop`` is the confirmed stop when the trade closed; ``best`` the best exit-side price
    before the exit tick (None when the first tick closed it); ``amendments`` are
    ``(ts_ms, old, new, reason)``.
    """

    exit_idx: int
    exit_ts: int
    exit_price: int
    exit_reason: str
    gap: bool
    exit_stop: int | None
    best: int | None
    lock_ts: int | None
    amendments: tuple[tuple[int, int | None, int, str], ...]


class _Batch:
    """Columnar state of the trades of one batch, in directional ticks."""

    def __init__(self, trades: Sequence[KernelTrade], sign: int) -> None:
        m = len(trades)
        self.sign = sign
        self.entry = np.array([sign * t.entry for t in trades], dtype=np.int64)
        self.stop = np.array([sign * t.stop for t in trades], dtype=np.int64)
        self.limit = np.array(
            [BIG if t.limit is None else sign * t.limit for t in trades], dtype=np.int64
        )
        self.pos = np.array([t.start for t in trades], dtype=np.int64)
        self.best = np.full(m, NONE, dtype=np.int64)
        self.lock = np.full(m, -1, dtype=np.int64)
        self.lock_t = np.array([-(-t.lock_trigger // CENTI) for t in trades], dtype=np.int64)
        self.trig = np.full((m, _RUNGS), BIG, dtype=np.int64)
        self.trig_t = np.full((m, _RUNGS), BIG, dtype=np.int64)
        self.off = np.full((m, _RUNGS), NONE, dtype=np.int64)
        self.code = np.full((m, _RUNGS), -1, dtype=np.int64)
        for i, t in enumerate(trades):
            for r, (trigger, offset, reason) in enumerate(t.plan.rungs):
                self.trig[i, r] = trigger
                self.trig_t[i, r] = -(-trigger // CENTI)  # ticks of MFE that reach it
                self.off[i, r] = offset
                self.code[i, r] = _CODE[reason]
        plans = [t.plan for t in trades]
        self.s3 = np.array([p.s3_trigger for p in plans], dtype=np.int64)
        self.s3_t = -(-self.s3 // CENTI)
        self.dist = np.array([p.s3_distance for p in plans], dtype=np.int64)
        self.step = np.array([max(1, -(-p.min_step // CENTI)) for p in plans], dtype=np.int64)
        self.mind = np.array([p.min_distance for p in plans], dtype=np.int64)
        self.moves: list[tuple[Ints, Ints, Ints, Ints, Ints]] = []
        self.fallback = np.zeros(m, dtype=bool)

    def next_level(self, a: Ints) -> Ints:
        """The lowest new best at which trade ``a``'s ladder could do anything but wait."""
        entry, stop, best = self.entry[a], self.stop[a], self.best[a]
        levels = entry[:, None] + self.trig_t[a]
        useful = (levels > best[:, None]) & (self.off[a] > (stop - entry)[:, None])
        rung = np.where(useful, levels, BIG).min(axis=1)
        trail = np.maximum(entry + self.s3_t[a], stop + self.dist[a] + self.step[a])
        lock = np.where(self.lock[a] < 0, entry + self.lock_t[a], BIG)
        level: Ints = np.maximum(np.minimum(np.minimum(rung, trail), lock), best + 1)
        return level

    def floor(self, a: Ints, mfe: Ints) -> tuple[Ints, Ints]:
        """``LadderPlan.floor`` for many trades: the desired offset and its reason code."""
        scaled = mfe * CENTI
        level = np.full(a.size, NONE, dtype=np.int64)
        why = np.full(a.size, -1, dtype=np.int64)
        trig, off, code = self.trig[a], self.off[a], self.code[a]
        for r in range(_RUNGS):  # rungs are sorted by trigger: reached ones form a prefix
            hit = (scaled >= trig[:, r]) & (off[:, r] >= level)
            level = np.where(hit, off[:, r], level)
            why = np.where(hit, code[:, r], why)
        trail = mfe - self.dist[a]
        s3 = (scaled >= self.s3[a]) & (trail > level)
        return np.where(s3, trail, level), np.where(s3, _STAGE3, why)

    def advance(self, a: Ints, k: Ints, x: Ints) -> None:
        """New-best events: update best and lock time, then apply the ladder's move rules."""
        entry, stop = self.entry[a], self.stop[a]
        self.best[a] = x
        mfe = x - entry
        lock = self.lock[a]
        self.lock[a] = np.where((lock < 0) & (mfe >= self.lock_t[a]), k, lock)
        offset, why = self.floor(a, mfe)
        target = entry + offset
        move = (why >= 0) & (target > stop)
        move &= (why != _STAGE3) | (target - stop >= self.step[a])
        capped = move & (target > x - self.mind[a])
        self.fallback[a[capped]] = True
        go = move & ~capped
        if go.any():
            self.moves.append((a[go], k[go], stop[go], target[go], why[go]))
            self.stop[a[go]] = target[go]
        self.pos[a] = k + 1


def run_batch(
    x: Ints, index: CrossingIndex, ts_ms: Ints, trades: Sequence[KernelTrade], direction: Direction
) -> list[PathResult | None]:
    """Run ``trades`` (all of one market and ``direction``) over the directional ticks ``x``.

    Returns one PathResult per trade, or None for a trade the kernel hands back (a move capped
    by the minimum stop distance): run that one through the event-driven core.
    """
    if not trades:
        return []
    n = int(x.size)
    batch = _Batch(trades, direction.sign)
    done: dict[int, tuple[int, str, bool]] = {}
    active = np.arange(len(trades), dtype=np.int64)
    while active.size:
        a = active
        upper = np.minimum(batch.next_level(a), batch.limit[a])
        k = index.first_crossing(batch.pos[a], batch.stop[a], upper)
        end = k >= n
        xk = x[np.minimum(k, n - 1)]
        stop = ~end & (xk <= batch.stop[a])
        limit = ~end & ~stop & (xk >= batch.limit[a])
        fin = end | stop | limit
        for i, ki, xi, is_stop in zip(
            a[fin].tolist(), k[fin].tolist(), xk[fin].tolist(), stop[fin].tolist(), strict=True
        ):
            if ki >= n:
                done[i] = (n - 1, "end_of_data", False)
            elif is_stop:
                done[i] = (ki, "stop", xi < int(batch.stop[i]))
            else:
                done[i] = (ki, "limit", xi > int(batch.limit[i]))
        event = ~fin
        if event.any():
            batch.advance(a[event], k[event], xk[event])
        active = a[event]
        active = active[~batch.fallback[active]]
    return _results(batch, done, x, ts_ms, n)


def _results(
    batch: _Batch, done: dict[int, tuple[int, str, bool]], x: Ints, ts_ms: Ints, n: int
) -> list[PathResult | None]:
    s = batch.sign
    moves: dict[int, list[tuple[int, int | None, int, str]]] = {}
    for who, k, old, new, why in batch.moves:
        for i, ki, o, nw, w in zip(
            who.tolist(), k.tolist(), old.tolist(), new.tolist(), why.tolist(), strict=True
        ):
            moves.setdefault(i, []).append(
                (int(ts_ms[ki]), None if o == NONE else s * o, s * nw, _REASONS[w].value)
            )
    out: list[PathResult | None] = []
    for i in range(batch.entry.size):
        if batch.fallback[i]:
            out.append(None)
            continue
        k, reason, gap = done[i]
        start = int(batch.pos[i])
        stop_at = k + 1 if reason == "end_of_data" else k
        best = int(batch.best[i])
        if stop_at > start:
            best = max(best, int(x[start:stop_at].max()))
        lock = int(batch.lock[i])
        stop = int(batch.stop[i])
        out.append(
            PathResult(
                exit_idx=k,
                exit_ts=int(ts_ms[k]),
                exit_price=s * int(x[k]),
                exit_reason=reason,
                gap=gap,
                exit_stop=None if stop == NONE else s * stop,
                best=None if best == NONE else s * best,
                lock_ts=None if lock < 0 else int(ts_ms[lock]),
                amendments=tuple(moves.get(i, ())),
            )
        )
    return out
