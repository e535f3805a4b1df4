"""The vectorised fast path: many trades of one market and direction through the ladder at once.

Why it is exact. Every floor of the ladder is a function of the best price alone (SPEC §2) and,
with immediate confirmation, a trade's whole state between ticks is (best, confirmed stop). The
stop can only change on a tick that makes a new best *and* reaches a level at which the floor
moves the stop: a rung trigger whose lock lies beyond the stop, the profit-lock trigger, or the
stage-3 level where the trail clears the stop by the minimum step (a move that puts a rung in
place is exempt from the step, as in ``Ladder._decide``). Every other tick is a no-op
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

    __slots__ = ("_offset_list", "_views", "maxs", "mins", "n", "offsets", "top")

    def __init__(self, x: Ints) -> None:
        mins, maxs = [x], [x]
        lo = hi = x
        while lo.size > 1:
            half = lo.size // 2
            lo_next = np.minimum(lo[0 : 2 * half : 2], lo[1 : 2 * half : 2])
            hi_next = np.maximum(hi[0 : 2 * half : 2], hi[1 : 2 * half : 2])
            if lo.size % 2:  # an odd last block holds just the last value
                lo_next = np.concatenate((lo_next, lo[-1:]))
                hi_next = np.concatenate((hi_next, hi[-1:]))
            lo, hi = lo_next, hi_next
            mins.append(lo)
            maxs.append(hi)
        sizes = np.array([a.size for a in mins], dtype=np.int64)
        self.offsets: Ints = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.mins: Ints = np.concatenate(mins)
        self.maxs: Ints = np.concatenate(maxs)
        self.n = int(x.size)
        self.top = int(sizes.size - 1)
        self._offset_list: list[int] = self.offsets.tolist()
        self._views: tuple[memoryview, memoryview] | None = None

    def seek(self, i: int, lo: float, hi: float) -> int:
        """One query in plain Python: the first k >= i with x[k] <= lo or x[k] >= hi (else n).

        It visits about two blocks per level of the distance it skips, so a quiet stretch of
        L ticks costs O(log L), and a crossing at ``i`` itself costs one comparison pair.
        """
        views = self._views
        if views is None:
            views = self._views = (self.mins.data, self.maxs.data)
        mins, maxs = views
        offsets, n, top = self._offset_list, self.n, self.top
        lvl = 0
        while i < n:
            at = offsets[lvl] + (i >> lvl)
            if mins[at] > lo and maxs[at] < hi:  # the block holds no crossing: skip it
                i += 1 << lvl
                if lvl < top and not (i >> lvl) & 1:
                    lvl += 1  # the next block is the left half of a bigger one: climb
            elif lvl:
                lvl -= 1  # the crossing is inside: its left half first
            else:
                return i
        return n

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

    direction: Direction
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


def both_sides(bid: Ints, ask: Ints) -> Ints:
    """The directional exit side of both directions in one series: BUY bids, then SELL -asks.

    A BUY trade lives in ``[0, n)``, a SELL trade in ``[n, 2n)``; one batch serves both.
    """
    out: Ints = np.concatenate((bid, -ask)).astype(np.int64)
    return out


def _plan_row(plan: LadderPlan) -> tuple[list[int], ...]:
    rungs = list(plan.rungs) + [(BIG, NONE, None)] * (_RUNGS - len(plan.rungs))
    trig = [r[0] for r in rungs]
    return (
        trig,
        [BIG if t == BIG else -(-t // CENTI) for t in trig],  # MFE ticks that reach it
        [r[1] for r in rungs],
        [-1 if r[2] is None else _CODE[r[2]] for r in rungs],
        [
            plan.s3_trigger,
            -(-plan.s3_trigger // CENTI),
            plan.s3_distance,
            max(1, -(-plan.min_step // CENTI)),  # ticks an amendment must improve by
            plan.min_distance,
        ],
    )


class _Batch:
    """Columnar state of the trades of one batch, in directional ticks."""

    def __init__(self, trades: Sequence[KernelTrade], n: int) -> None:
        m = len(trades)
        sign = np.array([t.direction.sign for t in trades], dtype=np.int64)
        self.sign = sign
        self.base = np.where(sign > 0, 0, n).astype(np.int64)
        self.entry = sign * np.array([t.entry for t in trades], dtype=np.int64)
        self.stop = sign * np.array([t.stop for t in trades], dtype=np.int64)
        limit = np.array([0 if t.limit is None else t.limit for t in trades], dtype=np.int64)
        no_limit = np.array([t.limit is None for t in trades], dtype=bool)
        self.limit = np.where(no_limit, BIG, sign * limit)
        self.pos = self.base + np.array([t.start for t in trades], dtype=np.int64)
        self.end = self.base + n
        self.best = np.full(m, NONE, dtype=np.int64)
        self.lock = np.full(m, -1, dtype=np.int64)
        self.lock_t = np.array([-(-t.lock_trigger // CENTI) for t in trades], dtype=np.int64)
        rows: dict[LadderPlan, tuple[list[int], ...]] = {}
        for t in trades:
            if t.plan not in rows:
                rows[t.plan] = _plan_row(t.plan)
        per_trade = [rows[t.plan] for t in trades]
        cols = [np.array([r[c] for r in per_trade], dtype=np.int64) for c in range(5)]
        self.trig, self.trig_t, self.off, self.code, scalars = cols
        self.s3, self.s3_t, self.dist, self.step, self.mind = scalars.T.copy()
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
        # Ladder._decide: a move that puts a new rung in place (a reached rung's offset lies
        # in (stop, target]) is always sent; any other move must clear the minimum step.
        off = self.off[a]
        reached = (mfe * CENTI)[:, None] >= self.trig[a]
        new_rung = (reached & (off > (stop - entry)[:, None]) & (off <= offset[:, None])).any(1)
        new_rung |= stop == NONE
        move = (why >= 0) & (target > stop) & (new_rung | (target - stop >= self.step[a]))
        capped = move & (target > x - self.mind[a])
        self.fallback[a[capped]] = True
        go = move & ~capped
        if go.any():
            self.moves.append((a[go], k[go], stop[go], target[go], why[go]))
            self.stop[a[go]] = target[go]
        self.pos[a] = k + 1


def run_batch(
    x: Ints, index: CrossingIndex, ts_ms: Ints, trades: Sequence[KernelTrade]
) -> list[PathResult | None]:
    """Run ``trades`` of one market over ``x = both_sides(bid, ask)`` and its index.

    Returns one PathResult per trade, or None for a trade the kernel hands back (a move capped
    by the minimum stop distance): run that one through the event-driven core.
    """
    if not trades:
        return []
    n = int(ts_ms.size)
    b = _Batch(trades, n)
    exit_k = np.full(len(trades), -1, dtype=np.int64)
    kind = np.zeros(len(trades), dtype=np.int64)  # 1 stop, 2 limit, 3 end of data
    active = np.arange(len(trades), dtype=np.int64)
    while active.size:
        a = active
        upper = np.minimum(b.next_level(a), b.limit[a])
        k = index.first_crossing(b.pos[a], b.stop[a], upper)
        end = k >= b.end[a]
        xk = x[np.minimum(k, 2 * n - 1)]
        stop = ~end & (xk <= b.stop[a])
        limit = ~end & ~stop & (xk >= b.limit[a])
        fin = end | stop | limit
        exit_k[a[fin]] = np.where(end, b.end[a] - 1, k)[fin]
        kind[a[fin]] = np.select([stop, limit], [1, 2], 3)[fin]
        event = ~fin
        if event.any():
            b.advance(a[event], k[event], xk[event])
        active = a[event]
        active = active[~b.fallback[active]]
    return _results(b, exit_k, kind, x, ts_ms)


_KINDS = ("", "stop", "limit", "end_of_data")
_WHY = tuple(r.value for r in _REASONS)


def _results(b: _Batch, exit_k: Ints, kind: Ints, x: Ints, ts_ms: Ints) -> list[PathResult | None]:
    n = ts_ms.size
    ok = ~b.fallback
    k = np.where(ok, exit_k, b.base)
    xk = x[k]
    gap = ((kind == 1) & (xk < b.stop)) | ((kind == 2) & (xk > b.limit))
    # Best up to the exit: the last event's best and the ticks since — the exit tick too for a
    # limit (a favourable tick) and at the end of data; a stop's exit tick is adverse anyway.
    upto = np.where((kind == 3) | (kind == 2), k + 1, k)
    best = np.maximum(b.best, _range_max(x, np.minimum(b.pos, upto), upto))
    moves: dict[int, list[tuple[int, int | None, int, str]]] = {}
    for who, at, old, new, why in b.moves:
        for i, ki, o, nw, w in zip(
            who.tolist(),
            ts_ms[at - b.base[who]].tolist(),
            (b.sign[who] * old).tolist(),
            (b.sign[who] * new).tolist(),
            why.tolist(),
            strict=True,
        ):
            moves.setdefault(i, []).append((ki, None if abs(o) == BIG else o, nw, _WHY[w]))
    lock_ts = ts_ms[np.clip(b.lock - b.base, 0, n - 1)]
    rows = zip(
        ok.tolist(),
        (k - b.base).tolist(),
        ts_ms[k - b.base].tolist(),
        (b.sign * xk).tolist(),
        kind.tolist(),
        gap.tolist(),
        (b.sign * b.stop).tolist(),
        (b.sign * best).tolist(),
        np.where(b.lock < 0, -1, lock_ts).tolist(),
        strict=True,
    )
    out: list[PathResult | None] = []
    for i, (good, ki, ts, price, kd, g, stop, bst, lk) in enumerate(rows):
        out.append(
            PathResult(
                exit_idx=ki,
                exit_ts=ts,
                exit_price=price,
                exit_reason=_KINDS[kd],
                gap=g,
                exit_stop=None if abs(stop) == BIG else stop,
                best=None if abs(bst) == BIG else bst,
                lock_ts=None if lk < 0 else lk,
                amendments=tuple(moves.get(i, ())),
            )
            if good
            else None
        )
    return out


def _range_max(x: Ints, lo: Ints, hi: Ints) -> Ints:
    """``max(x[lo:hi])`` per pair, NONE for an empty range (one ``reduceat`` pass)."""
    out = np.full(lo.size, NONE, dtype=np.int64)
    some = np.flatnonzero(hi > lo)
    if some.size:
        order = some[np.argsort(lo[some], kind="stable")]
        last = x.size - 1
        pairs = np.column_stack((lo[order], np.minimum(hi[order], last))).ravel()
        got = np.maximum.reduceat(x, pairs)[0::2]
        # reduceat cannot end a range at len(x): fold the last element in where it belongs.
        tail = hi[order] > last
        got[tail] = np.maximum(got[tail], x[last])
        empty = lo[order] >= np.minimum(hi[order], last)
        got[empty & tail] = x[last]
        out[order] = got
    return out
