"""The two ways one trade is computed: the event-driven core, and the kernel with its fallback.

The event-driven path *is* the daemon's ladder: ``traild.core.ladder.Ladder`` driven tick by
tick by ``traild.core.replay.run_trade_at`` (immediate confirmation, effective from the next
tick), exactly as ``traild simulate`` runs it, with the ticks that cannot change anything (inside
the ladder's quiet band) jumped over instead of visited. The fast path (``kernel.run_batch``)
must agree with it to the tick; trades it hands back are run here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from traild.adapters.tickfiles import EPOCH
from traild.backtest.kernel import KernelTrade, PathResult, run_batch
from traild.backtest.markets import Market
from traild.core.ladder import Ladder
from traild.core.replay import run_trade_at

FAST = "fast"
EVENT = "event"


def to_ms(ts: datetime) -> int:
    """Aware datetime -> epoch milliseconds (exact)."""
    delta = ts - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def run_event(market: Market, trade: KernelTrade) -> PathResult:
    """One trade through ``Ladder`` + ``run_trade_at`` over the market's ticks after its entry.

    Ticks inside the ladder's quiet band are jumped over with the market's crossing index
    (the same one the kernel searches); the ladder sees every other tick, in order.
    """
    ladder = Ladder(trade.plan, trade.direction, trade.entry, trade.stop, trade.limit)
    index = market.index()
    if trade.direction.sign > 0:  # a BUY's directional prices are x[0:n], a SELL's x[n:2n]
        seek = index.seek
    else:
        n = len(market)

        def seek(i: int, lo: float, hi: float) -> int:
            return index.seek(n + i, lo, hi) - n

    out = run_trade_at(ladder, market.columns(), trade.start, seek, trade.lock_trigger)
    if out.exit_ts is None or out.exit_price is None:
        raise ValueError(f"trade starting at tick {trade.start} has no tick to run on")
    return PathResult(
        exit_idx=trade.start + out.ticks_seen - 1,
        exit_ts=out.exit_ts,
        exit_price=out.exit_price,
        exit_reason=out.exit_reason,
        gap=out.gap,
        exit_stop=out.exit_stop,  # the confirmed stop when the trade closed
        best=out.best,
        lock_ts=out.lock_ts,
        amendments=tuple((a.ts, a.old, a.new, a.reason.value) for a in out.amendments),
    )


def run_trades(
    market: Market, trades: Sequence[KernelTrade], engine: str = FAST
) -> tuple[list[PathResult], list[str]]:
    """Run trades of one market; returns the results and the path each took.

    ``engine`` "fast" uses the kernel and replays the trades it hands back through the
    event-driven core (their path is "event"); "event" runs every trade through the core.
    """
    if engine == EVENT:
        return [run_event(market, t) for t in trades], [EVENT] * len(trades)
    fast = run_batch(market.both_sides(), market.index(), market.ts_ms, trades)
    results: list[PathResult] = []
    paths: list[str] = []
    for trade, result in zip(trades, fast, strict=True):
        paths.append(FAST if result is not None else EVENT)
        results.append(result if result is not None else run_event(market, trade))
    return results, paths
