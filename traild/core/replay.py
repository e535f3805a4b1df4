"""One trade through the ladder over a sequence of ticks, with immediate confirmation.

This is what ``traild simulate`` and the backtest's event-driven path run: every MoveStop is
confirmed at once and takes effect from the next tick (SPEC §7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from traild.core.instruments import CENTI
from traild.core.ladder import Exit, Ladder
from traild.core.messages import Direction, MoveStop, Reason

_NO_BAND = (math.inf, -math.inf)  # nothing is quiet
TS = TypeVar("TS")  # a tick's time as the caller gives it (datetime; epoch ms in the backtest)


@dataclass(frozen=True, slots=True)
class Amendment(Generic[TS]):
    ts: TS
    old: int | None  # ticks
    new: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class TradeOutcome(Generic[TS]):
    """Exit (or end of data), every amendment, and the excursion, all in integer ticks."""

    amendments: tuple[Amendment[TS], ...]
    exit_ts: TS | None
    exit_price: int | None
    exit_reason: str  # stop | limit | end_of_data
    gap: bool
    exit_stop: int | None  # the confirmed stop when the trade closed
    best: int | None
    lock_ts: TS | None  # first tick at which MFE reached the profit-lock trigger
    ticks_seen: int = 0
    extra: dict[str, object] = field(default_factory=dict)


class _Record(Generic[TS]):
    """What a driver owes the outcome: amendments (confirmed at once) and the lock's time."""

    __slots__ = ("amendments", "ladder", "lock", "lock_ts", "moves", "watch")

    def __init__(self, ladder: Ladder, lock_trigger_scaled: int | None) -> None:
        self.ladder = ladder
        self.amendments: list[Amendment[TS]] = []
        self.lock_ts: TS | None = None
        self.watch = lock_trigger_scaled is not None
        self.lock = lock_trigger_scaled or 0
        self.moves = ladder.moves  # MFE changes only when the best price does (moves counts it)

    def apply(self, ts: TS, event: MoveStop | Exit | None, seen: int) -> TradeOutcome[TS] | None:
        """Book one delivered tick's event; the outcome when it closed the trade."""
        ladder = self.ladder
        # the lock is "reached" while the trade is open, not by the tick that closes it
        if self.watch and ladder.moves != self.moves and not isinstance(event, Exit):
            self.moves = ladder.moves
            mfe = ladder.mfe
            if mfe is not None and mfe * CENTI >= self.lock:
                self.lock_ts, self.watch = ts, False
        if event is None:
            return None
        if isinstance(event, MoveStop):
            self.amendments.append(Amendment(ts, ladder.stop, event.level, event.reason))
            ladder.confirm(event.level)
            return None
        return self.outcome(ts, event.price, event.reason, event.gap, seen)

    def outcome(
        self, ts: TS | None, price: int | None, reason: str, gap: bool, seen: int
    ) -> TradeOutcome[TS]:
        ladder = self.ladder
        return TradeOutcome(
            tuple(self.amendments),
            ts,
            price,
            reason,
            gap,
            ladder.stop,  # the confirmed stop (for a limit exit, the event's level is the limit)
            ladder.best,
            self.lock_ts,
            seen,
        )


def run_trade(
    ladder: Ladder,
    ticks: Iterable[tuple[TS, int, int]],
    lock_trigger_scaled: int | None = None,
) -> TradeOutcome[TS]:
    """Drive ``ladder`` over ``(ts, bid_ticks, ask_ticks)`` until it exits or data ends.

    ``lock_trigger_scaled`` (centipips x ticks_per_pip) records when MFE first reached the
    profit-lock trigger, whether or not the lock is enabled.
    """
    record: _Record[TS] = _Record(ladder, lock_trigger_scaled)
    on_tick = ladder.on_tick
    seen = 0
    last: tuple[TS, int, int] | None = None
    buy = ladder.sign > 0
    # Ticks inside the ladder's quiet band change nothing (Ladder.quiet_band): not even a call.
    lo, hi = ladder.quiet_band() or _NO_BAND
    plan = ladder.plan  # a plan changed by the tick source (a recalculation) voids the band
    for ts, bid, ask in ticks:
        seen += 1
        if lo < (bid if buy else -ask) < hi:
            if ladder.plan is plan:
                continue
            plan = ladder.plan
        done = record.apply(ts, on_tick(bid, ask), seen)
        if done is not None:
            return done
        lo, hi = ladder.quiet_band() or _NO_BAND
    if seen:
        last = (ts, bid, ask)  # the loop's variables hold the last tick
    if last is None:
        return record.outcome(None, None, "end_of_data", False, 0)
    return record.outcome(last[0], last[1] if buy else last[2], "end_of_data", False, seen)


def run_trade_at(
    ladder: Ladder,
    columns: tuple[Sequence[TS], Sequence[int], Sequence[int]],
    start: int,
    seek: Callable[[int, float, float], int],
    lock_trigger_scaled: int | None = None,
) -> TradeOutcome[TS]:
    """``run_trade`` over the ticks ``start..`` of ``(ts, bid, ask)`` columns, jumping over
    quiet ticks instead of visiting them.

    ``seek(i, lo, hi)`` returns the first index ``k >= i`` whose directional price (bid, or
    minus the ask of a SELL) is not strictly inside ``(lo, hi)``, or the columns' length. The
    outcome is identical to ``run_trade`` over the same ticks (``ticks_seen`` included):
    ticks inside the ladder's quiet band change nothing, so only the ones ``seek`` returns
    are delivered. Its cost grows with the events, not with the ticks in between.
    """
    ts, bid, ask = columns
    n = len(bid)
    record: _Record[TS] = _Record(ladder, lock_trigger_scaled)
    on_tick = ladder.on_tick
    quiet_band = ladder.quiet_band
    i = start
    while True:
        band = quiet_band()
        if band is not None:
            i = seek(i, band[0], band[1])
        if i >= n:
            break
        done = record.apply(ts[i], on_tick(bid[i], ask[i]), i - start + 1)
        if done is not None:
            return done
        i += 1
    if start >= n:
        return record.outcome(None, None, "end_of_data", False, 0)
    last = n - 1
    price = bid[last] if ladder.sign > 0 else ask[last]
    return record.outcome(ts[last], price, "end_of_data", False, n - start)


def pnl_ticks(direction: Direction, entry: int, exit_price: int) -> int:
    """Signed result in ticks (positive = profit)."""
    return direction.sign * (exit_price - entry)
