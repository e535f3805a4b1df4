"""One trade through the ladder over a sequence of ticks, with immediate confirmation.

This is what ``traild simulate`` and the backtest's event-driven path run: every MoveStop is
confirmed at once and takes effect from the next tick (SPEC §7).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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


def run_trade(
    ladder: Ladder,
    ticks: Iterable[tuple[TS, int, int]],
    lock_trigger_scaled: int | None = None,
) -> TradeOutcome[TS]:
    """Drive ``ladder`` over ``(ts, bid_ticks, ask_ticks)`` until it exits or data ends.

    ``lock_trigger_scaled`` (centipips x ticks_per_pip) records when MFE first reached the
    profit-lock trigger, whether or not the lock is enabled.
    """
    amendments: list[Amendment[TS]] = []
    lock_ts: TS | None = None
    watch = lock_trigger_scaled is not None
    lock = lock_trigger_scaled or 0
    moves = ladder.moves  # MFE changes only when the best price does (moves counts that)
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
        event = on_tick(bid, ask)
        # the lock is "reached" while the trade is open, not by the tick that closes it
        if watch and ladder.moves != moves and not isinstance(event, Exit):
            moves = ladder.moves
            mfe = ladder.mfe
            if mfe is not None and mfe * CENTI >= lock:
                lock_ts, watch = ts, False
        if event is None:
            lo, hi = ladder.quiet_band() or _NO_BAND
            continue
        if isinstance(event, MoveStop):
            amendments.append(Amendment(ts, ladder.stop, event.level, event.reason))
            ladder.confirm(event.level)
            lo, hi = ladder.quiet_band() or _NO_BAND
            continue
        assert isinstance(event, Exit)
        return TradeOutcome(
            tuple(amendments),
            ts,
            event.price,
            event.reason,
            event.gap,
            ladder.stop,  # the confirmed stop (for a limit exit, event.level is the limit)
            ladder.best,
            lock_ts,
            seen,
        )
    if seen:
        last = (ts, bid, ask)  # the loop's variables hold the last tick
    end_price = None
    if last is not None:
        end_price = last[1] if ladder.sign > 0 else last[2]
    return TradeOutcome(
        tuple(amendments),
        last[0] if last else None,
        end_price,
        "end_of_data",
        False,
        ladder.stop,
        ladder.best,
        lock_ts,
        seen,
    )


def pnl_ticks(direction: Direction, entry: int, exit_price: int) -> int:
    """Signed result in ticks (positive = profit)."""
    return direction.sign * (exit_price - entry)
